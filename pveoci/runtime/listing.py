"""Every pveoci container of the cluster: one cluster call when the cache knows them all."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pveoci import errors, marker
from pveoci.cache import Record
from pveoci.models import Guest, State
from pveoci.runtime.context import Context
from pveoci.runtime.locate import oci_status, record_from_marker

READERS = 16   # requests in flight at once when the cache lacks what the cluster listing does not say


def list_containers(ctx: Context) -> list[State]:
    """Every pveoci container; the cache adopts the ones it did not know and forgets the vanished ones.

    One cluster call when the cache knows them all; otherwise each unknown container's config (its marker)
    and each running one's pid, READERS at a time.
    """
    known = {(r.node, r.vmid): r for r in ctx.cache.all(ctx.cluster)}
    by_vmid = {r.vmid: r for r in known.values()}
    guests = [g for g in ctx.backend.guests() if marker.has_tag(" ".join(g.tags))]
    unknown = {g.vmid for g in guests if _stale(by_vmid.get(g.vmid), g)}
    reads = _read_many(ctx, guests, unknown, by_vmid)
    out = []
    for guest in guests:
        record = by_vmid.get(guest.vmid)
        config, pid = reads.get(guest.vmid, (None, None))
        if guest.vmid in unknown:
            record = record_from_marker(ctx, guest, marker.parse((config or {}).get("description")), None)
        if record is None:
            continue
        out.append(_state(ctx, guest, record, pid))
    seen = {s.id for s in out}
    for record in known.values():
        if record.id not in seen:
            ctx.cache.drop(record.id, ctx.cluster)
    return sorted(out, key=lambda s: s.id)


def _read_many(ctx: Context, guests: list[Guest], unknown: set[int],
               by_vmid: dict[int, Record]) -> dict[int, tuple[dict[str, Any] | None, int | None]]:
    """What the listing lacks, in parallel: configs of unknown containers, pids of running ones not cached."""
    def wanted(g: Guest) -> tuple[bool, bool]:
        record = by_vmid.get(g.vmid)
        return g.vmid in unknown, g.status == "running" and (g.vmid in unknown or not (record and record.pid))

    todo = [(g, *wanted(g)) for g in guests if any(wanted(g))]
    if not todo:
        return {}

    def read(item: tuple[Guest, bool, bool]) -> tuple[int, tuple[dict[str, Any] | None, int | None]]:
        g, config, pid = item
        try:
            found = ctx.backend.config(g.node, g.vmid) if config else None
            running = ctx.backend.status(g.node, g.vmid).pid if pid else None
        except (errors.NotFound, errors.NodeOffline):
            return g.vmid, (None, None)
        return g.vmid, (found, running)

    with ThreadPoolExecutor(max_workers=min(READERS, len(todo))) as pool:
        return dict(pool.map(read, todo))


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
