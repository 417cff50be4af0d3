"""Draining a node: every pveoci container on it moves elsewhere, each where placement puts it (or where asked).

Resumable: a drain that was killed leaves at most a few migrations under way on Proxmox (their tasks go on)
and some moves unfinished on pveoci's side (runtime.migrate). Run again, it waits for the migrations under
way to end, finishes the unfinished moves, then moves what is still on the node. A container is only ever
migrated, never copied, so none is lost or doubled whatever the moment of the kill.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from pveoci import errors, marker
from pveoci.cache import Record
from pveoci.models import Guest, Migration, MoveReport, MoveResult, State
from pveoci.retry import Backoff, poll
from pveoci.runtime import migrate as moving
from pveoci.runtime.context import Context
from pveoci.runtime.listing import list_containers
from pveoci.runtime.locate import Located, locate
from pveoci.runtime.placement import SPREAD_GROUP
from pveoci.runtime.preflight import HA_MOVING
from pveoci.runtime.survey import Survey, survey

OnMove = Callable[[Migration], None]
_POLL = Backoff(first=0.5, factor=1.5, cap=5.0)


def settle(ctx: Context, node: str | None = None) -> None:
    """Wait until no pveoci container (of `node`, or any) is in the middle of a migration."""
    def calm() -> bool | None:
        busy = [g for g in ctx.backend.guests() if marker.TAG in g.tags and (node is None or g.node == node)
                and (g.lock == "migrate" or g.ha_state in HA_MOVING)]
        return None if busy else True

    poll(calm, timeout=ctx.profile.task_timeout, what=f"the migrations under way on {node or 'the cluster'}",
         backoff=_POLL)


def plan_targets(ctx: Context, states: list[State], exclude: Iterable[str]) -> dict[str, str | errors.PveociError]:
    """Where each container goes, placed one after the other as if the earlier ones had moved already (or why
    it can go nowhere)."""
    found = survey(ctx)
    guests = {g.vmid: g for g in ctx.backend.guests()}
    groups = Counter((s.annotations.get(SPREAD_GROUP), s.node) for s in list_containers(ctx))
    configs = ctx.backend.configs([guests[s.vmid] for s in states if s.vmid in guests])
    out: dict[str, str | errors.PveociError] = {}
    for s in states:
        g = guests.get(s.vmid)
        if g is None:
            continue
        ask = moving.ask_of(ctx, Located(g, _record(ctx, s)), configs.get(s.vmid, {}), exclude)
        for name, load in found.loads.items():
            load.group = groups[(ask.group, name)] if ask.group else 0
        try:
            out[s.id] = target = found.place(ask, s.id).node
        except errors.NoSuitableNode as exc:
            out[s.id] = exc
            continue
        _account(found, groups, g, ask.group, target)
    return out


def _record(ctx: Context, state: State) -> Record:
    record = ctx.cache.get(state.id, ctx.cluster)
    if record is None:
        raise errors.NotFound(f"container {state.id} is not in the cache")
    return record


def _account(found: Survey, groups: Counter[tuple[str | None, str]], g: Guest, group: str | None,
             target: str) -> None:
    running = g.status == "running"
    found.release(g.node, g.maxmem, running=running, group=False)
    found.assign(target, g.maxmem, running=running, group=False)
    if group:
        groups[(group, g.node)] -= 1
        groups[(group, target)] += 1


def run_moves(ctx: Context, targets: dict[str, str | errors.PveociError], *, parallel: int, dry_run: bool,
              on_move: OnMove | None) -> list[Migration]:
    """Migrate each container to its target, `parallel` at a time; a failure is its line, not the end."""
    lock = threading.Lock()
    out: list[Migration] = []

    def one(cid: str) -> None:
        target = targets[cid]
        result = (_one(ctx, cid, target, dry_run) if isinstance(target, str)
                  else _failed(ctx, cid, "", "refused", target))
        with lock:
            out.append(result)
            if on_move is not None:
                on_move(result)

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="pveoci-move") as pool:
        list(pool.map(one, sorted(targets)))
    return sorted(out, key=lambda m: m.id)


def _one(ctx: Context, cid: str, target: str, dry_run: bool) -> Migration:
    try:
        return moving.migrate(ctx, cid, target, dry_run=dry_run)
    except (errors.MoveRefused, errors.NodeOffline) as exc:
        return _failed(ctx, cid, target, "refused", exc)
    except errors.PveociError as exc:
        return _failed(ctx, cid, target, "failed", exc)
    finally:
        ctx.cache.close()  # this worker thread's connection


def _failed(ctx: Context, cid: str, target: str, result: MoveResult, exc: errors.PveociError) -> Migration:
    try:
        found = locate(ctx, cid)
    except errors.PveociError:
        found = None
    vmid, node = (found.guest.vmid, found.guest.node) if found is not None else (0, "")
    checks = tuple(getattr(exc, "checks", ()))
    return Migration(cid, vmid, node, target, "none", result, checks=checks, error=exc.message)


def drain(ctx: Context, node: str, *, to: str = "auto", parallel: int = 1, dry_run: bool = False,
          exclude: Iterable[str] = (), on_move: OnMove | None = None) -> MoveReport:
    """Move every pveoci container off `node` (to `to`, or each where placement puts it)."""
    nodes = {n.name: n for n in ctx.backend.nodes()}
    if node not in nodes:
        raise errors.NotFound(f"node '{node}' is not in the cluster (nodes: {', '.join(sorted(nodes))})")
    if not nodes[node].online:
        raise errors.NodeOffline(f"node '{node}' is offline: its containers cannot be migrated through the API "
                                 "(HA recovers those it manages)", node=node)
    if to == node:
        raise errors.InvalidParameter(f"cannot drain {node} to itself")
    if not dry_run:
        settle(ctx, node)           # migrations a killed drain left under way end first,
        moving.finish_all(ctx)      # then the moves it left unfinished are finished
    states = [s for s in list_containers(ctx) if s.node == node]
    excluded = {node, *exclude}
    targets: dict[str, str | errors.PveociError] = (plan_targets(ctx, states, excluded) if to == "auto"
                                                    else {s.id: to for s in states})
    moves = run_moves(ctx, targets, parallel=parallel, dry_run=dry_run, on_move=on_move)
    return MoveReport("drain", tuple(moves), dry_run=dry_run, node=node)
