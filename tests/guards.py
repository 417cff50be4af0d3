"""Guards for tests of hostile input: a regression that reads without end or waits forever fails the test, and
takes neither the machine's memory nor the suite's time with it."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 1024 * 1024


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextmanager
def memory_cap(extra: int = 512 * MIB) -> Iterator[None]:
    """At most `extra` bytes more address space for what runs inside: a read without a limit raises MemoryError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + extra
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def fifo_released_after(fifo: Path, seconds: float) -> Iterator[None]:
    """If what runs inside still waits on the FIFO after `seconds`, a writer opens and closes it: the wait ends
    (the test then fails on its clock, not by hanging)."""
    done = threading.Event()

    def release() -> None:
        if not done.wait(seconds):
            # O_RDWR never waits (Linux), and is the writer a waiting reader's open needs; closed: it reads EOF.
            os.close(os.open(fifo, os.O_RDWR))

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()

