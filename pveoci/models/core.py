"""The typed values the backends report and every command uses: guests, nodes, storages, templates, pushes,
checks, what a node ran (pveoci.models re-exports them, and the rest of the models).

Plain frozen dataclasses, no behaviour beyond a few derived properties and `to_json()` (the
shape `-o json` prints, stable across releases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OCI_VERSION = "1.3.0"

#: The OCI status of a container, plus runc's `paused` and pveoci's `unknown` (its node is offline).
Status = Literal["creating", "created", "running", "paused", "stopped", "unknown"]


@dataclass(frozen=True)
class Guest:
    """A container as the cluster reports it (one line of /cluster/resources, or its status)."""

    vmid: int
    node: str
    status: str                    # running, stopped, unknown (node offline)
    tags: tuple[str, ...] = ()
    lock: str | None = None
    pid: int | None = None         # host PID of the container's init on its node, when running
    name: str = ""
    maxmem: int = 0                # bytes of memory it may use (its `memory` option)
    ha_state: str | None = None    # its HA resource's state (started, stopped, migrate, error, ...); None: not HA
    # Its use of resources, as Proxmox reports it (0 when stopped; /cluster/resources has no swap)
    mem: int = 0                   # bytes of memory in use, without the page cache
    swap: int = 0                  # bytes of swap in use
    maxswap: int = 0               # bytes of swap it may use (its `swap` option)
    cpu: float = 0.0               # the share of its CPUs it kept busy lately (0.5: half of them)
    cpus: float = 0.0              # how many CPUs it may use
    disk: int = 0                  # bytes used of its root disk (where the storage can tell)
    maxdisk: int = 0               # its root disk's size
    netin: int = 0                 # bytes its network interfaces received since it started
    netout: int = 0                # and sent
    diskread: int = 0              # bytes its processes read from block devices since it started
    diskwrite: int = 0             # and wrote
    uptime: int = 0                # seconds it has run


@dataclass(frozen=True)
class Storage:
    """A storage as one node sees it."""

    name: str
    type: str
    content: tuple[str, ...]
    shared: bool
    active: bool
    avail: int
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"storage": self.name, "type": self.type, "shared": self.shared, "avail": self.avail,
                "total": self.total}


@dataclass(frozen=True)
class Node:
    """A cluster node with its load and the storages it offers."""

    name: str
    online: bool
    cpu: float = 0.0
    maxcpu: int = 0
    mem: int = 0
    maxmem: int = 0
    ssl_fingerprint: str | None = None
    storages: tuple[Storage, ...] = ()
    problem: str | None = None
    maintenance: bool = False      # HA maintenance mode: nothing new goes there

    @property
    def mem_free(self) -> int:
        return max(self.maxmem - self.mem, 0)

    def usable(self, content: str) -> list[Storage]:
        """Active storages of the node that take this content (vztmpl, rootdir)."""
        return [s for s in self.storages if s.active and content in s.content]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.name, "status": "online" if self.online else "offline",
            "cpu": round(self.cpu, 4), "maxcpu": self.maxcpu, "mem": self.mem, "maxmem": self.maxmem,
            "mem_free": self.mem_free,
            "template_storages": [s.to_json() for s in self.usable("vztmpl")],
            "rootfs_storages": [s.to_json() for s in self.usable("rootdir")],
            "problem": self.problem, "maintenance": self.maintenance,
        }


@dataclass(frozen=True)
class Destination:
    """A template storage as seen from one node: where a template is (or goes)."""

    node: str
    storage: str
    shared: bool
    directory: str | None = None   # the templates' directory on the node's filesystem, if it has one
    avail: int | None = None       # free bytes, when the storage reports them

    def volid(self, name: str) -> str:
        return f"{self.storage}:vztmpl/{name}"


@dataclass(frozen=True)
class Template:
    """One of pveoci's templates on a storage, and the containers made from it."""

    node: str
    storage: str
    volid: str
    name: str
    size: int
    ctime: int
    shared: bool
    used_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "storage": self.storage, "volid": self.volid, "name": self.name,
                "size": self.size, "ctime": self.ctime, "shared": self.shared, "used_by": list(self.used_by)}


@dataclass(frozen=True)
class PushResult:
    """A template made sure of on a storage: sent now, or found there already."""

    volid: str
    node: str
    storage: str
    shared: bool
    uploaded: bool
    bytes_sent: int
    size: int
    digest: str
    seconds: float = 0.0
    delta: bool = False            # sent as the frames a previous template on the node lacked
    made_on_node: bool = False     # made by the node now, from an image it pulled (`--pull node`): nothing sent

    @property
    def name(self) -> str:
        return self.volid.split("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        return {"volid": self.volid, "node": self.node, "storage": self.storage, "shared": self.shared,
                "uploaded": self.uploaded, "delta": self.delta, "made_on_node": self.made_on_node,
                "bytes_sent": self.bytes_sent, "size": self.size,
                "digest": self.digest, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Check:
    """One result of `doctor`."""

    name: str
    status: Literal["pass", "fail", "warn", "skip"]
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class UnpackedImage:
    """What a node's script reported of an image Proxmox unpacked in a container (backends/imagescript.py): the
    tree's listing, /etc/passwd and /etc/group, and the template it packed of it (name and size; "" and 0 when
    it was only described)."""

    listing: bytes
    files: dict[str, bytes]
    template: str = ""
    size: int = 0


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end in a container or on a node: exit status and what it printed."""

    status: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class MigrationCheck:
    """What Proxmox says of moving a container, before anything changes (GET .../lxc/{vmid}/migrate)."""

    running: bool
    allowed: tuple[str, ...] = ()                       # nodes Proxmox would move it to (offline ones too)
    blocked: tuple[tuple[str, str], ...] = ()           # (node, why) for the nodes HA rules keep it from
    dependent: tuple[str, ...] = ()                     # HA resources that would move with it
