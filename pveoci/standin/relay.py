"""The stand-in: one small local process per container (and per exec'd process) that stands for the remote
process on this machine, as runc's init does for a local one (docs/engines.md).

Engines (conmon, containerd's shim) wait for the pid `create` and `exec --detach` write to `--pid-file`, as
subreapers: this process. It holds the streams `create` was given and relays the container's process to
them, and exits with the process's status.

- `follow` (a container): runs the plan's follow command, `init logs -f --framed --from N` in the container
  over SSH, and writes each record of stream 1 to fd 1 and of stream 2 to fd 2, in the log's order, counting
  the log's bytes; the status record ends it with that status. A follower that ends without one (a dropped
  connection, a node that reboots) is asked again from the byte it stopped at, so nothing is lost or doubled;
  if the container stopped meanwhile, the plan's `after` command gives the log's rest and the status (137
  when it was stopped from outside pveoci, which leaves none); a container that is gone ends it with 255.
- `exec` (an exec'd process): becomes the plan's command (`ssh ... pct exec ... init exec ...`) with its
  streams, so the process's status is its own; with a terminal, the streams are the slave of the pty whose
  master pveoci sent to the engine's console socket, made this process's controlling terminal, so that a
  resize the engine makes reaches ssh as SIGWINCH and the container's terminal as a window change.

Killing it leaves the container running: its children (ssh) die with it; the node's follower sees its
reader gone and ends. It runs as `python -I -S relay.py ID PLAN_FD`: the standard library only (its
memory is what it costs while it waits), its plan as JSON on PLAN_FD. Idle it sleeps in read(2).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time

OFFSET = "@OFFSET@"            # the word of a plan's command that becomes the log's byte offset
CHUNK = 65536
KILLED = 137                   # a container stopped from outside: its init was killed, as by SIGKILL
GONE = 255                     # the container no longer exists: no status can be known
FIRST_RETRY, LAST_RETRY = 0.25, 5.0


class Frames:
    """Records as the init's log and `logs --framed` write them: stream byte, 4-byte big-endian length, data."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out, at = [], 0
        while len(self.buf) - at >= 5:
            end = at + 5 + int.from_bytes(self.buf[at + 1:at + 5], "big")
            if end > len(self.buf):
                break
            out.append((self.buf[at], bytes(self.buf[at + 5:end])))
            at = end
        del self.buf[:at]
        return out


class Outputs:
    """fd 1 and fd 2, as create got them. A stream whose reader is gone is dropped, the rest still relayed."""

    def __init__(self) -> None:
        self.open = {1: True, 2: True}

    def write(self, stream: int, data: bytes) -> None:
        view = memoryview(data)
        while view and self.open.get(stream):
            try:
                view = view[os.write(stream, view):]
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    self.open[stream] = False
                else:
                    time.sleep(0.01)


class Follower:
    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan, self.offset, self.outputs = plan, 0, Outputs()

    def relay(self, frames: list[tuple[int, bytes]]) -> int | None:
        """Writes the records' data; the status, if one came."""
        status = None
        for stream, data in frames:
            if stream in (1, 2):
                self.outputs.write(stream, data)
                self.offset += 5 + len(data)
            elif stream == 3:
                status = int(data)
        return status

    def follow(self) -> tuple[int | None, bool]:
        """One follower, to its end: (the status if it came, whether anything came)."""
        fd, pid = spawn(command(self.plan["follow"], self.offset))
        frames, status, moved = Frames(), None, False
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while data := pipe.read(CHUNK):
                moved = True
                status = self.relay(frames.feed(data))
                if status is not None:
                    break
        os.waitpid(pid, 0)
        return status, moved

    def after(self) -> tuple[str, int | None]:
        """Where the container is, when a follower ended without its status: ("stopped", status) after the
        log's rest was relayed; ("missing", None); ("running" | "error" | "unreachable", None)."""
        fd, pid = spawn(command(self.plan["after"], self.offset))
        head, words, frames = bytearray(), None, Frames()
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while data := pipe.read(CHUNK):
                if words is None:
                    head += data
                    if b"\n" not in head:
                        continue
                    line, _, data = bytes(head).partition(b"\n")
                    words = line.decode(errors="replace").split() or ["error"]
                if words[0] == "stopped":          # the log's rest follows the line, relayed as it comes
                    self.relay(frames.feed(data))
        _, code = os.waitpid(pid, 0)
        if words is None:
            return ("unreachable" if os.waitstatus_to_exitcode(code) == 255 else "error"), None
        if words[0] == "stopped":
            known = len(words) > 1 and words[1].isdigit()
            return "stopped", int(words[1]) if known else KILLED
        return words[0], None

    def run(self) -> int:
        delay = FIRST_RETRY
        while True:
            status, moved = self.follow()
            if status is not None:
                return status
            where, status = self.after()
            if where == "stopped" and status is not None:
                return status
            if where == "missing":
                return GONE
            delay = FIRST_RETRY if moved else min(delay * 2, LAST_RETRY)
            time.sleep(delay)


def command(argv: list[str], offset: int) -> list[str]:
    return [word.replace(OFFSET, str(offset)) for word in argv]


def spawn(argv: list[str]) -> tuple[int, int]:
    """argv with stdin from /dev/null, stdout to a pipe (returned), stderr dropped, dying with this process."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        try:
            os.close(read)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(write, 1)
            os.dup2(null, 2)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            die_with_parent()
            os.execvp(argv[0], argv)  # noqa: S606 - argv, never a shell line
        finally:
            os._exit(127)
    os.close(write)
    return read, pid


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the child (ssh) is killed when the stand-in dies, however it dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def become(plan: dict[str, list[str]]) -> int:
    """exec mode: this process becomes the plan's command; with a terminal (fd 0 the pty's slave, this process
    a session leader), the terminal becomes this session's controlling one first."""
    if os.isatty(0):
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    argv = plan["exec"]
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - argv, never a shell line
    except OSError as exc:
        os.write(2, f"pveoci stand-in: {argv[0]}: {exc.strerror}\n".encode())
    return 127


def main(args: list[str]) -> int:
    with os.fdopen(int(args[1]), "rb") as source:
        plan = json.loads(source.read())
    os.chdir("/")                                   # holds no directory of the caller's (a bundle) busy
    if "exec" in plan:
        return become(plan)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)   # a reader gone is an EPIPE, handled where written
    return Follower(plan).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
