"""Ways to reach the cluster behind one Backend protocol: the Proxmox API (default) and, later, pct/pvesh."""
