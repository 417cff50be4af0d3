"""`pveoci migrate`, `drain` and `rebalance`: containers moved between nodes, one report line per container."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from pveoci.cli import render
from pveoci.cli.invocation import IdArgument, OutputOption, cli
from pveoci.cli.place import ExcludeOption

if TYPE_CHECKING:
    from pveoci.models import Migration, MoveReport

DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check and plan only: say what would happen.")]
ParallelOption = Annotated[int, typer.Option("--parallel", "-j", min=1, max=16, help="Containers moved at "
                                             "once.")]
ToOption = Annotated[str, typer.Option("--to", "-t", help="The node to move to, or auto (where placement "
                                       "puts each).")]


def _line(m: Migration) -> str:
    """One container's line: id, from -> to, what happened (how, how long, its status) or why not."""
    if m.result in ("refused", "failed"):
        return f"{m.id}  {m.source or '?'} -> {m.target or '?'}  {m.result}: {m.error}"
    how = f"{m.mode}, {m.seconds:.1f} s" if m.result == "moved" else m.mode
    status = f"; {m.state.status}" if m.state is not None else ""
    return f"{m.id}  {m.source} -> {m.target}  {m.result} ({how}){status}"


def _printer(json_lines: bool) -> Callable[[Migration], None]:
    lock = threading.Lock()

    def show(m: Migration) -> None:
        with lock:
            if json_lines:
                import json

                typer.echo(json.dumps(m.to_json(), sort_keys=False))
            else:
                typer.echo(_line(m))
    return show


def _outcome(report: MoveReport) -> None:
    from pveoci import errors

    bad = [m for m in report.moves if not m.ok]
    if bad:
        raise errors.PveociError(f"{len(bad)} of {len(report.moves)} container(s) were not moved: "
                                 + ", ".join(m.id for m in bad))


def migrate(
    ctx: typer.Context,
    container_id: IdArgument,
    to: ToOption = "auto",
    dry_run: DryRunOption = False,
    exclude_node: ExcludeOption = None,
    no_restart: Annotated[bool, typer.Option("--no-restart", help="Refuse to stop a running container (a "
                                             "container cannot move while it runs).")] = False,
    output: OutputOption = None,
) -> None:
    """Move a container to another node: restart mode if it runs, offline if it is stopped, through HA if HA
    manages it. The preflight (target online and allowed, HA, local mounts, storages there) runs first;
    if it fails, nothing changes (exit 30; 12 for an offline target).

    Examples:

    \b
      pveoci migrate web1 --to pve2
      pveoci migrate web1 --dry-run          # where auto would put it, and every check
      pveoci migrate web1 -o json | jq .result
    """
    from pveoci.cli.display import display

    c = cli(ctx, output)
    with display() as shown:
        m = c.runtime().migrate(container_id, to, restart=not no_restart, dry_run=dry_run,
                                exclude=exclude_node or (), progress=shown)
    if c.json:
        render.emit_json(m.to_json())
        return
    if dry_run:
        render.table(["CHECK", "STATUS", "DETAIL"], [[k.name, k.status, k.detail] for k in m.checks])
    typer.echo(_line(m))


def drain(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to empty of pveoci containers.", show_default=False)],
    to: ToOption = "auto",
    parallel: ParallelOption = 1,
    dry_run: DryRunOption = False,
    exclude_node: ExcludeOption = None,
    output: OutputOption = None,
) -> None:
    """Move every pveoci container off a node (before maintenance), each where placement puts it (or --to).

    One line per container as it is done (JSON lines with -o json); exit 1 if any was not moved. Run it
    again after an interruption: it waits for the migrations under way, finishes the moves left half
    done, and moves what is still there; no container is lost or doubled.

    Examples:

    \b
      pveoci drain pve1 --dry-run
      pveoci drain pve1 --parallel 3
      pveoci drain pve1 --to pve2 -o json
    """
    c = cli(ctx, output)
    report = c.runtime().drain(node, to=to, parallel=parallel, dry_run=dry_run, exclude=exclude_node or (),
                               on_move=_printer(c.json))
    if not report.moves and not c.json:
        typer.echo(f"no pveoci container on {node}", err=True)
    _outcome(report)


def rebalance(
    ctx: typer.Context,
    max_moves: Annotated[int, typer.Option("--max-moves", "-m", min=0, help="Never move more containers than "
                                           "this.")] = 10,
    dry_run: DryRunOption = False,
    parallel: ParallelOption = 1,
    exclude_node: ExcludeOption = None,
    output: OutputOption = None,
) -> None:
    """Move containers so that the nodes' placement scores even out (the best node's score minus the worst's
    shrinks), at most --max-moves of them. One line per move (JSON lines with -o json); the spread before
    and after on stderr.

    Examples:

    \b
      pveoci rebalance --dry-run
      pveoci rebalance --max-moves 3
    """
    c = cli(ctx, output)
    report = c.runtime().rebalance(max_moves=max_moves, dry_run=dry_run, exclude=exclude_node or (),
                                   parallel=parallel, on_move=_printer(c.json))
    typer.echo(f"spread {report.spread_before or 0.0:.1f} -> {report.spread_after or 0.0:.1f} points"
               f"{' (planned)' if dry_run else ''}; {len(report.moves)} move(s)", err=True)
    _outcome(report)
