"""What a recording saw, in order: HTTP exchanges and SSH entries, with only the last round of each polling loop.

How often pveoci asked "is the task done?" depends on how long the cluster took; the round that got
"yes" does not. So the rounds of a loop (pveoci.retry.polling) that did not end it are dropped, and a
replay gets its final answer at once: no wait, and the same cassette from every recording.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

Entry = tuple[str, dict[str, Any]]  # ("http" | "ssh", entry)


class RecordLog:
    """Entries as they complete; a pveoci.retry.PollWatcher (per thread: each thread polls on its own)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _stack(self) -> list[list[Entry]]:
        stack: list[list[Entry]] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def add(self, kind: str, entry: dict[str, Any]) -> None:
        if getattr(self._local, "paused", 0):
            return
        stack = self._stack()
        if stack:
            stack[-1].append((kind, entry))
        else:
            with self._lock:
                self.entries.append((kind, entry))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing this thread does meanwhile (SSH's own lookups: a replay has no SSH to make them)."""
        self._local.paused = getattr(self._local, "paused", 0) + 1
        try:
            yield
        finally:
            self._local.paused -= 1

    # pveoci.retry.PollWatcher
    def begin(self) -> None:
        self._stack().append([])

    def again(self) -> None:
        stack = self._stack()
        if stack:
            stack[-1].clear()

    def end(self) -> None:
        stack = self._stack()
        if not stack:
            return
        last = stack.pop()
        for kind, entry in last:
            if stack:
                stack[-1].append((kind, entry))
            else:
                with self._lock:
                    self.entries.append((kind, entry))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [entry for k, entry in self.entries if k == kind]
