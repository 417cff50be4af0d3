"""The OCI state machine on a Proxmox container: start, kill, delete, pause, resume.

`created` and `stopped` are both a stopped CT to Proxmox; the tag pveoci-started tells them apart,
set once a start succeeded. `paused` is a running CT with the tag pveoci-paused (its cgroup frozen).
"""

from __future__ import annotations

from pveoci import errors, hooks, signals
from pveoci.models import Guest, State
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_PAUSED, TAG_STARTED
from pveoci.runtime.locate import Located, oci_status, require, to_state

STOP_TIMEOUT = 10


def set_tags(ctx: Context, guest: Guest, add: frozenset[str] = frozenset(),
             remove: frozenset[str] = frozenset()) -> None:
    tags = (set(guest.tags) | set(add)) - set(remove)
    if tags != set(guest.tags):
        ctx.backend.set_options(guest.node, guest.vmid, {"tags": ";".join(sorted(tags))})


def start(ctx: Context, cid: str) -> State:
    found = require(ctx, cid)
    status = oci_status(found.guest)
    if status != "created":
        raise errors.NotCreated(f"cannot start a container that is not created (it is {status})", status=status)
    g = found.guest
    ctx.backend.start(g.node, g.vmid)
    # Only now: a start that failed leaves the container created, and startable again.
    set_tags(ctx, ctx.backend.status(g.node, g.vmid), add=frozenset({TAG_STARTED}))
    started = to_state(ctx, require(ctx, cid))
    hooks.run("poststart", found.record.hooks, started.to_json())
    return started


def normalise_signal(value: str) -> str:
    name = signals.parse(value)
    if name is None:
        raise errors.InvalidParameter(f"unknown signal: {value}")
    return name


def kill(ctx: Context, cid: str, sig: str = "SIGTERM", *, timeout: int = STOP_TIMEOUT) -> None:
    name = normalise_signal(sig)
    found = require(ctx, cid)
    g = found.guest
    status = oci_status(g)
    if status == "created":
        # runc kills a created container's init; here there is none yet: it just becomes stopped.
        set_tags(ctx, g, add=frozenset({TAG_STARTED}))
        return
    if status not in ("running", "paused"):
        raise errors.NotRunning("container not running", status=status)
    if status == "paused" and name != "SIGKILL":
        raise errors.Paused("container is paused; resume it first (or send KILL)", status=status)
    if name not in ("SIGKILL", "SIGTERM", found.record.stop_signal):
        if not g.pid:
            raise errors.PveociError(f"the cluster reports no pid for CT {g.vmid}; cannot send {name}")
        ctx.backend.signal(g.node, g.pid, name)
        return
    if name == "SIGKILL":
        ctx.backend.stop(g.node, g.vmid)
    else:
        ctx.backend.shutdown(g.node, g.vmid, timeout)
    # It is stopped now: a pause does not outlive it.
    set_tags(ctx, ctx.backend.status(g.node, g.vmid), remove=frozenset({TAG_PAUSED}))


def delete(ctx: Context, found: Located | None, cid: str, *, force: bool) -> None:
    if found is None:
        if force:
            return
        raise errors.NotFound("container does not exist")
    g = found.guest
    status = oci_status(g)
    if status in ("running", "paused"):
        if not force:
            raise errors.NotStopped(f"cannot delete container {cid} that is not stopped: {status}", status=status)
        ctx.backend.stop(g.node, g.vmid)
    ctx.backend.destroy(g.node, g.vmid)
    gone = to_state(ctx, found)
    gone.status, gone.pid = "stopped", 0
    ctx.cache.drop(cid, ctx.cluster)
    hooks.run("poststop", found.record.hooks, gone.to_json())


def pause(ctx: Context, cid: str) -> None:
    found = require(ctx, cid)
    status = oci_status(found.guest)
    if status != "running":
        raise errors.NotRunning("container not running", status=status)
    ctx.backend.freeze(found.guest.node, found.guest.vmid)
    set_tags(ctx, found.guest, add=frozenset({TAG_PAUSED}))


def resume(ctx: Context, cid: str) -> None:
    found = require(ctx, cid)
    status = oci_status(found.guest)
    if status != "paused":
        raise errors.NotPaused("container not paused", status=status)
    ctx.backend.thaw(found.guest.node, found.guest.vmid)
    set_tags(ctx, found.guest, remove=frozenset({TAG_PAUSED}))
