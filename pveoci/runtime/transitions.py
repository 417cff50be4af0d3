"""The OCI state machine on a Proxmox container: start, kill, delete, pause, resume.

A container runs pveoci's init as its PID 1 (docs/init.md). `created`: the CT runs and the init
waits; `start` sends it the start signal and tags the container pveoci-started; the process's end
ends the init and stops the CT (`stopped`). `paused` is the tag pveoci-paused on a frozen CT.
Signals go to the init over SSH, which forwards them to the process; KILL and STOP, which an init
cannot catch, go to the process itself. Containers made by pveoci 0.1 (no init) keep their old rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from pveoci import errors, hooks, signals
from pveoci.init import INIT_PATH, START_SIGNAL
from pveoci.lxc.properties import tag_list
from pveoci.models import Guest, State
from pveoci.runtime import STOP_TIMEOUT
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_PAUSED, TAG_STARTED
from pveoci.runtime.locate import Located, require, to_state

log = logging.getLogger("pveoci.runtime")


def set_tags(ctx: Context, guest: Guest, add: frozenset[str] = frozenset(),
             remove: frozenset[str] = frozenset()) -> None:
    tags = (set(guest.tags) | set(add)) - set(remove)
    if tags != set(guest.tags):
        ctx.backend.set_options(guest.node, guest.vmid, {"tags": tag_list(tags)})


def _init_pid(found: Located) -> int:
    if not found.guest.pid:
        raise errors.PveociError(f"the cluster reports no pid for CT {found.guest.vmid} on {found.guest.node}")
    return found.guest.pid


def start(ctx: Context, cid: str, found: Located | None = None) -> State:
    """Start a created container; `found`: it as just located (by the create of `run`), not asked again."""
    found = found or require(ctx, cid)
    status = found.status
    if status != "created":
        raise errors.NotCreated(f"cannot start a container that is not created (it is {status})", status=status)
    g = found.guest
    if found.with_init:
        ctx.backend.signal(g.node, _init_pid(found), str(START_SIGNAL))
    else:
        ctx.backend.start(g.node, g.vmid)
        g = ctx.backend.status(g.node, g.vmid)  # running now, with its pid
    # Only now: a start that failed leaves the container created, and startable again.
    set_tags(ctx, g, add=frozenset({TAG_STARTED}))
    tags = tuple(sorted(set(g.tags) | {TAG_STARTED}))
    started = to_state(ctx, Located(replace(g, tags=tags), found.record))
    hooks.run("poststart", found.record.hooks, started.to_json())
    return started


def normalise_signal(value: str) -> str:
    name = signals.parse(value)
    if name is None:
        raise errors.InvalidParameter(f"unknown signal: {value}")
    return name


def kill(ctx: Context, cid: str, sig: str = "SIGTERM", *, all_processes: bool = False,
         timeout: int = STOP_TIMEOUT) -> None:
    """Deliver a signal and return at once (runc): to the init while created (it ends as the signal would),
    to the process once started; with all_processes to every process of the container."""
    name = normalise_signal(sig)
    with _reaching(ctx, cid):
        found = require(ctx, cid)
    status = found.status
    if status not in ("created", "running", "paused"):
        raise errors.NotRunning("container not running", status=status)
    g = found.guest
    if status == "paused":
        if name != "SIGKILL":
            raise errors.Paused("container is paused; resume it first (or send KILL)", status=status)
        ctx.backend.stop(g.node, g.vmid)
        set_tags(ctx, ctx.backend.status(g.node, g.vmid), remove=frozenset({TAG_PAUSED}))
        return
    if not found.with_init:
        _kill_without_init(ctx, found, name, timeout)
        return
    if all_processes and status == "running":
        _kill_all(ctx, found, name)
        return
    uncatchable = name in ("SIGKILL", "SIGSTOP") and status == "running"
    ctx.backend.signal(g.node, _init_pid(found), name, children=uncatchable)


@contextmanager
def _reaching(ctx: Context, cid: str) -> Iterator[None]:
    """While the cluster is asked where the container is and what it is doing: log in to the node the cache
    says it is on (a signal goes over SSH), so the login and the API's answer overlap instead of adding up."""
    record = ctx.cache.get(cid, ctx.cluster)
    if record is None or record.status not in ("created", "running", "paused"):
        yield
        return
    def reach() -> None:
        try:
            ctx.backend.reach(record.node)
        except Exception as exc:  # the signal logs in again, and reports what failed as it would have
            log.debug("logging in to %s ahead of the signal failed: %s", record.node, exc)

    login = threading.Thread(target=reach, name="pveoci-reach", daemon=True)
    login.start()
    try:
        yield
    finally:
        login.join()


def _kill_all(ctx: Context, found: Located, name: str) -> None:
    import signal as signal_module

    number = str(int(signal_module.Signals[name]))
    done = ctx.backend.capture(found.guest.node, found.guest.vmid, [INIT_PATH, "kill", "-a", number])
    if done.status != 0:
        raise errors.PveociError(f"cannot send {name} to every process of the container: "
                                 f"{done.stderr.decode(errors='replace').strip()}")


def _kill_without_init(ctx: Context, found: Located, name: str, timeout: int) -> None:
    """A container made by pveoci 0.1: TERM shuts it down, KILL stops it, others go to its PID 1."""
    g = found.guest
    if found.status == "created":
        set_tags(ctx, g, add=frozenset({TAG_STARTED}))
        return
    if name not in ("SIGKILL", "SIGTERM", found.record.stop_signal):
        ctx.backend.signal(g.node, _init_pid(found), name)
        return
    if name == "SIGKILL":
        ctx.backend.stop(g.node, g.vmid)
    else:
        ctx.backend.shutdown(g.node, g.vmid, timeout)


def delete(ctx: Context, found: Located | None, cid: str, *, force: bool) -> None:
    if found is None:
        if force:
            return
        raise errors.NotFound("container does not exist")
    g = found.guest
    status = found.status
    if status != "stopped" and not force:  # runtime-spec: deleting a container that is not stopped is an error
        raise errors.NotStopped(f"cannot delete container {cid} that is not stopped: {status}", status=status)
    if g.status == "running":  # running, paused, or created (its init waits)
        stop_ct(ctx, g.node, g.vmid)
    ctx.backend.destroy(g.node, g.vmid)
    gone = to_state(ctx, found)
    gone.status, gone.pid = "stopped", 0
    ctx.cache.drop(cid, ctx.cluster)
    hooks.run("poststop", found.record.hooks, gone.to_json())


def stop_ct(ctx: Context, node: str, vmid: int) -> None:
    """Stop it; one that stopped by itself meanwhile (its process ended just now: Proxmox refuses to stop a
    container that is not running) is as good."""
    try:
        ctx.backend.stop(node, vmid)
    except errors.PveociError:
        if ctx.backend.status(node, vmid).status == "running":
            raise


def pause(ctx: Context, cid: str) -> None:
    found = require(ctx, cid)
    if found.status != "running":
        raise errors.NotRunning("container not running", status=found.status)
    ctx.backend.freeze(found.guest.node, found.guest.vmid)
    set_tags(ctx, found.guest, add=frozenset({TAG_PAUSED}))


def resume(ctx: Context, cid: str) -> None:
    found = require(ctx, cid)
    if found.status != "paused":
        raise errors.NotPaused("container not paused", status=found.status)
    ctx.backend.thaw(found.guest.node, found.guest.vmid)
    set_tags(ctx, found.guest, remove=frozenset({TAG_PAUSED}))
