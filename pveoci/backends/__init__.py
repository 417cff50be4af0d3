"""Ways to reach the cluster behind one Backend protocol: the Proxmox API (default), pct/pvesh on the nodes, or
the API with pct over SSH when it is down (auto); and a cluster in memory for tests."""
