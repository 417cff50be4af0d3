"""The container's process and programs beside it: exec (as the bundle's process runs), ps, logs, attach.

In a container with pveoci's init, `exec` runs through `init exec`, which gives the program the
bundle's environment, user, working directory and limits unless told otherwise; `logs` and
`attach` read the log the init keeps of the process's stdout and stderr (docs/init.md).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from pveoci import errors
from pveoci.init import INIT_PATH, LOG_PATH, STATUS_PATH, parse_log
from pveoci.models import State
from pveoci.process import ProcessSpec, encode, encode_arg
from pveoci.runtime.context import Context
from pveoci.runtime.locate import INIT_MARKER, Located, require

READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class ExecOptions:
    """How `exec` departs from the bundle's process: more environment, another cwd or user, or a whole spec."""

    env: tuple[str, ...] = ()          # KEY=VALUE, overriding or adding to the bundle's
    cwd: str | None = None
    user: str | None = None            # UID[:GID]
    process: ProcessSpec | None = None  # runc's exec --process: everything from it (but its args)
    detach: bool = False
    exec_spec: str | None = None        # the process, once stashed in the container (stashed)

    def argv(self, command: list[str]) -> list[str]:
        words = [INIT_PATH, "exec"]
        if self.detach:
            words.append("-d")
        for item in self.env:
            words += ["-e", item]
        if self.cwd is not None:
            words += ["--cwd", self.cwd]
        if self.user is not None:
            words += ["--user", self.user]
        if self.exec_spec is not None:
            words.append(f"--exec-spec={self.exec_spec}")
        elif self.process is not None:
            words.append(f"--spec={encode_arg(self.process)}")
        return [*words, "--", *command]


def stashed(ctx: Context, found: Located, options: ExecOptions) -> ExecOptions:
    """The options with their process spec (if any) left in the container for one `init exec`, sent on stdin:
    its env may hold secrets, which never go into a command line (the node's or this machine's)."""
    if options.process is None:
        return options
    import secrets

    name = secrets.token_hex(8)
    g = found.guest
    done = ctx.backend.capture(g.node, g.vmid, [INIT_PATH, "set-spec", "--exec", name], stdin=encode(options.process))
    if done.status != 0:
        raise errors.PveociError(f"exec: cannot pass the process to the container (exit {done.status}): "
                                 f"{done.stderr.decode(errors='replace').strip()}")
    return ExecOptions(env=options.env, cwd=options.cwd, user=options.user, detach=options.detach, exec_spec=name)


def runnable(ctx: Context, cid: str, *, created_too: bool) -> Located:
    found = require(ctx, cid)
    status = found.status
    if status == "running" or (created_too and status == "created" and found.with_init):
        return found
    words = "paused" if status == "paused" else "stopped"  # runc's words where no process runs
    raise errors.NotRunning(f"cannot exec in a {words} container", status=status)


def exec_in(ctx: Context, cid: str, argv: list[str], options: ExecOptions, *, tty: bool, stdin: IO[bytes] | None,
            stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> int:
    """argv in the container (created or running, as runc allows); its exit status."""
    if not argv:
        raise errors.InvalidParameter("exec needs a command")
    found = runnable(ctx, cid, created_too=True)
    if found.with_init:
        argv = stashed(ctx, found, options).argv(argv)
    elif options != ExecOptions():
        raise errors.Unsupported("exec -e/--cwd/--user/--process/--detach: this container was made by pveoci 0.1, "
                                 "without pveoci's init; recreate it")
    return ctx.backend.exec(found.guest.node, found.guest.vmid, argv, stdin=stdin, stdout=stdout, stderr=stderr,
                            tty=tty)


def exec_detached(ctx: Context, cid: str, argv: list[str], options: ExecOptions) -> int:
    """argv in the background in the container; its PID as the container sees it."""
    found = runnable(ctx, cid, created_too=True)
    if not found.with_init:
        raise errors.Unsupported("exec --detach: this container was made by pveoci 0.1, without pveoci's init")
    detached = ExecOptions(env=options.env, cwd=options.cwd, user=options.user, process=options.process, detach=True)
    done = ctx.backend.capture(found.guest.node, found.guest.vmid, stashed(ctx, found, detached).argv(argv))
    text = done.stdout.decode(errors="replace").strip()
    if done.status != 0 or not text.isdigit():
        raise errors.PveociError(f"exec --detach failed (exit {done.status}): "
                                 f"{done.stderr.decode(errors='replace').strip() or text}")
    return int(text)


def ps(ctx: Context, cid: str, ps_args: list[str]) -> tuple[str, list[int]]:
    """`ps` run in the container: its output, and the PIDs it lists (as the container sees them)."""
    found = require(ctx, cid)
    if found.status not in ("running", "paused"):
        raise errors.NotRunning("container not running", status=found.status)
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


# ------------------------------------------------------------------ output


def logs(ctx: Context, cid: str, *, stdout: IO[bytes] | None, stderr: IO[bytes] | None,
         follow: bool = False) -> int | None:
    """The process's output so far (with follow: until it ends); its exit status once it ended, else None."""
    found = require(ctx, cid)
    if not found.with_init:
        raise errors.Unsupported("logs: this container was made by pveoci 0.1, which kept no log; recreate it")
    g = found.guest
    if g.status == "running":
        # Framed, so the exec's own complaints stay apart from the process's stderr: a container whose process
        # ends just now cannot be entered any more, and its log is then read as a stopped one's.
        frames, complaint = _Frames(stdout, stderr), io.BytesIO()
        command = [INIT_PATH, "logs", "--framed", *(["-f"] if follow else [])]
        code = ctx.backend.exec(g.node, g.vmid, command, stdin=None, stdout=frames,  # type: ignore[arg-type]
                                stderr=complaint)
        if frames.ready.is_set() or code == 0:
            return (frames.status if frames.status is not None else code) if follow else None
        if require(ctx, cid).guest.status == "running":
            said = complaint.getvalue().decode("utf-8", "replace").strip().splitlines()
            raise errors.PveociError(f"logs of container {cid}: the node could not run pveoci's init in it"
                                     + (f": {said[-1]}" if said else f" (exit {code})"))
    data = ctx.backend.read_file(g.node, g.vmid, LOG_PATH) or b""
    for stream, chunk in parse_log(data):
        target = stdout if stream == 1 else stderr
        if target is not None:
            target.write(chunk)
    status = ctx.backend.read_file(g.node, g.vmid, STATUS_PATH)
    return int(status) if status and status.strip().isdigit() else None


def exit_status(ctx: Context, state: State) -> int:
    """The exit status the init recorded for a stopped container's process (128+N when signal N ended it)."""
    record = ctx.cache.get(state.id, ctx.cluster)
    if record is not None and record.marker_version < INIT_MARKER:
        raise errors.Unsupported("wait: this container was made by pveoci 0.1, which kept no exit status; "
                                 "recreate it")
    status = ctx.backend.read_file(state.node, state.vmid, STATUS_PATH)
    if not status or not status.strip().isdigit():
        raise errors.PveociError(f"container {state.id} stopped without an exit status: it was stopped from "
                                 "outside pveoci (pct stop, a node's reboot), which ends its init at once")
    return int(status)


@dataclass
class _Frames:
    """The stream `init logs -f --framed` writes: records routed to stdout/stderr as they arrive."""

    stdout: IO[bytes] | None
    stderr: IO[bytes] | None
    ready: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    _buf: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= 5:
            end = 5 + int.from_bytes(self._buf[1:5], "big")
            if len(self._buf) < end:
                break
            self._record(self._buf[0], bytes(self._buf[5:end]))
            del self._buf[:end]
        return len(data)

    def flush(self) -> None:
        return None

    def _record(self, stream: int, data: bytes) -> None:
        if stream == 0:
            self.ready.set()
        elif stream == 3:
            self.status = int(data)
        else:
            target = self.stdout if stream == 1 else self.stderr
            if target is not None:
                target.write(data)
                target.flush()


def attach(ctx: Context, cid: str, *, stdout: IO[bytes] | None, stderr: IO[bytes] | None,
           start: Callable[[], object] | None = None) -> int:
    """Stream the process's output until it ends; its exit status. With `start`, that is called once the
    follower is attached (so nothing the process writes is missed): how a foreground `run` starts."""
    found = require(ctx, cid)
    if not found.with_init or found.guest.status != "running":
        raise errors.NotRunning(f"cannot attach to container {cid}: it is {found.status}", status=found.status)
    frames = _Frames(stdout, stderr)
    outcome: list[int | BaseException] = []

    def follow() -> None:
        try:
            outcome.append(ctx.backend.exec(found.guest.node, found.guest.vmid,
                                            [INIT_PATH, "logs", "-f", "--framed"], stdin=None,
                                            stdout=frames, stderr=stderr))  # type: ignore[arg-type]
        except BaseException as exc:
            outcome.append(exc)
        finally:
            frames.ready.set()

    follower = threading.Thread(target=follow, name=f"pveoci-attach-{cid}", daemon=True)
    follower.start()
    if start is not None:
        if not frames.ready.wait(READY_TIMEOUT):
            raise errors.OperationTimeout(f"attaching to container {cid}: no answer after {READY_TIMEOUT:g} s")
        if outcome and isinstance(outcome[0], BaseException):
            raise outcome[0]
        start()
    follower.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return frames.status if frames.status is not None else outcome[0]
