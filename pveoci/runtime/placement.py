"""Which node a container (or a template) goes to: the one asked for, or the online node with most free memory."""

from __future__ import annotations

from pveoci import errors
from pveoci.models import Node


def choose_node(nodes: list[Node], wanted: str) -> str:
    """`wanted` if it is an online node; for `auto`, the online node with the most free memory."""
    if wanted != "auto":
        found = next((n for n in nodes if n.name == wanted), None)
        if found is None:
            raise errors.NotFound(f"node '{wanted}' is not in the cluster "
                                  f"(nodes: {', '.join(n.name for n in nodes) or 'none'})")
        if not found.online:
            raise errors.NodeOffline(f"node '{wanted}' is offline", node=wanted)
        return wanted
    online = [n for n in nodes if n.online]
    if not online:
        raise errors.NodeOffline("no node of the cluster is online")
    # max() keeps the first of equals: ties go to the first node by name.
    return max(sorted(online, key=lambda n: n.name), key=lambda n: n.mem_free).name
