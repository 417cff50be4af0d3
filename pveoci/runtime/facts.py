"""What a create needs to know of the cluster but need not ask every time, kept in the cache for a while.

The cluster stays the source of truth: each fact has a lifetime (the nodes' storages: seconds;
where a template storage is: minutes), and a fact found wrong is forgotten and asked again (a
template that vanished from a node fails the create, which then sends it and tries again; see
runtime.create). A storage's free space is asked afresh before anything is uploaded.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from pveoci.models import Destination, Node, Storage
from pveoci.runtime.context import Context

NODES_AGE = 15.0           # the nodes and their storages this old do (placement reads status and load live)
DESTINATION_AGE = 300.0    # a template storage's place on a node (path, shared): set up once, rarely moved
TEMPLATE_AGE = 7 * 86400.0 # a template seen on a storage is assumed still there (a create finds out if not)
ABSENT_AGE = 60.0          # a template not found on a storage: placement's hint only (a create looks again)


def nodes(ctx: Context) -> list[Node]:
    """The cluster's nodes with their storages: from the cache while young, else asked (and kept). A create on
    a named node checks it here (offline there: forgotten); placement takes only the storages (with_storages)."""
    found = ctx.cache.recall(ctx.facts_scope, "nodes", NODES_AGE)
    if isinstance(found, list):
        return [_node(item) for item in found]
    fresh = ctx.backend.nodes()
    ctx.cache.remember(ctx.facts_scope, "nodes", [asdict(n) for n in fresh])
    return fresh


def with_storages(ctx: Context, live: list[Node]) -> list[Node]:
    """The nodes as they are now (status, load, HA maintenance: Backend.overview) with their storages as kept:
    what placement sees, so that a node put in maintenance or gone offline a moment ago takes nothing new."""
    kept = {n.name: n for n in nodes(ctx)}
    if any(n.online and not (n.name in kept and kept[n.name].online) for n in live):
        nodes_changed(ctx)  # a node came (back): its storages are not known yet
        kept = {n.name: n for n in nodes(ctx)}
    return [replace(n, storages=kept[n.name].storages, ssl_fingerprint=kept[n.name].ssl_fingerprint)
            if n.online and n.name in kept else n for n in live]


def nodes_changed(ctx: Context) -> None:
    """A node was not as the kept list said (offline, gone): the next placement asks the cluster."""
    ctx.cache.forget(ctx.facts_scope, "nodes")


def _node(item: dict[str, Any]) -> Node:
    storages = tuple(Storage(**{**s, "content": tuple(s["content"])}) for s in item.get("storages", ()))
    return Node(**{**item, "storages": storages})


def destination(ctx: Context, node: str, storage: str) -> Destination:
    """Where templates go on this node's storage; its `avail` may be old: see fresh_destination."""
    return remembered_destination(ctx, node, storage) or fresh_destination(ctx, node, storage)


def remembered_destination(ctx: Context, node: str, storage: str) -> Destination | None:
    """Where templates go on this node's storage as the cache has it (None: not kept, or too old)."""
    found = ctx.cache.recall(ctx.facts_scope, f"destination:{node}:{storage}", DESTINATION_AGE)
    return Destination(**found) if isinstance(found, dict) else None


def fresh_destination(ctx: Context, node: str, storage: str) -> Destination:
    """The storage as it is now (its free space before an upload), kept for the next create."""
    dest = ctx.backend.template_destination(node, storage)
    ctx.cache.remember(ctx.facts_scope, f"destination:{node}:{storage}", asdict(dest))
    return dest


def _template_key(dest: Destination, name: str) -> str:
    # A shared storage holds one copy for every node.
    where = "*" if dest.shared else dest.node
    return f"template:{where}:{dest.storage}:{name}"


def template_seen(ctx: Context, dest: Destination, name: str) -> None:
    """The template is on this storage (just uploaded, or listed)."""
    ctx.cache.remember(ctx.facts_scope, _template_key(dest, name), True)


def template_absent(ctx: Context, dest: Destination, name: str) -> None:
    """The template was not on this storage when it was listed (placement need not list it again soon)."""
    ctx.cache.remember(ctx.facts_scope, _template_key(dest, name), False)


def template_missing(ctx: Context, dest: Destination, name: str) -> bool:
    """The storage was listed without this template less than ABSENT_AGE ago."""
    return ctx.cache.recall(ctx.facts_scope, _template_key(dest, name), ABSENT_AGE) is False


def template_known(ctx: Context, dest: Destination, name: str) -> bool:
    return ctx.cache.recall(ctx.facts_scope, _template_key(dest, name), TEMPLATE_AGE) is True


def template_gone(ctx: Context, dest: Destination, name: str) -> None:
    """The template is not (or no longer) on this storage."""
    ctx.cache.forget(ctx.facts_scope, _template_key(dest, name))


__all__ = [
    "destination",
    "fresh_destination",
    "nodes",
    "nodes_changed",
    "remembered_destination",
    "template_absent",
    "template_gone",
    "template_known",
    "template_missing",
    "template_seen",
    "with_storages",
]
