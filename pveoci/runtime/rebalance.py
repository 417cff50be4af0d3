"""Rebalancing: move pveoci containers so that the nodes' placement scores even out, at most max_moves of them.

Each node's score is placement's for an empty ask (its free memory, its pveoci containers, idle CPU,
free root-disk room); the spread is the best score minus the worst. Greedily, while moves are left:
of the containers on the worst node, the one whose move (to where placement would put it) narrows the
spread most is planned, as long as that narrows it by at least MIN_GAIN points. Then the planned moves
are made (each with its preflight), or with dry_run only reported.
"""

from __future__ import annotations

from collections.abc import Iterable

from pveoci import errors, marker
from pveoci.cache import Record
from pveoci.models import Guest, MoveReport
from pveoci.runtime import drain
from pveoci.runtime import migrate as moving
from pveoci.runtime.context import Context
from pveoci.runtime.listing import list_containers
from pveoci.runtime.locate import Located
from pveoci.runtime.placement import Ask, NodeLoad, rejection, score
from pveoci.runtime.preflight import HA_MOVING
from pveoci.runtime.survey import Survey, survey

MIN_GAIN = 1.0


def _spread(loads: list[NodeLoad], ask: Ask) -> tuple[float, str]:
    """Best score minus worst, and the worst node."""
    scores = [s for s in score(loads, ask) if s.score is not None]
    if len(scores) < 2:
        return 0.0, ""
    return (scores[0].score or 0.0) - (scores[-1].score or 0.0), scores[-1].node


def _moved(found: Survey, g: Guest, target: str, back: bool = False) -> None:
    running = g.status == "running"
    source, dest = (target, g.node) if back else (g.node, target)
    found.release(source, g.maxmem, running=running, group=False)
    found.assign(dest, g.maxmem, running=running, group=False)


class _Planner:
    def __init__(self, ctx: Context, exclude: Iterable[str]) -> None:
        self.ctx = ctx
        self.found = survey(ctx)
        self.base = Ask(rootfs_storage=ctx.profile.rootfs_storage, template_storage=ctx.profile.template_storage,
                        exclude=frozenset(exclude))
        self.eligible = [ld for ld in self.found.loads.values() if rejection(ld, self.base) is None]
        list_containers(ctx)  # the cache adopts the containers other workstations made
        self.records = {r.vmid: r for r in ctx.cache.all(ctx.cluster)}
        self.guests = [g for g in ctx.backend.guests() if marker.TAG in g.tags and g.vmid in self.records
                       and not g.lock and g.ha_state not in HA_MOVING]
        self.configs = ctx.backend.configs(self.guests)
        self.where = {g.vmid: g.node for g in self.guests}

    def spread(self) -> tuple[float, str]:
        return _spread(self.eligible, self.base)

    def best_move(self, worst: str, done: set[int]) -> tuple[float, Guest, str] | None:
        """The move off the worst node that leaves the smallest spread: (spread, guest, target)."""
        best = None
        for g in sorted(self.guests, key=lambda g: self.records[g.vmid].id):
            if self.where[g.vmid] != worst or g.vmid in done:
                continue
            record: Record = self.records[g.vmid]
            ask = moving.ask_of(self.ctx, Located(g, record), self.configs.get(g.vmid, {}), self.base.exclude)
            try:
                target = self.found.place(ask, record.id).node
            except errors.NoSuitableNode:
                continue
            _moved(self.found, g, target)
            after = self.spread()[0]
            _moved(self.found, g, target, back=True)
            if best is None or after < best[0]:
                best = (after, g, target)
        return best


def plan(ctx: Context, *, max_moves: int,
         exclude: Iterable[str] = ()) -> tuple[dict[str, str | errors.PveociError], float, float]:
    """The moves (id -> target) that even the scores out, the spread before and the spread after them."""
    planner = _Planner(ctx, exclude)
    before, worst = planner.spread()
    now = before
    moves: dict[str, str | errors.PveociError] = {}
    done: set[int] = set()
    while len(moves) < max_moves and worst:
        found = planner.best_move(worst, done)
        if found is None or now - found[0] < MIN_GAIN:
            break
        now, g, target = found
        _moved(planner.found, g, target)
        planner.where[g.vmid] = target
        done.add(g.vmid)
        moves[planner.records[g.vmid].id] = target
        worst = planner.spread()[1]
    return moves, before, now


def rebalance(ctx: Context, *, max_moves: int = 10, dry_run: bool = False, exclude: Iterable[str] = (),
              parallel: int = 1, on_move: drain.OnMove | None = None) -> MoveReport:
    """Plan the moves that even the nodes' scores out (never more than max_moves) and make them."""
    if max_moves < 0:
        raise errors.InvalidParameter("max_moves cannot be negative")
    if not dry_run:
        drain.settle(ctx)
        moving.finish_all(ctx)
    targets, before, after = plan(ctx, max_moves=max_moves, exclude=exclude)
    moves = drain.run_moves(ctx, targets, parallel=parallel, dry_run=dry_run, on_move=on_move)
    return MoveReport("rebalance", tuple(moves), dry_run=dry_run, spread_before=before, spread_after=after)
