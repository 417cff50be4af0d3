"""How long operations report what they are doing: one Progress, whoever draws it.

The library reports steps (`note`) and counted transfers (`transfer`, in bytes); a front end
decides how to show them (the command line: one display on a terminal, nothing otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def note(self, message: str) -> None:
        """A step of the operation begins (e.g. "creating CT 104 on pve1")."""

    def transfer(self, name: str, total: int | None) -> Callable[[int], None]:
        """A counted transfer begins ("packing", "uploading"); call the result with each chunk's byte count."""

    def done(self, name: str) -> None:
        """The transfer named `name` ended (successfully or not)."""


class Silent:
    """Reports nothing: the default for library calls."""

    def note(self, message: str) -> None:
        return None

    def transfer(self, name: str, total: int | None) -> Callable[[int], None]:
        return _ignore

    def done(self, name: str) -> None:
        return None


def _ignore(_n: int) -> None:
    return None


SILENT: Progress = Silent()
