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

import contextlib
import errno
import json
import os
import select
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


class Input:
    """fd 0 relayed to the process through `init stdin` on the node (the plan's `input` command), as records of
    the init's input (docs/init.md): data with its offset, the end, a window size. What the node has not said it
    received is kept and sent again by the next writer after a dropped connection; nothing is doubled (the init
    drops what it has). With a terminal (fd 0 the pty's slave, our controlling terminal), a resize the engine
    makes (SIGWINCH) goes as a window size."""

    RECORD = 4000                  # data per record: a record is written to the node's FIFO in one write
    KEEP = 8 << 20                 # input held that the node has not confirmed: reading fd 0 waits beyond it

    def __init__(self, argv: list[str], tty: bool) -> None:
        self.argv, self.tty = argv, tty
        self.base, self.pending = 0, bytearray()     # input from offset `base` on, not yet confirmed
        self.sent = 0                                # offset written to the current writer
        self.ended = self.end_sent = self.complete = False   # complete: the node said it has the end
        self.writer: tuple[int, int, int] | None = None   # pid, its stdin (ours to write), its stdout
        self.head, self.ready, self.out = bytearray(), False, b""
        self.resize, self.retry_at, self.delay = tty, 0.0, FIRST_RETRY
        self.wake = -1
        if tty:
            import termios
            import tty as terminal

            fcntl_ioctl(0, termios.TIOCSCTTY)
            terminal.setraw(0)                       # the container's pty echoes and cooks, not this one
            read, write = os.pipe()
            os.set_blocking(write, False)
            signal.set_wakeup_fd(write)
            signal.signal(signal.SIGWINCH, lambda *_: None)
            self.wake = read

    def watch(self, readable: list[int], writable: list[int]) -> float | None:
        """What to wait for; how long at most (a writer to start again later)."""
        if self.writer is None and time.monotonic() >= self.retry_at:
            self.start()
        if self.wake >= 0:
            readable.append(self.wake)
        if self.writer is None:
            return None if self.retry_at == float("inf") else max(0.0, self.retry_at - time.monotonic())
        readable.append(self.writer[2])
        if self.ready and not self.ended and len(self.pending) < self.KEEP:
            readable.append(0)
        if self.ready and (self.out or self.resize or self.sent < self.base + len(self.pending)
                           or (self.ended and not self.end_sent)):
            writable.append(self.writer[1])
        return None

    def act(self, readable: list[int], writable: list[int]) -> None:
        if self.wake in readable:
            os.read(self.wake, 256)
            self.resize = self.tty
        if self.writer is not None and self.writer[2] in readable:
            self.hear()
        if 0 in readable and self.writer is not None:
            try:
                data = os.read(0, CHUNK)
            except OSError:                           # a terminal hung up: the engine closed its master
                data = b""
            if data:
                self.pending += data
            else:
                self.ended = True
        if self.writer is not None and self.writer[1] in writable:
            self.send()

    def start(self) -> None:
        fd_in, fd_out, pid = spawn_writer(self.argv)
        self.writer = (pid, fd_in, fd_out)
        self.head, self.ready, self.out, self.end_sent = bytearray(), False, b"", False

    def hear(self) -> None:
        """The writer's `received N` lines: what the node has (kept no longer), where to go on from."""
        assert self.writer is not None
        data = os.read(self.writer[2], 256)
        if not data:
            self.lost()
            return
        self.head += data
        *lines, rest = bytes(self.head).split(b"\n")
        self.head = bytearray(rest)
        for line in lines:
            words = line.split()
            if len(words) in (2, 3) and words[0] == b"received" and words[1].isdigit():
                got = int(words[1])
                self.complete = words[2:] == [b"end"]
                if got > self.base:
                    del self.pending[:got - self.base]
                    self.base = got
                if not self.ready:
                    self.ready, self.sent, self.delay = True, max(got, self.base), FIRST_RETRY

    def send(self) -> None:
        assert self.writer is not None
        if not self.out:
            if self.resize:
                import termios

                rows, cols = window_size(0, termios.TIOCGWINSZ)
                self.resize = False
                if rows and cols:                    # none set yet (0x0): the engine's resize comes later
                    self.out = b"W\x00\x04" + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
            elif self.sent < self.base + len(self.pending):
                chunk = bytes(self.pending[self.sent - self.base:self.sent - self.base + self.RECORD])
                self.out = b"D" + (8 + len(chunk)).to_bytes(2, "big") + self.sent.to_bytes(8, "big") + chunk
                self.sent += len(chunk)
            elif self.ended and not self.end_sent:
                self.out, self.end_sent = b"E\x00\x00", True
        try:
            self.out = self.out[os.write(self.writer[1], self.out):]
        except BlockingIOError:
            pass
        except OSError:
            self.lost()

    def lost(self) -> None:
        """The writer ended (its connection dropped, or the process's input is over): another one later."""
        if self.writer is None:
            return
        pid, fd_in, fd_out = self.writer
        self.writer = None
        for fd in (fd_in, fd_out):
            os.close(fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if self.complete:                             # the node has all of it, its end too: nothing to send
            self.retry_at = float("inf")
            return
        self.retry_at, self.delay = time.monotonic() + self.delay, min(self.delay * 2, LAST_RETRY)

    def stop(self) -> None:
        self.complete = True
        self.lost()


class Follower:
    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan, self.offset, self.outputs = plan, 0, Outputs()
        self.input = Input(plan["input"], bool(plan.get("tty"))) if plan.get("input") else None

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
        """One follower, to its end: (the status if it came, whether anything came); the input relayed meanwhile."""
        fd, pid = spawn(command(self.plan["follow"], self.offset))
        frames, status, moved = Frames(), None, False
        while status is None:
            readable, writable = [fd], list[int]()
            timeout = self.input.watch(readable, writable) if self.input else None
            readable, writable, _ = select.select(readable, writable, [], timeout)
            if fd in readable:
                data = os.read(fd, CHUNK)
                if not data:
                    break
                moved = True
                status = self.relay(frames.feed(data))
            if self.input is not None:
                self.input.act(readable, writable)
        os.close(fd)
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
        try:
            return self.follow_to_the_end()
        finally:
            if self.input is not None:
                self.input.stop()

    def follow_to_the_end(self) -> int:
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
    _, read, pid = spawn_fed(argv, feed=False)
    return read, pid


def spawn_writer(argv: list[str]) -> tuple[int, int, int]:
    """argv with its stdin from a pipe (our end returned, non-blocking) and its stdout to one; stderr dropped."""
    write, read, pid = spawn_fed(argv, feed=True)
    assert write is not None
    os.set_blocking(write, False)
    return write, read, pid


def spawn_fed(argv: list[str], *, feed: bool) -> tuple[int | None, int, int]:
    """argv, its stdout to a pipe and (with `feed`) its stdin from one, else /dev/null; stderr dropped; it dies
    with this process. (our end of its stdin or None, our end of its stdout, its pid)"""
    to_child, from_us = os.pipe() if feed else (-1, -1)
    from_child, to_us = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(to_child if feed else null, 0)
            os.dup2(to_us, 1)
            os.dup2(null, 2)
            for fd in (from_us, from_child):
                if fd >= 0:
                    os.close(fd)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            die_with_parent()
            os.execvp(argv[0], argv)  # noqa: S606 - argv, never a shell line
        finally:
            os._exit(127)
    if feed:
        os.close(to_child)
    os.close(to_us)
    return (from_us if feed else None), from_child, pid


def fcntl_ioctl(fd: int, request: int) -> None:
    import fcntl

    fcntl.ioctl(fd, request, 0)


def window_size(fd: int, request: int) -> tuple[int, int]:
    import fcntl
    import struct

    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, request, b"\0" * 8))
    return rows, cols


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
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # one line, never a traceback in the container's output
        os.write(2, f"pveoci stand-in: {type(exc).__name__}: {exc}\n".encode(errors="replace"))
        sys.exit(GONE)
