"""`pveoci events`: a container's figures as runc's events, JSON lines every --interval (runc's Go duration), or
one with --stats."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import Annotated, Any

import typer

from pveoci.cli.invocation import IdArgument, OutputOption, cli

# Go's time.ParseDuration: a sequence of decimal numbers, each with a unit, e.g. 300ms, 1.5h or 2h45m; 0 alone.
_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
_MAX_NS = 2**63 - 1  # a Go duration is an int64 of nanoseconds


def go_duration(text: str) -> float:
    """A duration as Go writes it (`5s`, `500ms`, `1m30s`, `-2h`; `0` alone), in seconds; ValueError in Go's words
    for anything else."""
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"time: invalid duration {json.dumps(text)}")
    total, at = Fraction(0), 0
    while at < len(body):
        match = _PART.match(body, at)  # matches always, maybe nothing
        number, unit = (match[1], match[2]) if match else ("", "")
        if number in ("", "."):
            raise ValueError(f"time: invalid duration {json.dumps(text)}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {json.dumps(text)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit)} in duration {json.dumps(text)}")
        total += Fraction(number) * _UNITS[unit]
        at += len(number) + len(unit)
    if total > _MAX_NS:
        raise ValueError(f"time: invalid duration {json.dumps(text)}")
    return float(-total if text.startswith("-") else total) / 1e9


def _interval(text: str) -> float:
    try:
        seconds = go_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--interval'") from None
    if seconds <= 0:
        raise typer.BadParameter("duration interval must be greater than 0", param_hint="'--interval'")
    return seconds


class _Terminated(Exception):
    """SIGTERM arrived: the stream ends as Ctrl-C ends it."""


@contextlib.contextmanager
def _ended_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the stream cleanly (the lines printed whole, the connections closed): exit 143, the status a
    shell gives runc, which dies of it."""
    def terminate(_signum: int, _frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except _Terminated:
        raise typer.Exit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _line(event: dict[str, Any]) -> None:
    """One event on one line, as runc's JSON encoder writes it, at once (a reader sees each as it comes)."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def events(
    ctx: typer.Context,
    container_id: IdArgument,
    stats: Annotated[bool, typer.Option("--stats", help="Print the figures once and exit.")] = False,
    interval: Annotated[str, typer.Option("--interval", metavar="DURATION", help="Time between two lines, as Go "
                                          "writes it: 5s, 500ms, 1m.")] = "5s",
    output: OutputOption = None,
) -> None:
    """Print the container's figures as runc's events: a JSON line every --interval until it stops, or one.

    Each line is {"type":"stats","id":ID,"data":{...}}, data in runc's shape as far as Proxmox's figures
    go: memory and swap in use and their limits, bytes read and written, eth0's bytes received and sent
    (pveoci's own under "pveoci": node, vmid, CPU share, uptime). Whatever -o says. Needs a created,
    running or paused container; Ctrl-C ends the stream (130), as SIGTERM does (143).

    Examples:

    \b
      pveoci events --stats hello
      pveoci events --interval 1s hello
      pveoci events --stats hello | jq .data.memory.usage
    """
    seconds = _interval(interval)
    rt = cli(ctx, output).runtime()
    if stats:
        _line(rt.stats(container_id).to_json())
        return
    with _ended_by_sigterm():
        for event in rt.events(container_id, interval=seconds):
            _line(event.to_json())
