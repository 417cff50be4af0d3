"""Stand-ins for containers and exec'd processes (pveoci.standin): what each runs, made from where the container
is, and the pid that stands for a container on this machine.

runc's `create` leaves the container's init holding its streams, and writes its pid to `--pid-file`; engines
wait for that pid as subreapers. pveoci's `create` (and `run -d`) leave a stand-in instead: it follows the
init's log on the node and exits with the process's status. `exec --detach` leaves one that is the exec'd
process's SSH session. A backend whose cluster no command of this machine reaches (memory) gets none.
"""

from __future__ import annotations

import os

from pveoci import errors
from pveoci.init import INIT_PATH
from pveoci.models import StandIn
from pveoci.runtime.context import Context
from pveoci.runtime.locate import require
from pveoci.runtime.processes import ExecOptions, runnable, stashed
from pveoci.standin import OFFSET, remember, spawn


def leave(ctx: Context, cid: str, *, stdin: bool = False, tty: bool = False,
          streams: tuple[int, int, int] = (0, 1, 2)) -> int | None:
    """A stand-in for the container's process, holding these streams (with `tty`, a pty's slave); its pid
    (None: no stand-in can reach this backend's cluster). With `stdin` or `tty` (the container made with
    `stdin` or `pty`), it relays input too."""
    found = require(ctx, cid)
    if not found.with_init:
        raise errors.Unsupported("a stand-in needs pveoci's init: this container was made by pveoci 0.1")
    g = found.guest
    follow = ctx.backend.exec_command(g.node, g.vmid, [INIT_PATH, "logs", "-f", "--framed", "--from", OFFSET])
    after = ctx.backend.log_after_command(g.node, g.vmid, OFFSET)
    if follow is None or after is None:
        return None
    plan: dict[str, object] = {"follow": follow, "after": after}
    if stdin or tty:
        plan.update(input=ctx.backend.exec_command(g.node, g.vmid, [INIT_PATH, "stdin"]), tty=tty)
    standing = spawn(plan, cid, streams=streams)
    remember(ctx.cache, ctx.cluster, cid, standing)
    return standing.pid


def leave_for(ctx: Context, cid: str, request: StandIn) -> int | None:
    """The stand-in a StandIn asks for: this process's streams, or a new pty's slave whose master goes to the
    request's console socket."""
    if request.console_socket is None:
        return leave(ctx, cid, stdin=request.stdin)
    from pveoci.standin.console import open_console

    slave = open_console(request.console_socket)
    try:
        return leave(ctx, cid, tty=True, streams=(slave, slave, slave))
    finally:
        os.close(slave)


def for_exec(ctx: Context, cid: str, argv: list[str], options: ExecOptions, *, tty: bool,
             streams: tuple[int, int, int] = (0, 1, 2)) -> int | None:
    """A stand-in that runs argv in the container as `exec` would, with these streams (a pty's slave for a
    terminal), and exits with its status; its pid (None as for leave)."""
    if not argv:
        raise errors.InvalidParameter("exec needs a command")
    found = runnable(ctx, cid, created_too=True)
    if not found.with_init:
        raise errors.Unsupported("exec --detach: this container was made by pveoci 0.1, without pveoci's init")
    g = found.guest
    if ctx.backend.exec_command(g.node, g.vmid, ["true"]) is None:
        return None
    options = stashed(ctx, found, options)
    command = ctx.backend.exec_command(g.node, g.vmid, options.argv(argv), tty=tty)
    assert command is not None
    return spawn({"exec": command}, cid, streams=streams).pid
