"""What placement needs to know of the cluster's nodes: their load, pveoci's containers on each, the creates of
this machine still on their way (the journal), spread groups and templates; read through the backend only.

A create's container shows in the cluster only once Proxmox made it, seconds after its node was picked:
the journal of the local cache (each create records its node and ask there before it packs anything)
fills that gap for the creates of this machine, placement being taken under the cache's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pveoci import errors, marker
from pveoci.cache import Step
from pveoci.models import Destination, Guest, Placement
from pveoci.runtime import facts
from pveoci.runtime.context import Context
from pveoci.runtime.placement import SPREAD_GROUP, Ask, NodeLoad, pick, score, storage

__all__ = ["LOCK", "Ask", "Survey", "TemplateHint", "ask_for", "mark_templates", "place", "survey"]

if TYPE_CHECKING:
    from pveoci.lxc.mapping import Plan

LOCK = "placement"
MIB = 1024 ** 2
GIB = 1024 ** 3


def ask_for(ctx: Context, plan: Plan, exclude: Iterable[str] = ()) -> Ask:
    """What a container made from this plan needs of a node (its memory, root disk, storages, spread group)."""
    disk = str(plan.options.get("rootfs", "")).split(",", 1)[0].rpartition(":")[2]
    return Ask(memory=int(plan.options.get("memory") or 0) * MIB, disk=int(float(disk)) * GIB if disk else 0,
               rootfs_storage=ctx.profile.rootfs_storage, template_storage=ctx.profile.template_storage,
               group=plan.annotations.get(SPREAD_GROUP) or None, exclude=frozenset(exclude))


@dataclass(frozen=True)
class TemplateHint:
    """How to tell whether a node has a create's template: its name for that node (None: not known, or
    UnsupportedError for a machine pveoci has no init for), and the rootfs other creates record."""

    rootfs: str
    name_for: Callable[[str], str | None]


@dataclass
class Survey:
    """The nodes as placement sees them; `assign` and `release` keep it true while a plan moves containers."""

    loads: dict[str, NodeLoad]
    steps: list[Step] = field(default_factory=list)    # creates of this machine not listed as pveoci's yet
    creating: list[Step] = field(default_factory=list)  # every create of this machine in progress, listed or not
    guests: list[Guest] = field(default_factory=list)  # the cluster's containers, as read for this survey

    def assign(self, node: str, memory: int, *, running: bool, group: bool) -> None:
        load = self.loads[node]
        load.containers += 1
        load.committed += memory if running else 0
        load.group += int(group)

    def release(self, node: str, memory: int, *, running: bool, group: bool) -> None:
        load = self.loads[node]
        load.containers -= 1
        load.committed -= memory if running else 0
        load.group -= int(group)

    def place(self, ask: Ask, seed: str) -> Placement:
        return pick(score(list(self.loads.values()), ask), seed)


def _count(load: NodeLoad | None, guest: Guest) -> None:
    if load is None:
        return
    if guest.status == "running" or guest.lock == "create":
        load.committed += guest.maxmem
    if marker.TAG in guest.tags:
        load.containers += 1


def survey(ctx: Context, group: str | None = None) -> Survey:
    """Every node with what is on it and on its way there (this machine's creates), and with the containers of
    the spread group `group`."""
    # The journal first: a create that finishes between the two reads is then seen in the cluster's list.
    steps = [s for s in ctx.cache.pending(ctx.cluster) if s.kind == "create" and s.node and s.in_progress()]
    live, guests = ctx.backend.overview()
    nodes = facts.with_storages(ctx, live)   # status and load as they are; storages as of a few seconds ago
    found = Survey({n.name: NodeLoad(n) for n in nodes}, guests=guests)
    # This machine's creates in progress count as their journal entries say, wherever the cluster's list stands
    # with them: not there yet; being made (Proxmox's create task shows it locked, its config not written, so
    # without pveoci's tag); made but not started (Proxmox starts it in a task of its own, after the create's lock
    # is gone); started. The containers the list shows for them are not counted again. A VMID two creates raced
    # for counts for both, for a moment: the one that lost tries another.
    theirs = {(s.vmid, s.node) for s in steps if s.vmid is not None}
    for g in guests:
        if (g.vmid, g.node) not in theirs:
            _count(found.loads.get(g.node), g)
    shown = {(g.vmid, g.node): g for g in guests}
    for s in steps:
        load = found.loads.get(s.node or "")
        if load is None:
            continue
        load.containers += 1
        load.committed += int(s.data.get("memory") or 0)
        made = shown.get((s.vmid, s.node or "")) if s.vmid is not None else None
        if made is None:
            load.disk_pending += int(s.data.get("disk") or 0)
        if made is None or marker.TAG not in made.tags:
            found.steps.append(s)
    found.creating = steps
    if group:
        _groups(ctx, found, group)
    return found


def _groups(ctx: Context, found: Survey, group: str) -> None:
    from pveoci.runtime.listing import list_containers

    for state in list_containers(ctx):
        if state.annotations.get(SPREAD_GROUP) == group and state.node in found.loads:
            found.loads[state.node].group += 1
    for s in found.steps:
        if s.data.get("group") == group and (s.node or "") in found.loads:
            found.loads[s.node or ""].group += 1


def mark_templates(ctx: Context, found: Survey, ask: Ask, hint: TemplateHint) -> None:
    """Which nodes have the template (or a create of this machine is taking the same rootfs there)."""
    listed: dict[tuple[str, str], set[str]] = {}
    for load in found.loads.values():
        where = storage(load.node, ask.template_storage, "vztmpl") if load.node.online else None
        if where is None:
            continue
        try:
            name = hint.name_for(load.name)
        except errors.Unsupported as exc:
            load.problems.append(exc.message)
            continue
        if name is not None:
            dest = Destination(node=load.name, storage=where.name, shared=where.shared)
            key = ("", where.name) if where.shared else (load.name, where.name)
            if facts.template_known(ctx, dest, name):   # seen there before: not listed again
                listed.setdefault(key, set()).add(name)
            elif facts.template_missing(ctx, dest, name):   # not there a moment ago
                listed.setdefault(key, set())
            elif key not in listed or name not in listed[key]:
                listed[key] = listed.get(key, set()) | {t.name for t in ctx.backend.templates(dest)}
                (facts.template_seen if name in listed[key] else facts.template_absent)(ctx, dest, name)
            load.template = name in listed[key]
        # A create of the same rootfs on its way there (its container seen or not yet) takes the template there.
        load.template = load.template or any(s.node == load.name and s.data.get("rootfs") == hint.rootfs
                                             for s in found.creating)


def place(ctx: Context, ask: Ask, seed: str, hint: TemplateHint | None = None,
          check: Callable[[list[Guest]], None] | None = None) -> Placement:
    """The node for a container that asks this (its id the seed of ties), and every node's score. `check`: given
    the cluster's containers as placement read them, before any node is picked (a create's "is the id taken")."""
    found = survey(ctx, ask.group)
    if check is not None:
        check(found.guests)
    if hint is not None:
        mark_templates(ctx, found, ask, hint)
    return found.place(ask, seed)
