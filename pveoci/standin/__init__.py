"""Stand-ins: the local processes that stand for a remote container's process, and for an exec'd one, on this
machine, so that engines can wait for them as they wait for runc's init (relay.py is the program, docs/engines.md
the story). This module starts one and tells whether one still stands; the console socket is console.py's.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pveoci.cache import Cache

PROGRAM = Path(__file__).with_name("relay.py")
OFFSET = "@OFFSET@"   # relay.OFFSET: the word of a follow command that becomes the log's byte offset


@dataclass(frozen=True)
class Standing:
    """A stand-in that was started: its pid, and its start time (so that a pid the system gave to another
    process since is not taken for it)."""

    pid: int
    since: int

    def alive(self) -> bool:
        return started(self.pid) == self.since


def started(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat); None when there is no such process,
    or only its zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def spawn(plan: dict[str, Any], name: str, *, streams: tuple[int, int, int] = (0, 1, 2)) -> Standing:
    """Starts a stand-in with these streams (this process's own by default; a closed one becomes /dev/null),
    in a session of its own, its working directory `/`. `name` (the container's id) is only shown by ps."""
    read, write = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd if _open(fd) else null, n) for n, fd in enumerate(streams)]
        os.set_inheritable(read, True)
        pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", str(PROGRAM), name, str(read)],
                             dict(os.environ), file_actions=actions, setsid=True)
    finally:
        os.close(read)
        os.close(null)
    with os.fdopen(write, "wb") as pipe:
        pipe.write(json.dumps(plan).encode())
    return Standing(pid, started(pid) or 0)


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


_KEY = "standin "


def remember(cache: Cache, cluster: str, cid: str, standing: Standing) -> None:
    """Keeps which stand-in this machine left for the container (the cache's facts)."""
    cache.remember(cluster, _KEY + cid, [standing.pid, standing.since])


def standing_pid(cache: Cache, cluster: str, cid: str) -> int | None:
    """The pid of the stand-in this machine left for the container, while it stands (forgotten once gone)."""
    kept = cache.recall(cluster, _KEY + cid, max_age=float("inf"))
    if not isinstance(kept, list) or len(kept) != 2:
        return None
    standing = Standing(int(kept[0]), int(kept[1]))
    if standing.alive():
        return standing.pid
    cache.forget(cluster, _KEY + cid)
    return None
