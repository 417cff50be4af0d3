"""The typed values pveoci's API returns and its backends report: containers, nodes, storages, templates.

Plain frozen dataclasses, no behaviour beyond a few derived properties and `to_json()` (the
shape `-o json` prints, stable across releases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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


# ------------------------------------------------------------ placement and moves


@dataclass(frozen=True)
class MigrationCheck:
    """What Proxmox says of moving a container, before anything changes (GET .../lxc/{vmid}/migrate)."""

    running: bool
    allowed: tuple[str, ...] = ()                       # nodes Proxmox would move it to (offline ones too)
    blocked: tuple[tuple[str, str], ...] = ()           # (node, why) for the nodes HA rules keep it from
    dependent: tuple[str, ...] = ()                     # HA resources that would move with it


@dataclass(frozen=True)
class NodeScore:
    """One node as placement saw it: its score and the points of each criterion, or why it was rejected."""

    node: str
    score: float | None                                 # None: rejected
    parts: dict[str, float] = field(default_factory=dict)   # criterion -> points (memory, cpu, storage, ...)
    notes: tuple[str, ...] = ()                         # the facts behind the points, or why it was rejected

    @property
    def rejected(self) -> bool:
        return self.score is None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "score": None if self.score is None else round(self.score, 2),
                "rejected": self.rejected, "parts": {k: round(v, 2) for k, v in self.parts.items()},
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Placement:
    """Where a container goes, and every node's score (best first, rejected ones last)."""

    node: str
    scores: tuple[NodeScore, ...]

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "nodes": [s.to_json() for s in self.scores]}


#: What became of one container of a migrate, drain or rebalance.
MoveResult = Literal["moved", "would move", "unchanged", "refused", "failed"]
#: How Proxmox moves it: restart mode (running), offline (stopped), through HA; none when it does not move.
MoveMode = Literal["restart", "offline", "ha", "none"]


@dataclass(frozen=True)
class Migration:
    """One container's move: from where to where, how (restart, offline, through HA), and what happened."""

    id: str
    vmid: int
    source: str
    target: str
    mode: MoveMode
    result: MoveResult
    checks: tuple[Check, ...] = ()                      # the preflight, every check (fail ones refused it)
    error: str | None = None                            # why it was refused or failed
    seconds: float = 0.0
    state: State | None = None                          # its state afterwards (moved or unchanged)

    @property
    def ok(self) -> bool:
        return self.result in ("moved", "would move", "unchanged")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "vmid": self.vmid, "from": self.source, "to": self.target, "mode": self.mode,
                "result": self.result, "status": self.state.status if self.state is not None else None,
                "error": self.error, "seconds": round(self.seconds, 2),
                "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class MoveReport:
    """What a drain or a rebalance did (or, dry, would do): one Migration per container it meant to move."""

    kind: Literal["drain", "rebalance"]
    moves: tuple[Migration, ...]
    dry_run: bool = False
    node: str | None = None                             # the drained node
    spread_before: float | None = None                  # rebalance: best minus worst node score, before and
    spread_after: float | None = None                   # after (as planned)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.moves)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "dry_run": self.dry_run, "ok": self.ok,
                                "moves": [m.to_json() for m in self.moves]}
        if self.node is not None:
            data["node"] = self.node
        if self.spread_before is not None:
            data["spread_before"] = round(self.spread_before, 2)
            data["spread_after"] = round(self.spread_after or 0.0, 2)
        return data
