"""Every pveoci container of the cluster: one cluster call when the cache knows them all."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pveoci import errors, marker
from pveoci.cache import Record
from pveoci.models import Guest, State
from pveoci.runtime.context import Context
from pveoci.runtime.locate import oci_status, read_marker, record_from_marker

log = logging.getLogger("pveoci.runtime")


def list_containers(ctx: Context) -> list[State]:
    """Every pveoci container; the cache adopts the ones it did not know and forgets the vanished ones.

    One cluster call (/cluster/resources: status, tags) when the cache knows them all, or when those it does
    not know carry their card (pveoci.card, in their tags); the descriptions (markers) of the others, and the
    pids of running ones the cache lacks (one listing per node), each in one bulk read.
    """
    known = {(r.node, r.vmid): r for r in ctx.cache.all(ctx.cluster)}
    by_vmid = {r.vmid: r for r in known.values()}
    guests = [g for g in ctx.backend.guests() if marker.has_tag(" ".join(g.tags))]
    unknown = [g for g in guests if _stale(by_vmid.get(g.vmid), g)]
    carded = {g.vmid: record for g in unknown if (record := record_from_card(ctx, g)) is not None}
    unread = [g for g in unknown if g.vmid not in carded]
    configs = ctx.backend.configs(unread) if unread else {}
    pidless = [g for g in guests if g.status == "running" and not (g.vmid in by_vmid and by_vmid[g.vmid].pid
                                                                  and g not in unknown)]
    pids = {vmid: g.pid or 0 for vmid, g in ctx.backend.statuses(pidless).items()} if pidless else {}
    out = []
    for guest in guests:
        record = carded.get(guest.vmid) or by_vmid.get(guest.vmid)
        if guest in unread:
            record = _adopt(ctx, guest, configs.get(guest.vmid))
        if record is None:
            continue
        out.append(_state(ctx, guest, record, pids.get(guest.vmid)))
    seen = {s.id for s in out}
    for record in known.values():
        if record.id not in seen:
            ctx.cache.drop(record.id, ctx.cluster)
    return sorted(out, key=lambda s: s.id)


def _adopt(ctx: Context, guest: Guest, config: dict[str, Any] | None) -> Record | None:
    """The record of a container the cache did not know; one whose marker cannot be read is left out of the list
    with a warning that names it (`state` and `delete` of its id say the same, as an error)."""
    if config is None:
        return None  # gone since the listing
    try:
        return record_from_marker(ctx, guest, read_marker(guest, config), None)
    except errors.MarkerUnreadable as exc:
        log.warning("%s", exc.message)
        return None


def record_from_card(ctx: Context, guest: Guest) -> Record | None:
    """The cache's record of a container from its card (None: it has none, or one not of its own id tag)."""
    from pveoci.card import parse
    from pveoci.runtime.ids import id_tag

    found = parse(guest.tags)
    if found is None or id_tag(found.id) not in guest.tags:
        return None
    return record_from_marker(ctx, guest, found, None)


def _stale(record: Record | None, guest: Guest) -> bool:
    from pveoci.runtime.ids import id_tag

    return record is None or id_tag(record.id) not in guest.tags


def _state(ctx: Context, guest: Guest, record: Record, read_pid: int | None) -> State:
    status = oci_status(guest, record.marker_version)
    pid = 0
    if status in ("created", "running", "paused"):
        # /cluster/resources has no pid: asked once (read_pid), then the cache knows it until the next start.
        pid = record.pid or read_pid or 0
        if pid != record.pid or status != record.status:
            record.pid, record.status = pid, status
            ctx.cache.put(record)
    return State(id=record.id, status=status, pid=pid, bundle=record.bundle, rootfs=record.rootfs,
                 created=record.created, annotations=record.annotations, cluster=ctx.cluster, node=guest.node,
                 vmid=guest.vmid, template=record.template)


FILTER_KEYS = ("node", "status", "annotation")
STATUSES = ("creating", "created", "running", "paused", "stopped", "unknown")


@dataclass(frozen=True)
class Filters:
    """Which containers `list` keeps: on any of `nodes`, in any of `statuses`, carrying every annotation of
    `annotations` (with that value, or any value for None). Empty: no condition."""

    nodes: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    annotations: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Filters:
        """`node=pve2`, `status=running`, `annotation=team=blue` or `annotation=team` (docker's --filter: one key
        given twice is either value, different keys must all hold). InvalidParameter for anything else."""
        nodes, statuses, annotations = set(), set(), []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or key not in FILTER_KEYS or not value:
                raise errors.InvalidParameter(f"bad filter {item!r}: use node=NODE, status=STATUS or "
                                              "annotation=KEY[=VALUE]")
            if key == "node":
                nodes.add(value)
            elif key == "status":
                if value not in STATUSES:
                    raise errors.InvalidParameter(f"bad filter {item!r}: status is one of {', '.join(STATUSES)}")
                statuses.add(value)
            else:
                name, has, wanted = value.partition("=")
                annotations.append((name, wanted if has else None))
        return cls(frozenset(nodes), frozenset(statuses), tuple(annotations))

    def keep(self, state: State) -> bool:
        if self.nodes and state.node not in self.nodes:
            return False
        if self.statuses and state.status not in self.statuses:
            return False
        return all(key in state.annotations and (value is None or state.annotations[key] == value)
                   for key, value in self.annotations)
