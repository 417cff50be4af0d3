"""What the cluster's API paths answer, as models: a container's status with its figures."""

from __future__ import annotations

from pveoci.pve.cluster import guest_from_api

#: GET /nodes/pve1/lxc/104/status/current of a running container, as Proxmox VE 9 answers it.
STATUS = {"vmid": 104, "name": "web1", "status": "running", "pid": 48211, "cpus": 2, "cpu": 0.0312,
          "mem": 52428800, "maxmem": 536870912, "swap": 1048576, "maxswap": 536870912, "disk": 471859200,
          "maxdisk": 4294967296, "netin": 18352, "netout": 2211, "diskread": 40960, "diskwrite": 8192,
          "uptime": 3600, "ha": {"managed": 0}, "tags": "pveoci;pveoci-id-web1", "type": "lxc",
          "pressurecpusome": "0.00", "pressurememoryfull": "0.00"}


def test_a_status_gives_its_figures() -> None:
    guest = guest_from_api(STATUS, "pve1")
    assert (guest.vmid, guest.node, guest.status, guest.pid) == (104, "pve1", "running", 48211)
    assert (guest.mem, guest.maxmem, guest.swap, guest.maxswap) == (52428800, 536870912, 1048576, 536870912)
    assert (guest.cpu, guest.cpus, guest.uptime) == (0.0312, 2.0, 3600)
    assert (guest.netin, guest.netout, guest.diskread, guest.diskwrite) == (18352, 2211, 40960, 8192)
    assert (guest.disk, guest.maxdisk) == (471859200, 4294967296)


def test_a_figure_that_is_missing_or_not_a_number_is_zero() -> None:
    odd = {**STATUS, "mem": None, "netin": "n/a", "diskread": -5, "cpu": "nan", "uptime": "12"}
    del odd["swap"]
    guest = guest_from_api(odd, "pve1")
    assert (guest.mem, guest.netin, guest.diskread, guest.cpu, guest.swap, guest.uptime) == (0, 0, 0, 0.0, 0, 12)


def test_the_cluster_listing_gives_the_figures_it_has() -> None:
    item = {"id": "lxc/104", "type": "lxc", "node": "pve2", "vmid": 104, "status": "running", "maxcpu": 2,
            "mem": 1000, "maxmem": 2000, "netin": 5, "uptime": 7}
    guest = guest_from_api(item)
    assert (guest.node, guest.cpus, guest.mem, guest.netin, guest.uptime, guest.swap) == ("pve2", 2.0, 1000, 5, 7, 0)
