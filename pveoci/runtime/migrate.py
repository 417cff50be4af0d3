"""Moving one container to another node, and finishing a move that a killed command left half done.

After its preflight (runtime.preflight), Proxmox moves the container: offline when it is stopped, in
restart mode when it runs (it stops on its node and starts on the target), through HA when HA manages
it (the task ends once HA has the request; the move is seen in the cluster afterwards). A container
that was started restarts with its init waiting, as after a create: pveoci starts the process again
(and freezes it again if it was paused). Its tags and its marker travel in its config; before the move
it is tagged `pveoci-moving`, and until that tag is gone the move is not finished: any later migrate,
drain or gc finishes it (the process is started only if the init still waits, so twice is harmless).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from pveoci import errors
from pveoci.init import INIT_PATH, START_SIGNAL
from pveoci.models import Guest, Migration, State
from pveoci.progress import SILENT, Progress
from pveoci.retry import Backoff, poll
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_MOVING, TAG_PAUSED, TAG_STARTED
from pveoci.runtime.locate import Located, locate, require, to_state
from pveoci.runtime.placement import SPREAD_GROUP, Ask
from pveoci.runtime.preflight import HA_MOVING, mode, preflight, volume
from pveoci.runtime.transitions import set_tags

log = logging.getLogger("pveoci.runtime")

INIT_WAIT = 60.0              # seconds for a restarted container's init to come up
_POLL = Backoff(first=0.2, factor=1.5, cap=2.0)


def _moving(guest: Guest) -> bool:
    return guest.lock == "migrate" or guest.ha_state in HA_MOVING


def settled(ctx: Context, cid: str, timeout: float) -> Located:
    """The container once no migration of it is under way (a lock `migrate`, an HA state migrate/relocate)."""
    def done() -> Located | None:
        found = require(ctx, cid)
        return None if _moving(found.guest) else found

    return poll(done, timeout=timeout, what=f"the migration of {cid} under way", backoff=_POLL)


def ask_of(ctx: Context, found: Located, config: dict[str, object], exclude: Iterable[str] = ()) -> Ask:
    """What the container asks of a node it moves to: its memory, its root disk and that disk's storage."""
    where, disk = volume(config.get("rootfs"))
    return Ask(memory=found.guest.maxmem, disk=disk, rootfs_storage=where.split(":", 1)[0] or
               ctx.profile.rootfs_storage, template_storage=ctx.profile.template_storage,
               group=found.record.annotations.get(SPREAD_GROUP), exclude=frozenset({found.guest.node, *exclude}))


def auto_target(ctx: Context, found: Located, exclude: Iterable[str] = ()) -> str:
    """The node placement picks for the container, its own node left out."""
    from pveoci.runtime import survey

    ask = ask_of(ctx, found, ctx.backend.config(found.guest.node, found.guest.vmid), exclude)
    return survey.survey(ctx, ask.group).place(ask, found.record.id).node


def migrate(ctx: Context, cid: str, to: str = "auto", *, restart: bool = True, dry_run: bool = False,
            exclude: Iterable[str] = (), progress: Progress = SILENT) -> Migration:
    """Move the container to `to` (a node, or `auto`); MoveRefused, NodeOffline or NotFound before any change
    when it cannot go there. With dry_run, only the preflight: what would happen."""
    finish(ctx, cid)
    found = settled(ctx, cid, ctx.profile.task_timeout)
    g = found.guest
    target = auto_target(ctx, found, exclude) if to == "auto" else to
    if target == g.node:
        return Migration(cid, g.vmid, g.node, target, "none", "unchanged", state=to_state(ctx, found))
    checks = preflight(ctx, cid, found, target, restart=restart, exclude=exclude)
    how = mode(found)
    if dry_run:
        return Migration(cid, g.vmid, g.node, target, how, "would move", checks=tuple(checks))
    started = time.monotonic()
    state = _move(ctx, cid, found, target, progress)
    return Migration(cid, g.vmid, g.node, target, how, "moved", checks=tuple(checks),
                     seconds=time.monotonic() - started, state=state)


def _move(ctx: Context, cid: str, found: Located, target: str, progress: Progress) -> State:
    g = found.guest
    if found.with_init and found.status in ("running", "paused"):
        set_tags(ctx, g, add=frozenset({TAG_MOVING}))  # until its process runs again on target
    progress.note(f"moving {cid} (CT {g.vmid}) from {g.node} to {target} ({mode(found)})")
    try:
        ctx.backend.migrate(g.node, g.vmid, target, restart=g.status == "running", on_log=progress.note)
        _arrival(ctx, cid, target)
    except errors.PveociError:
        _quietly_finish(ctx, cid)  # wherever it is now, its process runs as before if it can
        raise
    state = finish(ctx, cid)
    if state is None:
        raise errors.NotFound(f"container {cid} vanished during its move")
    return state


def _arrival(ctx: Context, cid: str, target: str) -> Located:
    """Once Proxmox's task ended: the container on target (through HA, that comes later than the task)."""
    def there() -> Located | None:
        found = require(ctx, cid)
        if found.guest.ha_state == "error":
            raise errors.PveociError(f"HA could not move {cid}: its HA state is error ({found.guest.node})")
        if found.guest.node == target and not _moving(found.guest):
            return found
        return None

    return poll(there, timeout=ctx.profile.task_timeout, what=f"{cid} to arrive on {target}", backoff=_POLL)


def _quietly_finish(ctx: Context, cid: str) -> None:
    try:
        finish(ctx, cid)
    except errors.PveociError as exc:
        log.warning("%s: could not finish its move (%s); `pveoci gc` will retry", cid, exc.message)


def finish(ctx: Context, cid: str) -> State | None:
    """Finish a move of this container that is over on Proxmox's side: start the process again if its init
    waits, freeze it again if it was paused, drop the moving tag. Its state; None if there is no such
    container. Nothing to do (and no change) for a container not tagged moving, or still moving."""
    found = locate(ctx, cid)
    if found is None:
        return None
    if TAG_MOVING not in found.guest.tags or _moving(found.guest):
        return to_state(ctx, found)
    if found.guest.status != "running" and found.with_init:
        # Proxmox unlocks a container before it starts it on the target: the start may be under way.
        found = _up(ctx, cid, found)
    g = found.guest
    if g.status == "running" and found.with_init:
        _resume_process(ctx, g)
    elif g.status != "running":
        log.warning("%s: CT %s is stopped on %s after its move; its process was not started again", cid, g.vmid,
                    g.node)
    set_tags(ctx, ctx.backend.status(g.node, g.vmid), remove=frozenset({TAG_MOVING}))
    return to_state(ctx, require(ctx, cid))


def _up(ctx: Context, cid: str, found: Located) -> Located:
    """The container once it runs again (or as it is, if it does not within INIT_WAIT)."""
    def running() -> Located | None:
        now = require(ctx, cid)
        return now if now.guest.status == "running" else None

    try:
        return poll(running, timeout=INIT_WAIT, what=f"{cid} to run again", backoff=_POLL)
    except errors.OperationTimeout:
        return require(ctx, cid)


def _init_state(ctx: Context, guest: Guest) -> str:
    """The init's own word: created (it waits), running, stopped; polled until the restarted init says so."""
    def known() -> str | None:
        done = ctx.backend.capture(guest.node, guest.vmid, [INIT_PATH, "state"])
        try:
            state = str(json.loads(done.stdout or b"{}").get("state") or "")
        except ValueError:
            state = ""
        return state if state in ("created", "running") else None

    return poll(known, timeout=INIT_WAIT, what=f"the init of CT {guest.vmid} on {guest.node}", backoff=_POLL)


def _resume_process(ctx: Context, guest: Guest) -> None:
    if TAG_STARTED in guest.tags and _init_state(ctx, guest) == "created":
        pid = ctx.backend.status(guest.node, guest.vmid).pid
        if not pid:
            raise errors.PveociError(f"the cluster reports no pid for CT {guest.vmid} on {guest.node}")
        ctx.backend.signal(guest.node, pid, str(START_SIGNAL))
    if TAG_PAUSED in guest.tags:
        ctx.backend.freeze(guest.node, guest.vmid)


def finish_all(ctx: Context) -> list[str]:
    """Finish every move a killed command left (containers tagged moving, no longer under way); their ids."""
    from pveoci.runtime.locate import adopt

    done = []
    known = {r.vmid: r.id for r in ctx.cache.all(ctx.cluster)}
    for g in ctx.backend.guests():
        if TAG_MOVING not in g.tags or _moving(g):
            continue
        cid = known.get(g.vmid)
        if cid is None:
            try:
                record = adopt(ctx, g)
            except errors.MarkerUnreadable as exc:
                log.warning("%s", exc.message)  # which container it is cannot be told: its move is not finished
                continue
            cid = record.id if record is not None else None
        if cid is not None and finish(ctx, cid) is not None:
            done.append(cid)
    return done

