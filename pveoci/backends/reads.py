"""Reading the cluster through its API paths, whatever carries them: the HTTP API or pvesh on a node.

Both answer the same JSON for the same path, so both backends read the cluster with this one code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pveoci.models import Destination, Guest, Node, Template
from pveoci.pve import cluster
from pveoci.pve.version import parse_version


class PathReads:
    """ClusterReads (but node_machine and privileged) and the template listings, over `self.reader`."""

    reader: cluster.Reader

    def version(self) -> tuple[int, int]:
        return parse_version(str(self.reader.get("version").get("version", "")))

    def nodes(self) -> list[Node]:
        return cluster.nodes(self.reader)

    def guests(self) -> list[Guest]:
        return [cluster.guest_from_api(item) for item in self.reader.get("cluster", "resources", type="vm")
                if item.get("type") == "lxc"]

    def status(self, node: str, vmid: int) -> Guest:
        return cluster.guest_from_api({"vmid": vmid, **self.reader.get("nodes", node, "lxc", vmid, "status",
                                                                        "current")}, node)

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        data: dict[str, Any] = self.reader.get("nodes", node, "lxc", vmid, "config")
        return data

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        return cluster.configs(self.reader, guests)

    def next_vmid(self) -> int:
        return int(self.reader.get("cluster", "nextid"))

    def template_destination(self, node: str, storage: str) -> Destination:
        return cluster.template_destination(self.reader, node, storage)

    def templates(self, dest: Destination) -> list[Template]:
        return cluster.templates(self.reader, dest)
