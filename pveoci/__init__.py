"""pveoci: run OCI runtime bundles as LXC containers on a remote Proxmox VE cluster."""

__version__ = "0.1.0"
