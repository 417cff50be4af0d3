"""What the cluster looks like through its API paths: nodes, their load, the storages on each, quorum, node
addresses, template storages.

Over anything that answers GET on an API path: the HTTP client (pve.client) or pvesh on a node
(backends.pvesh); the JSON is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pveoci import errors
from pveoci.models import Destination, Guest, Node, Storage, Template

# What `uname -m` says on the machines Proxmox VE runs on (anything else, e.g. a stand-in's "fake", is asked
# of the node itself).
KNOWN_MACHINES = frozenset({"x86_64", "aarch64", "i686", "armv7l", "riscv64"})


class Reader(Protocol):
    """GET on an API path given as segments, the answer's `data` decoded."""

    def get(self, *segments: object, **params: Any) -> Any: ...


def storage_from_api(item: dict[str, Any]) -> Storage:
    return Storage(
        name=str(item["storage"]),
        type=str(item.get("type", "")),
        content=tuple(c for c in str(item.get("content", "")).split(",") if c),
        shared=bool(item.get("shared")),
        active=bool(item.get("active")) and bool(item.get("enabled", 1)),
        avail=int(item.get("avail") or 0),
        total=int(item.get("total") or 0),
    )


def guest_from_api(item: dict[str, Any], node: str | None = None) -> Guest:
    """A container from /cluster/resources (or its status/current, with the node given)."""
    tags = tuple(t for t in str(item.get("tags") or "").replace(",", ";").split(";") if t)
    pid = item.get("pid")
    return Guest(vmid=int(item["vmid"]), node=str(item.get("node") or node or ""),
                 status=str(item.get("status") or "unknown"), tags=tags, lock=item.get("lock") or None,
                 pid=int(pid) if pid not in (None, "") else None, name=str(item.get("name") or ""),
                 maxmem=int(item.get("maxmem") or 0))


@dataclass
class Quorum:
    quorate: bool
    name: str | None
    addresses: dict[str, str] = field(default_factory=dict)
    local: str | None = None       # the node that answered (pvesh run on a node: that node)


def quorum(client: Reader) -> Quorum:
    """Cluster name, quorum and each node's address from GET /cluster/status."""
    out = Quorum(quorate=True, name=None)
    for item in client.get("cluster", "status"):
        if item.get("type") == "cluster":
            out.quorate = bool(item.get("quorate", 1))
            out.name = item.get("name")
        elif item.get("type") == "node":
            if item.get("ip"):
                out.addresses[str(item["name"])] = str(item["ip"])
            if item.get("local"):
                out.local = str(item["name"])
    return out


def nodes(client: Reader, *, storages: bool = True) -> list[Node]:
    """Every node with its load and, when online, its storages (one request per online node)."""
    out = []
    for item in sorted(client.get("nodes"), key=lambda n: str(n.get("node"))):
        name = str(item["node"])
        online = item.get("status") == "online"
        found: tuple[Storage, ...] = ()
        problem = None
        if online and storages:
            try:
                found = tuple(storage_from_api(s) for s in client.get("nodes", name, "storage"))
            except (errors.NodeOffline, errors.ConnectError) as exc:
                online, problem = False, exc.message
        out.append(Node(
            name=name, online=online, cpu=float(item.get("cpu") or 0.0), maxcpu=int(item.get("maxcpu") or 0),
            mem=int(item.get("mem") or 0), maxmem=int(item.get("maxmem") or 0),
            ssl_fingerprint=item.get("ssl_fingerprint"), storages=found, problem=problem,
        ))
    return out


def template_destination(client: Reader, node: str, storage: str,
                         config: Callable[[], dict[str, Any]] | None = None) -> Destination:
    """The storage on that node, checked: it exists there, is active and takes templates; its directory
    (from the storage's configuration: `config()`, else asked here)."""
    found = {s["storage"]: s for s in client.get("nodes", node, "storage")}
    item = found.get(storage)
    if item is None:
        raise errors.NotFound(f"storage '{storage}' is not available on node '{node}' "
                              f"(there: {', '.join(sorted(found)) or 'none'})")
    if "vztmpl" not in str(item.get("content", "")).split(","):
        raise errors.ConfigError(f"storage '{storage}' does not hold container templates (content vztmpl)")
    if not item.get("active", 1):
        raise errors.ApiError(f"storage '{storage}' is not active on node '{node}'")
    found_config = config() if config is not None else dict(client.get("storage", storage))
    path = found_config.get("path")
    directory = f"{str(path).rstrip('/')}/{_content_dir(found_config)}" if path else None
    avail = item.get("avail")
    return Destination(node=node, storage=storage, shared=bool(item.get("shared")), directory=directory,
                       avail=int(avail) if avail not in (None, "") else None)


def _content_dir(config: dict[str, Any]) -> str:
    """The vztmpl directory below the storage path: `template/cache`, unless content-dirs moves it."""
    for item in str(config.get("content-dirs") or "").split(","):
        kind, _, where = item.partition("=")
        if kind.strip() == "vztmpl" and where.strip():
            return where.strip().strip("/")
    return "template/cache"


def templates(client: Reader, dest: Destination) -> list[Template]:
    """The templates on that storage, as that node lists them, by name."""
    out = []
    for item in client.get("nodes", dest.node, "storage", dest.storage, "content", content="vztmpl"):
        name = str(item["volid"]).split("/", 1)[-1]
        out.append(Template(node=dest.node, storage=dest.storage, volid=str(item["volid"]), name=name,
                            size=int(item.get("size") or 0), ctime=int(item.get("ctime") or 0), shared=dest.shared))
    return sorted(out, key=lambda t: t.name)



def machine(client: Reader, node: str) -> str | None:
    """The node's machine from its status (PVE 8+ reports its kernel's), or None where it says nothing known."""
    kernel = client.get("nodes", node, "status").get("current-kernel") or {}
    found = str(kernel.get("machine") or "")
    return found if found in KNOWN_MACHINES else None
