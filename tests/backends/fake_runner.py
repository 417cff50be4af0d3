"""A Runner that answers as a node's pct and pvesh would, from a script of (argv prefix -> answer), recording calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from pveoci.models import Completed

Answer = Completed | Callable[[str, list[str], bytes | None], Completed]


def said(status: int = 0, stdout: str = "", stderr: str = "") -> Completed:
    return Completed(status, stdout.encode(), stderr.encode())


@dataclass
class FakeRunner:
    answers: list[tuple[tuple[str, ...], Answer]] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def on(self, *prefix: str, answer: Answer) -> FakeRunner:
        """Answer argv starting with prefix (the latest rule first)."""
        self.answers.insert(0, (prefix, answer))
        return self

    def run(self, node: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600.0) -> Completed:
        words = list(argv)
        self.calls.append((node, words))
        for prefix, answer in self.answers:
            if tuple(words[:len(prefix)]) == prefix:
                return answer(node, words, stdin) if callable(answer) else answer
        raise AssertionError(f"no answer for {words} on {node!r}")

    def stream(self, node: str, argv: Sequence[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        done = self.run(node, argv)
        if stdout is not None:
            stdout.write(done.stdout)
        if stderr is not None:
            stderr.write(done.stderr)
        return done.status

    def close(self) -> None:
        pass
