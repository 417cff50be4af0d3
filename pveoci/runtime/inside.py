"""Programs in a running container: exec (with the caller's streams) and ps."""

from __future__ import annotations

from typing import IO

from pveoci import errors
from pveoci.runtime.context import Context
from pveoci.runtime.locate import oci_status, require


def exec_in(ctx: Context, cid: str, argv: list[str], *, tty: bool, stdin: IO[bytes] | None,
            stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> int:
    if not argv:
        raise errors.InvalidParameter("exec needs a command")
    found = require(ctx, cid)
    status = oci_status(found.guest)
    if status != "running":
        # runc's words where the container has no running process
        words = "paused" if status == "paused" else "stopped"
        raise errors.NotRunning(f"cannot exec in a {words} container", status=status)
    return ctx.backend.exec(found.guest.node, found.guest.vmid, argv, stdin=stdin, stdout=stdout, stderr=stderr,
                            tty=tty)


def ps(ctx: Context, cid: str, ps_args: list[str]) -> tuple[str, list[int]]:
    """`ps` run in the container: its output, and the PIDs it lists (as the container sees them)."""
    found = require(ctx, cid)
    status = oci_status(found.guest)
    if status not in ("running", "paused"):
        raise errors.NotRunning("container not running", status=status)
    done = ctx.backend.capture(found.guest.node, found.guest.vmid, ["ps", *ps_args])
    if done.status != 0:
        raise errors.PveociError(f"ps in the container failed (exit {done.status}): "
                                 f"{done.stderr.decode(errors='replace').strip() or 'no ps in its rootfs?'}")
    text = done.stdout.decode(errors="replace")
    return text, pids_of(text)


def pids_of(text: str) -> list[int]:
    """The PID column of ps output (the first column when there is no PID header)."""
    lines = text.splitlines()
    if not lines:
        return []
    header = lines[0].split()
    column = header.index("PID") if "PID" in header else 0
    return [int(words[column]) for words in (line.split() for line in lines[1:])
            if len(words) > column and words[column].isdigit()]
