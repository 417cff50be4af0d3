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
from pveoci.models import Destination, Guest, MigrationCheck, Node, Storage, Template

# What `uname -m` says on the machines Proxmox VE runs on (anything else, e.g. a stand-in's "fake", is asked
# of the node itself).
KNOWN_MACHINES = frozenset({"x86_64", "aarch64", "i686", "armv7l", "riscv64"})


class Reader(Protocol):
    """GET on an API path given as segments, the answer's `data` decoded."""

    def get(self, *segments: object, **params: Any) -> Any: ...


#: A container's figures in bytes or seconds, by their names in its status (and /cluster/resources, but swap).
FIGURES = ("mem", "swap", "maxswap", "disk", "maxdisk", "netin", "netout", "diskread", "diskwrite", "uptime")


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
    ha = item.get("hastate")
    if ha is None and isinstance(item.get("ha"), dict):  # status/current: {"managed": 1, "state": ...}
        ha = item["ha"].get("state") if item["ha"].get("managed") else None
    return Guest(vmid=int(item["vmid"]), node=str(item.get("node") or node or ""),
                 status=str(item.get("status") or "unknown"), tags=tags, lock=item.get("lock") or None,
                 pid=int(pid) if pid not in (None, "") else None, name=str(item.get("name") or ""),
                 maxmem=int(item.get("maxmem") or 0), ha_state=str(ha) if ha else None,
                 cpu=_figure(item.get("cpu")), cpus=_figure(item.get("cpus") or item.get("maxcpu")),
                 **{name: int(_figure(item.get(name))) for name in FIGURES})


def _figure(value: object) -> float:
    """A figure of a status as a number; 0 for one that is missing or not a number (it informs, it decides nothing)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if 0 <= number < float("inf") else 0.0


def migration_check(data: dict[str, Any]) -> MigrationCheck:
    """GET /nodes/{node}/lxc/{vmid}/migrate as a model. PVE lists every other cluster node as allowed, offline
    ones too; a node HA rules block is under not-allowed-nodes with its blocking resources."""
    blocked = []
    for node, why in sorted((data.get("not-allowed-nodes") or {}).items()):
        rules = (why or {}).get("blocking-ha-resources") or []
        causes = ", ".join(f"{b.get('sid', '?')} ({b.get('cause', 'rule')})" for b in rules)
        blocked.append((str(node), f"HA rules: {causes}" if causes else "not allowed"))
    return MigrationCheck(running=bool(data.get("running")),
                          allowed=tuple(str(n) for n in data.get("allowed-nodes") or ()), blocked=tuple(blocked),
                          dependent=tuple(str(d) for d in data.get("dependent-ha-resources") or ()))


def guests(items: list[dict[str, Any]]) -> list[Guest]:
    """The containers among /cluster/resources entries."""
    return [guest_from_api(item) for item in items if item.get("type") == "lxc"]


def overview(client: Reader) -> tuple[list[Node], list[Guest]]:
    """Every node's status, load and HA maintenance (no storages) and every container, in one request (GET
    /cluster/resources); the nodes from GET /nodes (no HA state) where the token may not see them there."""
    items = client.get("cluster", "resources")
    found = sorted((_node(i, maintenance=i.get("hastate") == "maintenance") for i in items if i.get("type") == "node"),
                   key=lambda n: n.name)
    return found or nodes(client, storages=False), guests(items)


def _node(item: dict[str, Any], *, maintenance: bool, storages: tuple[Storage, ...] = (),
          problem: str | None = None, online: bool | None = None) -> Node:
    return Node(name=str(item["node"]), online=item.get("status") == "online" if online is None else online,
                cpu=float(item.get("cpu") or 0.0), maxcpu=int(item.get("maxcpu") or 0),
                mem=int(item.get("mem") or 0), maxmem=int(item.get("maxmem") or 0),
                ssl_fingerprint=item.get("ssl_fingerprint"), storages=storages, problem=problem,
                maintenance=maintenance)


def in_maintenance(client: Reader) -> set[str]:
    """The nodes HA has in maintenance mode (`hastate` of the nodes in /cluster/resources)."""
    try:
        items = client.get("cluster", "resources", type="node")
    except (errors.ApiError, errors.PermissionDenied):
        return set()  # no HA status to be had: no node is known to be in maintenance
    return {str(i.get("node")) for i in items if i.get("type") == "node" and i.get("hastate") == "maintenance"}


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
    """Every node with its load, HA maintenance and, when online, its storages (one request per online node)."""
    maintenance = in_maintenance(client)
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
        out.append(_node(item, maintenance=name in maintenance, storages=found, problem=problem, online=online))
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
