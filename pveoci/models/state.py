"""The models of a container's state and of what the lifecycle reports (pveoci.models re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pveoci.models.core import OCI_VERSION, Guest, Status


@dataclass
class State:
    """The OCI state of a container, with pveoci's own fields under one key ("pveoci")."""

    id: str
    status: Status
    pid: int
    bundle: str
    created: str
    cluster: str
    node: str
    vmid: int
    template: str
    rootfs: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cached: bool = False           # answered from the local cache, not the cluster
    node_pid: int | None = None    # the init's pid on its node, when `pid` is a stand-in's on this machine

    def to_json(self) -> dict[str, Any]:
        """The state as `pveoci state` prints it: OCI's fields, runc's extras, then "pveoci"."""
        data: dict[str, Any] = {
            "ociVersion": OCI_VERSION, "id": self.id,
            "pid": self.pid if self.status in ("created", "running", "paused") else 0,
            "status": self.status, "bundle": self.bundle,
            "rootfs": self.rootfs or str(Path(self.bundle) / "rootfs"),
            "created": self.created, "owner": "",
        }
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        data["pveoci"] = {"cluster": self.cluster, "node": self.node, "vmid": self.vmid, "template": self.template}
        if self.node_pid is not None:
            data["pveoci"]["node_pid"] = self.node_pid
        if self.cached:
            data["pveoci"]["cached"] = True
        return data


@dataclass(frozen=True)
class StandIn:
    """What a create leaves on this machine for the container's process (docs/engines.md): a stand-in holding
    this process's streams; with `stdin`, relaying its stdin (the process's is then not /dev/null); with
    `console_socket`, a terminal instead: the process gets a pty of its own, the local pty's master goes to that
    socket as runc sends it (the bundle's process.terminal must be true)."""

    stdin: bool = False
    console_socket: str | None = None


@dataclass(frozen=True)
class Stats:
    """A container's use of resources at one moment, as Proxmox reports it (its Guest, from its status): one of
    runc's `events`."""

    id: str
    guest: Guest

    def to_json(self) -> dict[str, Any]:
        """runc's event, `{"type": "stats", "id", "data"}`, its data in runc's shape as far as Proxmox's figures go:
        memory (in use without the page cache; swap as runc counts it, memory plus swap), block I/O in bytes read
        and written, the bytes of eth0 (pveoci's one interface); pveoci's own under "pveoci". What Proxmox does not
        report (CPU time, pids, cache, hugetlb, failcnt) is left out, never made up."""
        g = self.guest
        data = {
            "memory": {"usage": {"usage": g.mem, "limit": g.maxmem},
                       "swap": {"usage": g.mem + g.swap, "limit": g.maxmem + g.maxswap}},
            "blkio": {"ioServiceBytesRecursive": [{"op": "Read", "value": g.diskread},
                                                  {"op": "Write", "value": g.diskwrite}]},
            "network_interfaces": [{"Name": "eth0", "RxBytes": g.netin, "TxBytes": g.netout}],
            "pveoci": {"node": g.node, "vmid": g.vmid, "cpu": round(g.cpu, 4), "cpus": g.cpus, "uptime": g.uptime},
        }
        return {"type": "stats", "id": self.id, "data": data}


@dataclass(frozen=True)
class GcReport:
    """What `gc` finished or removed."""

    rolled_back: tuple[str, ...] = ()     # ids of creates that were killed half-way and are undone now
    dropped: tuple[str, ...] = ()         # cache entries whose container is gone
    swept: tuple[str, ...] = ()           # node:name of what killed uploads and node pulls left
    forgotten_packs: int = 0              # the cache's records of packs of rootfs paths that are gone
    images: tuple[str, ...] = ()          # the image store's images no create used for long, forgotten
    image_bytes: int = 0                  # what the image store freed (their blobs, lookups, bundles, leftovers)

    def to_json(self) -> dict[str, Any]:
        return {"rolled_back": list(self.rolled_back), "dropped": list(self.dropped), "swept": list(self.swept),
                "forgotten_packs": self.forgotten_packs, "images": list(self.images),
                "image_bytes": self.image_bytes}


@dataclass(frozen=True)
class ProcessTable:
    """`ps` in a container: what it printed, and the PIDs it listed (as the container sees them)."""

    output: str
    pids: tuple[int, ...]
