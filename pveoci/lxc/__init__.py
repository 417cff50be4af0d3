"""LXC on Proxmox VE: how an OCI runtime spec becomes a container's options."""
