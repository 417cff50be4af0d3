"""The local test bed: a simulated Proxmox VE cluster (fakepve + real sshd, later real LXC)."""

from tests.testbed.bed import PVEOCI_PRIVILEGES, Testbed

__all__ = ["PVEOCI_PRIVILEGES", "Testbed"]
