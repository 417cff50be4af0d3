"""`pveoci place`: which node a create of a bundle would go to now, and why (every node's score)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli

if TYPE_CHECKING:
    from pveoci.models import Placement

ExcludeOption = Annotated[Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                          typer.Option("--exclude-node", "-x", help="Never this node (repeatable).")]
ExplainOption = Annotated[bool, typer.Option("--explain", help="Show every node's score, and why a node was "
                                             "rejected.")]
PARTS = ("memory", "spread", "cpu", "storage", "template", "group")


def explain(placement: Placement, out: TextIO | None = None) -> None:
    """Every node's score and its parts, the chosen one first; why each rejected node was."""
    rows = []
    for s in placement.scores:
        if s.score is None:
            rows.append([s.node, "-", *["" for _ in PARTS], "rejected: " + "; ".join(s.notes)])
            continue
        parts = [f"{s.parts[p]:.1f}" if p in s.parts else "-" for p in PARTS]
        verdict = "chosen: " if s.node == placement.node else ""
        rows.append([s.node, f"{s.score:.1f}", *parts, verdict + "; ".join(s.notes)])
    render.table(["NODE", "SCORE", *(p.upper() for p in PARTS), "WHY"], rows, out=out or sys.stdout)


def place(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="The bundle directory (default: the current "
                                         "directory).")] = Path("."),
    container_id: Annotated[str, typer.Option("--id", help="The container id (it breaks ties between equal "
                                              "nodes).")] = "container",
    exclude_node: ExcludeOption = None,
    show: ExplainOption = False,
    output: OutputOption = None,
) -> None:
    """Print the node `create` would put a container of this bundle on now; changes nothing.

    `auto` placement takes the online nodes that have the profile's root-disk and template storages,
    are not in maintenance or excluded, and have room for the container, and scores them (out of
    100): memory free after the container's (40), fewer pveoci containers (25), idle CPU (15), free
    root-disk storage (10), the template already there (10); minus 30 for each container of the
    same `pveoci.spread-group` annotation there. --explain shows every node's score.

    Examples:

    \b
      pveoci place -b ./web
      pveoci place -b ./web --explain --exclude-node pve1
      pveoci place -b ./web -o json | jq -r .node
    """
    from pveoci import errors

    c = cli(ctx, output)
    try:
        placed = c.runtime().place(bundle, id=container_id, exclude=exclude_node or ())
    except errors.NoSuitableNode as exc:
        if exc.placement is not None and show and not c.json:
            explain(exc.placement)
        raise
    if c.json:
        render.emit_json(placed.to_json())
    elif show:
        explain(placed)
    else:
        typer.echo(placed.node)
