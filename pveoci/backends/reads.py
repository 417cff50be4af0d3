"""Reading the cluster through its API paths, whatever carries them: the HTTP API or pvesh on a node.

Both answer the same JSON for the same path, so both backends read the cluster with this one part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pveoci import errors
from pveoci.backends.base import Facts, NoFacts
from pveoci.models import Guest, MigrationCheck, Node
from pveoci.pve import cluster
from pveoci.pve.version import parse_version

T = TypeVar("T")

FACT_AGE = 600.0          # seconds the cluster's version, node addresses and storage paths are trusted


def remembered(facts: Facts, key: str, max_age: float, ask: Callable[[], T]) -> T:
    """A fact from `facts` while it is young enough, else from the cluster (and then kept)."""
    found = facts.recall(key, max_age)
    if found is None:
        found = ask()
        facts.remember(key, found)
    return found


class PathReads:
    """ClusterReads (pveoci.backends.base) over the API's paths."""

    def __init__(self, reader: cluster.Reader, *, machine: Callable[[str], str], privileged: bool,
                 parallel: int = 4, facts: Facts | None = None) -> None:
        """`machine`: a node's machine asked of the node itself, where its status does not say; `privileged`:
        whether root@pam acts (backends.base.ClusterReads.privileged); `parallel`: reads of many containers in
        flight at once (1: one after another, in order); `facts`: where the cluster's version is kept."""
        self.reader = reader
        self._machine = machine
        self._privileged = privileged
        self.parallel = parallel
        self.facts: Facts = facts or NoFacts()

    def version(self) -> tuple[int, int]:
        return parse_version(remembered(self.facts, "version", FACT_AGE,
                                        lambda: str(self.reader.get("version").get("version", ""))))

    def nodes(self) -> list[Node]:
        return cluster.nodes(self.reader)

    def overview(self) -> tuple[list[Node], list[Guest]]:
        return cluster.overview(self.reader)

    def guests(self) -> list[Guest]:
        return cluster.guests(self.reader.get("cluster", "resources", type="vm"))

    def status(self, node: str, vmid: int) -> Guest:
        return cluster.guest_from_api({"vmid": vmid, **self.reader.get("nodes", node, "lxc", vmid, "status",
                                                                        "current")}, node)

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        data: dict[str, Any] = self.reader.get("nodes", node, "lxc", vmid, "config")
        return data

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        return self._each(guests, self.config)

    def statuses(self, guests: Iterable[Guest]) -> dict[int, Guest]:
        """One listing per node (`/nodes/{node}/lxc`: the status of each of its containers, pid included) where
        more than one is wanted; status/current for a container alone on its node, or one its node's listing
        gives no pid for while it runs. Containers gone from their node are left out."""
        wanted = list(guests)
        per_node: dict[str, list[Guest]] = {}
        for g in wanted:
            per_node.setdefault(g.node, []).append(g)
        crowded = [gs[0] for gs in per_node.values() if len(gs) > 1]  # one container stands for its node
        listings = self._each(crowded, lambda node, _vmid: self._node_guests(node))
        by_node = {g.node: listings[g.vmid] for g in crowded if g.vmid in listings}
        out: dict[int, Guest] = {}
        rest = []
        for g in wanted:
            found = by_node.get(g.node, {}).get(g.vmid)
            if found is not None and (found.status != "running" or found.pid):
                out[g.vmid] = found
            elif g.node not in by_node or found is not None:
                rest.append(g)
        out.update(self._each(rest, self.status))
        return out

    def _node_guests(self, node: str) -> dict[int, Guest]:
        return {int(item["vmid"]): cluster.guest_from_api(item, node) for item in self.reader.get("nodes", node, "lxc")}

    def _each(self, guests: Iterable[Guest], read: Callable[[str, int], T]) -> dict[int, T]:
        """read(node, vmid) for many containers, `parallel` at a time (those that vanished left out)."""
        wanted = list(guests)

        def one(g: Guest) -> tuple[int, T | None]:
            try:
                return g.vmid, read(g.node, g.vmid)
            except (errors.NotFound, errors.NodeOffline):
                return g.vmid, None

        if self.parallel <= 1 or len(wanted) <= 1:
            found = map(one, wanted)
            return {vmid: value for vmid, value in found if value is not None}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.parallel, len(wanted))) as pool:
            return {vmid: value for vmid, value in pool.map(one, wanted) if value is not None}

    def migrate_check(self, node: str, vmid: int, target: str) -> MigrationCheck:
        return cluster.migration_check(self.reader.get("nodes", node, "lxc", vmid, "migrate", target=target))

    def next_vmid(self) -> int:
        return int(self.reader.get("cluster", "nextid"))

    def node_machine(self, node: str) -> str:
        """From the node's status (PVE 8+ reports its kernel's machine); asked of the node where it does not."""
        return cluster.machine(self.reader, node) or self._machine(node)

    def privileged(self) -> bool:
        return self._privileged
