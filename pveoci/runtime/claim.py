"""One id, one container: which of several creates that raced for the same OCI id keeps it.

Proxmox has no unique names, so N workstations creating id X at once can make N containers
tagged for X. The rule, a bakery algorithm over the containers' tags (each create writes only
its own container's tags and reads everyone's in /cluster/resources):

1. Register: the create makes its container, tagged with X's id tag.
2. Doorway: it reads the others tagged for X. None: it wins with the implicit ticket 1, and any
   later create will see it (it is visible before it looked). Some: it takes ticket 1 + the
   highest ticket it sees (an untagged finished one counts 1, ones still being created 0) and
   writes it as a tag.
3. Check: it reads the others again. One that is finished but has no ticket tag is either an
   implicit winner or about to write its ticket: wait for it a little, then count it as the
   winner. Otherwise the lowest (ticket, VMID) wins. Ones still being created do not matter:
   their own doorway comes after this ticket was written, so they take a higher one.

Two winners are impossible (see tests/runtime/test_claim.py, which checks every interleaving of
small races); in rare, slow races all contenders may lose, which fails them with runc's
"already exists" and leaves nothing behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pveoci import errors
from pveoci.lxc.properties import tag_list
from pveoci.models import Guest
from pveoci.retry import Backoff, poll
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_TICKET, id_tag
from pveoci.runtime.locate import settled as wait_unlocked

log = logging.getLogger("pveoci.runtime")

SETTLE = 5.0       # seconds to wait for a racing create to write its ticket
_POLL = Backoff(first=0.05, factor=1.5, cap=0.5, jitter=0.2)


def _ticket_of(guest: Guest) -> int | None:
    """A racer's ticket: its tag, 1 if finished without one, None while it is still being created."""
    for tag in guest.tags:
        if tag.startswith(TAG_TICKET) and tag[len(TAG_TICKET):].isdigit():
            return int(tag[len(TAG_TICKET):])
    return None if guest.lock == "create" else 1


def _has_ticket_tag(guest: Guest) -> bool:
    return any(t.startswith(TAG_TICKET) for t in guest.tags)


def _others(ctx: Context, cid: str, me: int) -> list[Guest]:
    tag = id_tag(cid)
    return [g for g in ctx.backend.guests() if tag in g.tags and g.vmid != me]


def claim(ctx: Context, cid: str, node: str, vmid: int, tags: set[str],
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> bool:
    """True if the container just made (node, vmid, carrying `tags`) keeps the id; False if it must go."""
    others = _others(ctx, cid, vmid)
    if not others:
        return True
    mine = 1 + max((t for t in map(_ticket_of, others) if t is not None), default=0)
    wait_unlocked(ctx, node, vmid)  # a config change waits for `lock: create` to clear
    ctx.backend.set_options(node, vmid, {"tags": tag_list(tags | {f"{TAG_TICKET}{mine}"})})
    log.info("%s: %d other create(s) raced for this id; ticket %d", cid, len(others), mine)

    def settled() -> list[Guest] | None:
        now = _others(ctx, cid, vmid)
        return None if any(g.lock != "create" and not _has_ticket_tag(g) for g in now) else now

    try:
        final = poll(settled, timeout=SETTLE, what="racing creates", backoff=_POLL, sleep=sleep, clock=clock)
    except errors.OperationTimeout:
        return False  # an implicit winner (ticket 1, no tag) holds the id
    return all((_ticket_of(g) or 0, g.vmid) > (mine, vmid) for g in final if g.lock != "create")
