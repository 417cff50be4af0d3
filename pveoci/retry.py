"""Waiting and retrying, done one way: a backoff schedule, attempts spaced by it, and polling until done.

Every loop in pveoci that waits for something (a task, a lock, a flaky network, a lost VMID
race) takes its delays from a `Backoff`, so how pveoci waits is decided in one place.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pveoci import errors

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays that start at `first`, grow by `factor` up to `cap`, each spread by +-`jitter` (a fraction)."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 1.0
    jitter: float = 0.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay + random.uniform(-spread, spread)) if spread else delay
            delay = min(delay * self.factor, self.cap)


#: Polling a Proxmox task: most finish well under a second, some take minutes.
TASK_POLL = Backoff(first=0.05, factor=1.5, cap=1.0)
#: Retrying a request whose connection failed, or a lost race: spread, so racers do not meet again.
NETWORK = Backoff(first=0.1, factor=2.0, cap=2.0, jitter=0.25)


def attempts(count: int, backoff: Backoff = NETWORK, *, sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Attempt numbers 0..count-1, sleeping the backoff's delay before each one after the first.

    The caller `continue`s to try again and `break`s (or returns) when done; after the last
    attempt the loop simply ends, so the caller raises what it has.
    """
    delays = backoff.delays()
    for attempt in range(count):
        if attempt:
            sleep(next(delays))
        yield attempt


def poll(check: Callable[[], T | None], *, timeout: float, what: str, backoff: Backoff = TASK_POLL,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """Call `check` until it returns something other than None; OperationTimeout after `timeout` seconds."""
    deadline = clock() + timeout
    delays = backoff.delays()
    with polling() as again:
        while True:
            result = check()
            if result is not None:
                return result
            left = deadline - clock()
            if left <= 0:
                raise errors.OperationTimeout(f"{what}: still waiting after {timeout:g} s")
            sleep(min(next(delays), left))
            again()


class PollWatcher(Protocol):
    """Told where polling loops begin, repeat and end, in the thread that polls (pveoci.testing's recorder
    keeps only the round that ended a loop, so a recording does not depend on how long the cluster took)."""

    def begin(self) -> None: ...

    def again(self) -> None:
        """The round just finished did not end the loop."""

    def end(self) -> None: ...


_watchers: list[PollWatcher] = []


@contextlib.contextmanager
def watching(watcher: PollWatcher) -> Iterator[None]:
    """Tell `watcher` about every polling loop while the block runs."""
    _watchers.append(watcher)
    try:
        yield
    finally:
        _watchers.remove(watcher)


@contextlib.contextmanager
def polling() -> Iterator[Callable[[], None]]:
    """Mark a polling loop for watchers; call the callable it gives after each round that did not end it."""
    watchers = list(_watchers)
    for w in watchers:
        w.begin()

    def again() -> None:
        for w in watchers:
            w.again()

    try:
        yield again
    finally:
        for w in watchers:
            w.end()
