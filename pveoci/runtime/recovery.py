"""Undoing creates that did not finish: here when they fail, or by the next command when they were killed
(and settling image updates that were killed: runtime.swap).

A create journals each step in the cache before doing it; a journal entry whose process is gone
is an abandoned create. Its container is removed only if its marker names the same id (a VMID
may have been reused meanwhile), its cache entry dropped, its journal entry closed.
"""

from __future__ import annotations

import logging

from pveoci import errors, marker
from pveoci.cache import Step
from pveoci.runtime.context import Context

log = logging.getLogger("pveoci.runtime")


def undo(ctx: Context, step: Step) -> None:
    """Remove what an unfinished create made: its container (only if it is ours), its cache entry, its journal."""
    if step.vmid is not None and step.node:
        _remove_if_ours(ctx, step.node, step.vmid, step.id)
    ctx.cache.drop(step.id, ctx.cluster)
    ctx.cache.finish(step.op)


def _remove_if_ours(ctx: Context, node: str, vmid: int, cid: str) -> None:
    try:
        config = ctx.backend.config(node, vmid)
    except errors.NotFound:
        return
    try:
        found = marker.parse(config.get("description"))
    except errors.MarkerUnreadable as exc:
        # Not provably this create's: left alone, and said, rather than destroyed or passed over in silence.
        log.warning("CT %s on %s, left by an unfinished create of %s, is left as it is: %s", vmid, node, cid,
                    exc.reason)
        return
    if found is None or found.id != cid:
        return
    if ctx.backend.status(node, vmid).status == "running":
        ctx.backend.stop(node, vmid)
    ctx.backend.destroy(node, vmid)
    log.info("rolled back the create of %s: removed CT %s on %s", cid, vmid, node)


def roll_back(ctx: Context, op: int, cid: str) -> None:
    """Undo this process's own create `op` after a failure; never raises (gc retries what is left)."""
    try:
        for step in ctx.cache.pending(ctx.cluster, cid):
            if step.op == op:
                undo(ctx, step)
    except errors.PveociError as exc:
        log.warning("could not roll back the create of %s (%s); `pveoci gc` will retry", cid, exc.message)


def recover(ctx: Context, cid: str | None = None) -> list[str]:
    """Roll back creates that were killed half-way (their process is gone), and finish or undo image updates
    that were; returns their ids."""
    undone = []
    for step in ctx.cache.pending(ctx.cluster, cid):
        if step.alive():
            continue
        if step.kind == "update":
            from pveoci.runtime import swap

            try:
                swap.recover(ctx, step)
            except errors.PveociError as exc:
                log.warning("the interrupted image update of %s cannot be settled now (%s); the next command "
                            "tries again", step.id, exc.message)
                continue
        else:
            undo(ctx, step)
        undone.append(step.id)
    return undone
