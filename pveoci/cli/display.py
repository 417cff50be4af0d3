"""Progress on a terminal: one display on stderr (a status line, a bar per transfer, sizes in MiB); nothing
when stderr is not a terminal (scripts, logs)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pveoci.progress import SILENT, Progress

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


class TerminalProgress:
    """pveoci.progress.Progress drawn with one rich Progress: the current step, and one bar per transfer."""

    def __init__(self, display: RichProgress) -> None:
        self._display = display
        self._step = display.add_task("", total=None, kind="step")
        self._tasks: dict[str, TaskID] = {}

    def note(self, message: str) -> None:
        self._display.update(self._step, description=message)

    def transfer(self, name: str, total: int | None) -> Callable[[int], None]:
        task = self._display.add_task(name, total=total, kind="bytes")
        self._tasks[name] = task

        def advance(n: int) -> None:
            self._display.update(task, advance=n)
        return advance

    def done(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            self._display.remove_task(task)


@contextmanager
def display() -> Iterator[Progress]:
    """A Progress for one command: drawn on stderr if it is a terminal, silent otherwise."""
    if not sys.stderr.isatty():
        yield SILENT
        return
    from rich.console import Console
    from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TextColumn
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class BytesColumn(ProgressColumn):
        """Done/total and speed in MiB (binary units, as `template ls` and `nodes` show sizes)."""

        def render(self, task: Any) -> Text:
            return Text(describe(task.fields.get("kind"), task.completed, task.total, task.speed))

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), BytesColumn())
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as shown:
        yield TerminalProgress(shown)


def describe(kind: str | None, done: float, total: float | None, speed: float | None) -> str:
    """`12.0/40.5 MiB  3.2 MiB/s` for a transfer; nothing for a step."""
    if kind != "bytes":
        return ""
    mib = 1024 ** 2
    text = f"{done / mib:.1f}" + (f"/{total / mib:.1f}" if total else "") + " MiB"
    return text + (f"  {speed / mib:.1f} MiB/s" if speed else "")
