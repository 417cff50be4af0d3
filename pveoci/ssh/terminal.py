"""The local terminal for `exec -t`: raw mode while the remote program has it, its size, and its resizes."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any


def terminal_fd(stream: IO[bytes] | None) -> int | None:
    """The stream's file descriptor if it is a terminal."""
    try:
        fd = stream.fileno() if stream is not None else -1
    except (AttributeError, OSError, ValueError):
        return None
    return fd if fd >= 0 and os.isatty(fd) else None


def size(fd: int | None) -> tuple[int, int]:
    """(columns, rows) of the terminal, 80x24 without one."""
    if fd is not None:
        with contextlib.suppress(OSError):
            found = os.get_terminal_size(fd)
            return found.columns, found.lines
    return 80, 24


@contextlib.contextmanager
def raw(fd: int | None, on_resize: Callable[[int, int], Any]) -> Iterator[None]:
    """Raw mode on fd (keys go through as they are, Ctrl-C included) and resizes reported, both undone after."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        previous = signal.signal(signal.SIGWINCH, lambda _s, _f: on_resize(*size(fd)))
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
