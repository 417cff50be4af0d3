"""`pveoci doctor`: one line per check of the profile against its cluster."""

from __future__ import annotations

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli

_MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def doctor(ctx: typer.Context, output: OutputOption = None) -> None:
    """Check the profile: API and TLS, auth, privileges, quorum, nodes and storages, SSH host keys.

    Prints one line per check and exits 1 if any check failed.

    Examples:

    \b
      pveoci doctor
      pveoci -p lab doctor -o json | jq '.[] | select(.status == "fail")'
    """
    from pveoci import errors
    from pveoci.models import Check

    c = cli(ctx, output)
    results = []
    as_json = c.json
    try:
        found = c.runtime().checks()
    except errors.ConfigError as exc:
        found = iter([Check("config", "fail", exc.message)])
    for check in found:
        results.append(check)
        if not as_json:
            typer.echo(f"{_MARK[check.status]:<5} {check.name:<12} {check.detail}")
    if as_json:
        render.emit_json([c.to_json() for c in results])
    failed = [c.name for c in results if c.status == "fail"]
    if failed:
        raise errors.ChecksFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")
