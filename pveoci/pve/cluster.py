"""What the cluster looks like through the API: nodes, their load, the storages on each, quorum, node addresses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pveoci import errors
from pveoci.models import Guest, MigrationCheck, Node, Storage
from pveoci.pve.client import PveClient


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
                 maxmem=int(item.get("maxmem") or 0), ha_state=str(ha) if ha else None)


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


def in_maintenance(client: PveClient) -> set[str]:
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


def nodes(client: PveClient, *, storages: bool = True) -> list[Node]:
    """Every node with its load, HA maintenance and, when online, its storages (one request per online node)."""
    maintenance = in_maintenance(client)
    out = []
    for item in sorted(client.nodes(), key=lambda n: str(n.get("node"))):
        name = str(item["node"])
        online = item.get("status") == "online"
        found: tuple[Storage, ...] = ()
        problem = None
        if online and storages:
            try:
                found = tuple(storage_from_api(s) for s in client.node_storages(name))
            except (errors.NodeOffline, errors.ConnectError) as exc:
                online, problem = False, exc.message
        out.append(Node(
            name=name, online=online, cpu=float(item.get("cpu") or 0.0), maxcpu=int(item.get("maxcpu") or 0),
            mem=int(item.get("mem") or 0), maxmem=int(item.get("maxmem") or 0),
            ssl_fingerprint=item.get("ssl_fingerprint"), storages=found, problem=problem,
            maintenance=name in maintenance,
        ))
    return out
