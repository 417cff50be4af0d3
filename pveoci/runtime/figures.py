"""runc's `events`: a container's figures as Proxmox reports them (its status), once or every interval.

A created, running or paused container has figures (its init runs); a stopped one has none, as runc refuses a
stopped container. A stream ends when the container stops or goes; a round the cluster cannot answer is skipped
with a warning, as runc logs a failed read and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from pveoci import errors
from pveoci.models import Stats
from pveoci.runtime.context import Context
from pveoci.runtime.locate import Located, locate, require

log = logging.getLogger("pveoci.runtime")

#: The states whose container runs (its init, at least): those with figures.
WITH_FIGURES = ("created", "running", "paused")
_NAP = 3600.0   # the longest single sleep (a Go duration may be far longer than time.sleep takes)


def _running(found: Located, cid: str) -> Located:
    if found.status not in WITH_FIGURES:
        raise errors.NotRunning(f"container with id {cid} is not running", status=found.status)
    return found


def stats(ctx: Context, cid: str) -> Stats:
    """The container's figures now; NotRunning (runc's words) unless it is created, running or paused."""
    return Stats(cid, _running(require(ctx, cid), cid).guest)


def events(ctx: Context, cid: str, interval: float, *, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Stats]:
    """The container's figures every `interval` seconds, the first after one interval (runc's ticks: after a round
    longer than an interval the next comes at once, the other missed ticks are dropped), until it stops or goes."""
    if not interval > 0:
        raise errors.InvalidParameter("the interval must be greater than 0")
    _running(require(ctx, cid), cid)
    due = clock() + interval
    while True:
        while (left := due - clock()) > 0:
            sleep(min(left, _NAP))
        due += interval
        if due < clock():  # one tick waited while the last round ran; the others are dropped, as Go's ticker does
            due = clock() + interval
        try:
            found = locate(ctx, cid)
        except (errors.ConnectError, errors.NodeOffline) as exc:
            log.warning("container %s: no figures this round: %s", cid, exc.message)
            continue
        if found is None or found.status not in WITH_FIGURES:
            return
        yield Stats(cid, found.guest)
