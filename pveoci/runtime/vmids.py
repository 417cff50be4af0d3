"""VMIDs: from the cluster's nextid (or a profile's range), and a create retried when another client won the id.

`GET /cluster/nextid` reserves nothing, so two clients may be given the same VMID; the one that
loses sees one of PVE's "taken" errors and tries again with a new one.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Mapping

from pveoci import errors
from pveoci.retry import Backoff, attempts
from pveoci.runtime.context import Context
from pveoci.settings import parse_vmid_range

log = logging.getLogger("pveoci.runtime")

ATTEMPTS = 12
# Racers that retried at once would meet again: a short, spread pause between tries.
RACE = Backoff(first=0.02, factor=2.0, cap=0.5, jitter=0.5)
# How PVE words "another client took this VMID first" (docs/pve-facts: the VMID race), in every form seen.
_TAKEN = ("already exists", "File exists", "got timeout", "CT is locked (create)")


def is_race(exc: errors.PveociError) -> bool:
    """True for every form in which PVE says another client took the VMID first."""
    if isinstance(exc, (errors.AlreadyExists, errors.Locked)):
        return True
    text = " ".join([exc.message, *getattr(exc, "errors", {}).values()])
    return any(words in text for words in _TAKEN)


def parse_range(text: str) -> tuple[int, int]:
    try:
        return parse_vmid_range(text)  # the profile's validation: a bad range never gets this far from settings
    except ValueError as exc:
        raise errors.ConfigError(f"vmid_range {exc}") from None


def pick(ctx: Context) -> int:
    """A VMID to try: nextid, or a free one of the profile's range, chosen at random so racers spread."""
    rng = ctx.profile.vmid_range
    if not rng:
        return ctx.backend.next_vmid()
    first, last = parse_range(str(rng))
    used = {g.vmid for g in ctx.backend.guests()}
    # The lowest 64 free ones only: a range may hold most of PVE's billion VMIDs.
    free = list(itertools.islice((v for v in range(first, last + 1) if v not in used), 64))
    if not free:
        raise errors.ConfigError(f"no free VMID left in vmid_range {rng}")
    # Racing creates that all took the lowest free id would collide on every try.
    return random.choice(free)


def create_with_fresh_vmid(ctx: Context, node: str, options: Mapping[str, object],
                           before: Callable[[int], None]) -> int:
    """Create on `node` with a VMID the cluster gives; `before(vmid)` runs before each try (the journal)."""
    last: errors.PveociError | None = None
    for attempt in attempts(ATTEMPTS, RACE):
        vmid = pick(ctx)
        before(vmid)
        try:
            ctx.backend.create(node, vmid, dict(options))
            return vmid
        except errors.PveociError as exc:
            if not is_race(exc):
                raise
            log.info("VMID %s was taken meanwhile (%s); retrying (%d)", vmid, exc.message, attempt + 1)
            last = exc
    raise errors.AlreadyExists(f"could not get a free VMID after {ATTEMPTS} tries "
                               f"({last.message if last else 'races lost'})")
