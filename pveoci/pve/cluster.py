"""What the cluster looks like: nodes, their load and the storages pveoci can use on each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pveoci import errors
from pveoci.pve.client import PveClient


@dataclass(frozen=True)
class StorageInfo:
    name: str
    type: str
    content: tuple[str, ...]
    shared: bool
    active: bool
    avail: int
    total: int

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> StorageInfo:
        return cls(
            name=str(item["storage"]),
            type=str(item.get("type", "")),
            content=tuple(c for c in str(item.get("content", "")).split(",") if c),
            shared=bool(item.get("shared")),
            active=bool(item.get("active")) and bool(item.get("enabled", 1)),
            avail=int(item.get("avail") or 0),
            total=int(item.get("total") or 0),
        )


@dataclass(frozen=True)
class NodeInfo:
    name: str
    online: bool
    cpu: float = 0.0
    maxcpu: int = 0
    mem: int = 0
    maxmem: int = 0
    ssl_fingerprint: str | None = None
    storages: tuple[StorageInfo, ...] = ()
    problem: str | None = None

    @property
    def mem_free(self) -> int:
        return max(self.maxmem - self.mem, 0)

    def usable(self, content: str) -> list[StorageInfo]:
        """Active storages of the node that take this content (vztmpl, rootdir)."""
        return [s for s in self.storages if s.active and content in s.content]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.name, "status": "online" if self.online else "offline",
            "cpu": round(self.cpu, 4), "maxcpu": self.maxcpu, "mem": self.mem, "maxmem": self.maxmem,
            "mem_free": self.mem_free,
            "template_storages": [_storage_json(s) for s in self.usable("vztmpl")],
            "rootfs_storages": [_storage_json(s) for s in self.usable("rootdir")],
            "problem": self.problem,
        }


def _storage_json(s: StorageInfo) -> dict[str, Any]:
    return {"storage": s.name, "type": s.type, "shared": s.shared, "avail": s.avail, "total": s.total}


@dataclass
class Quorum:
    quorate: bool
    name: str | None
    addresses: dict[str, str] = field(default_factory=dict)


def quorum(client: PveClient) -> Quorum:
    """Cluster name, quorum and each node's address from GET /cluster/status."""
    out = Quorum(quorate=True, name=None)
    for item in client.cluster_status():
        if item.get("type") == "cluster":
            out.quorate = bool(item.get("quorate", 1))
            out.name = item.get("name")
        elif item.get("type") == "node" and item.get("ip"):
            out.addresses[str(item["name"])] = str(item["ip"])
    return out


def nodes(client: PveClient, *, storages: bool = True) -> list[NodeInfo]:
    """Every node with its load and, when online, its storages (one request per online node)."""
    out = []
    for item in sorted(client.nodes(), key=lambda n: str(n.get("node"))):
        name = str(item["node"])
        online = item.get("status") == "online"
        found: tuple[StorageInfo, ...] = ()
        problem = None
        if online and storages:
            try:
                found = tuple(StorageInfo.from_api(s) for s in client.node_storages(name))
            except (errors.NodeOffline, errors.ConnectError) as exc:
                online, problem = False, exc.message
        out.append(NodeInfo(
            name=name, online=online, cpu=float(item.get("cpu") or 0.0), maxcpu=int(item.get("maxcpu") or 0),
            mem=int(item.get("mem") or 0), maxmem=int(item.get("maxmem") or 0),
            ssl_fingerprint=item.get("ssl_fingerprint"), storages=found, problem=problem,
        ))
    return out
