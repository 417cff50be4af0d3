"""A command run in a terminal of a given size, as a user at a terminal runs it (for `-it`): its output (what
the terminal shows) and its exit status."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time


def in_terminal(argv: list[str], env: dict[str, str], *, rows: int = 30, cols: int = 90, typed: bytes = b"",
                after: bytes = b"", timeout: float = 120.0) -> tuple[int, bytes]:
    """Runs argv on a new pty of rows x cols; `typed` is typed once the terminal shows `after`."""
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env)
    os.close(slave)
    shown, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if typed and after in shown:
                os.write(master, typed)
                typed = b""
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:          # the last of the terminal's users is gone
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), bytes(shown)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
