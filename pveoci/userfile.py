"""Reading a small file the user names (config.json, config.toml, process.json): never a device, never without a
size limit, never waiting on a FIFO that nobody writes.

A path may name anything: `/dev/zero` (read whole, it never ends), a FIFO (an open that waits for a writer
forever), a directory. Callers turn `Refused` and OSError into their own typed error, naming the file.
"""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB


class Refused(Exception):
    """The path is not a file pveoci reads (a device, a directory), or it is larger than the limit."""


def describe(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit // KIB} KiB"


def read(path: Path, limit: int, *, pipes: bool = False) -> bytes:
    """At most `limit` bytes of a regular file, or (with `pipes`) of a pipe such as `<(command)`'s /dev/fd/63.

    What the path names is checked before it is opened (opening a device may do something: rewind a tape),
    and again on the open file, which a swap in between cannot change. The open never blocks (O_NONBLOCK): a
    FIFO that nobody has opened for writing reads as empty. Raises FileNotFoundError and other OSErrors as
    stat(2), open(2) and read(2) do.
    """
    _check(os.stat(path).st_mode, pipes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check(os.fstat(fd).st_mode, pipes)
        return _read_all(fd, limit)
    finally:
        os.close(fd)


def _check(mode: int, pipes: bool) -> None:
    if stat.S_ISDIR(mode):
        raise Refused("is a directory")
    if not (stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode))):
        raise Refused(f"is not a regular file (a {_kind(mode)})")


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _read_all(fd: int, limit: int) -> bytes:
    """Until the end (a pipe's: its writer closes it, as a blocking read would wait for), at most limit + 1 bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, min(limit + 1 - size, MIB))
        except BlockingIOError:  # a pipe with nothing in it yet
            select.select([fd], [], [])
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(f"is larger than {describe(limit)}")
