"""Output for people (aligned columns) and for scripts (stable, indented JSON)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pveoci.cli.invocation import Output


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """Left-aligned columns two spaces apart, as runc's and pct's listings: easy to read and to cut."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(headers), *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        (out or sys.stdout).write(line.rstrip() + "\n")


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


def output_of(fmt: str | None, output: Output | None) -> Output | None:
    """runc's -f/--format (list, ps) as the -o it means; a bad value is a usage error."""
    if fmt is None:
        return output
    try:
        return Output(fmt)
    except ValueError:
        import typer

        raise typer.BadParameter(f"{fmt!r} is not one of 'table', 'json'", param_hint="'--format' / '-f'") from None


def write_pid_file(path: Path, pid: int) -> None:
    """Atomically, without a trailing newline, as runc writes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(pid))
    tmp.replace(path)
