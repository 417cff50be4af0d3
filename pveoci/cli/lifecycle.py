"""runc's lifecycle commands: create, start, run, state, list, kill, delete, pause, resume, exec, ps, gc.

Each parses its arguments, calls one method of the Runtime and renders the result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pveoci.cli import render
from pveoci.cli.context import OutputOption, cli

IdArgument = Annotated[str, typer.Argument(help="The container id (runc rules: letters, digits, _ + . -).",
                                           show_default=False)]
BundleOption = Annotated[Path, typer.Option("--bundle", "-b", help="The bundle directory (default: the current "
                                            "directory).")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Fail on any field Proxmox cannot honour.")]
NodeOption = Annotated[Optional[str],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                       typer.Option("--node", "-n", help="Node (default: the profile's node; auto picks "
                                    "the online node with most free memory).")]
PidFileOption = Annotated[Optional[Path],  # noqa: UP045
                          typer.Option("--pid-file", help="Write the container's init pid (on its node) here.")]
TransportOption = Annotated[str, typer.Option("--transport", help="How the template travels: sftp or api.")]
FormatOption = Annotated[Optional[str],  # noqa: UP045
                         typer.Option("--format", "-f", help="table or json (runc's flag; same as -o).")]


def _refuse(flag: str, reason: str) -> None:
    from pveoci import errors

    raise errors.Unsupported(f"{flag}: {reason}")


def create(
    ctx: typer.Context,
    container_id: IdArgument,
    bundle: BundleOption = Path("."),
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
    console_socket: Annotated[Optional[str], typer.Option("--console-socket", help="Refused: a Proxmox "  # noqa: UP045
                                                          "container's console is on its node.")] = None,
    no_pivot: Annotated[bool, typer.Option("--no-pivot", help="Refused: LXC always pivots.")] = False,
    no_new_keyring: Annotated[bool, typer.Option("--no-new-keyring", help="Refused: LXC gives every "
                                                 "container its own session keyring.")] = False,
    preserve_fds: Annotated[int, typer.Option("--preserve-fds", help="Refused unless 0: no file descriptor "
                                              "can cross to a remote node.")] = 0,
    output: OutputOption = None,
) -> None:
    """Create a container from a bundle, without starting it.

    Packs the rootfs into a content-addressed template, uploads it unless the node has it, takes
    a VMID from the cluster and creates the container. With -o json, prints its state.

    Examples:

    \b
      pveoci create -b ./hello hello
      pveoci create --bundle ./hello --node pve2 hello
    """
    _refuse_runc_only(console_socket, no_pivot, no_new_keyring, preserve_fds)
    if pid_file is not None:
        _refuse("--pid-file", "a created container has no process on its node until it starts; "
                "use `start` and then `state`, or `run --pid-file`")
    from pveoci.cli import progress

    c = cli(ctx, output)
    with progress.display() as shown:
        made = c.runtime().create(container_id, bundle, node=node, strict=strict, transport=transport,
                                  progress=shown)
    if output is not None and c.json:
        render.emit_json(made.to_json())


def _refuse_runc_only(console_socket: str | None, no_pivot: bool, no_new_keyring: bool, preserve_fds: int) -> None:
    if console_socket is not None:
        _refuse("--console-socket", "the container's console is on its Proxmox node (pct console), not here")
    if no_pivot:
        _refuse("--no-pivot", "LXC always uses pivot_root on the node")
    if no_new_keyring:
        _refuse("--no-new-keyring", "LXC gives every container its own session keyring")
    if preserve_fds:
        _refuse("--preserve-fds", "file descriptors cannot be passed to a container on a remote node")


def start(ctx: typer.Context, container_id: IdArgument, output: OutputOption = None) -> None:
    """Start a created container: its process runs as PID 1 on its node.

    Examples:

    \b
      pveoci start hello
    """
    c = cli(ctx, output)
    started = c.runtime().start(container_id)
    if output is not None and c.json:
        render.emit_json(started.to_json())


def run(
    ctx: typer.Context,
    container_id: IdArgument,
    bundle: BundleOption = Path("."),
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once it runs (else wait for it to "
                                         "stop).")] = False,
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
    console_socket: Annotated[Optional[str], typer.Option("--console-socket", help="Refused: a Proxmox "  # noqa: UP045
                                                          "container's console is on its node.")] = None,
    no_pivot: Annotated[bool, typer.Option("--no-pivot", help="Refused: LXC always pivots.")] = False,
    no_new_keyring: Annotated[bool, typer.Option("--no-new-keyring", help="Refused.")] = False,
    preserve_fds: Annotated[int, typer.Option("--preserve-fds", help="Refused unless 0.")] = 0,
    output: OutputOption = None,
) -> None:
    """Create and start a container.

    Without -d, waits until the container stops (Ctrl-C leaves it running).

    Examples:

    \b
      pveoci run -d -b ./hello hello
      pveoci run --bundle ./job job42
    """
    _refuse_runc_only(console_socket, no_pivot, no_new_keyring, preserve_fds)
    from pveoci.cli import progress

    c = cli(ctx, output)
    rt = c.runtime()
    with progress.display() as shown:
        started = rt.run(container_id, bundle, node=node, strict=strict, transport=transport, progress=shown)
    if pid_file is not None:
        render.write_pid_file(pid_file, started.pid)
    if output is not None and c.json:
        render.emit_json(started.to_json())
    if not detach:
        rt.wait(container_id)


def state_cmd(
    ctx: typer.Context,
    container_id: IdArgument,
    cached: Annotated[bool, typer.Option("--cached", help="Answer from the local cache, without asking the "
                                         "cluster.")] = False,
) -> None:
    """Print the container's state as OCI state JSON (pveoci's own fields under "pveoci").

    Examples:

    \b
      pveoci state hello
      pveoci state hello | jq -r .status
    """
    render.emit_json(cli(ctx).runtime().state(container_id, cached=cached).to_json())


def list_cmd(
    ctx: typer.Context,
    fmt: FormatOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
    output: OutputOption = None,
) -> None:
    """List pveoci's containers on the cluster.

    Examples:

    \b
      pveoci list
      pveoci list -q
      pveoci list -o json
    """
    c = cli(ctx, render.output_of(fmt, output))
    states = c.runtime().list()
    if quiet:
        for s in states:
            typer.echo(s.id)
    elif c.json:
        render.emit_json([s.to_json() for s in states])
    else:
        render.table(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "NODE", "VMID"],
                     [[s.id, str(s.to_json()["pid"]), s.status, s.bundle, s.created, "", s.node, str(s.vmid)]
                      for s in states])


def kill(
    ctx: typer.Context,
    container_id: IdArgument,
    signal: Annotated[str, typer.Argument(help="Signal: TERM (default), KILL, HUP, 9, SIGUSR1, ...")] = "SIGTERM",
    all_processes: Annotated[bool, typer.Option("--all", "-a", help="Refused for now: the signal goes to the "
                                                "container's process.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds TERM waits for a clean stop before the "
                                         "container is stopped.")] = 10,
) -> None:
    """Send a signal to the container.

    TERM (or the bundle's stop signal) shuts the container down, stopping it after --timeout;
    KILL stops it at once; any other signal goes to its init process on the node, over SSH.

    Examples:

    \b
      pveoci kill hello
      pveoci kill hello KILL
      pveoci kill hello HUP
    """
    if all_processes:
        _refuse("--all", "signalling every process of a container is not available yet; the signal goes to "
                "its process (omit --all)")
    cli(ctx).runtime().kill(container_id, signal, timeout=timeout)


def delete(
    ctx: typer.Context,
    container_id: IdArgument,
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop a running container first; an unknown id "
                                        "is not an error.")] = False,
) -> None:
    """Delete a stopped (or created) container and everything create made for it.

    Examples:

    \b
      pveoci delete hello
      pveoci delete -f hello
    """
    cli(ctx).runtime().delete(container_id, force=force)


def pause(ctx: typer.Context, container_id: IdArgument) -> None:
    """Freeze every process of a running container.

    Examples:

    \b
      pveoci pause hello
    """
    cli(ctx).runtime().pause(container_id)


def resume(ctx: typer.Context, container_id: IdArgument) -> None:
    """Thaw a paused container.

    Examples:

    \b
      pveoci resume hello
    """
    cli(ctx).runtime().resume(container_id)


def exec_cmd(
    ctx: typer.Context,
    container_id: IdArgument,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a terminal.")] = False,
) -> None:
    """Run a command in a running container (pct exec on its node, over SSH); exits with its status.

    Examples:

    \b
      pveoci exec hello -- cat /proc/1/environ
      pveoci exec -t hello -- sh
    """
    stdin = None if sys.stdin.isatty() and not tty else sys.stdin.buffer
    code = cli(ctx).runtime().exec(container_id, list(command), tty=tty, stdin=stdin, stdout=sys.stdout.buffer,
                                   stderr=sys.stderr.buffer)
    raise typer.Exit(code)


def ps(
    ctx: typer.Context,
    container_id: IdArgument,
    ps_args: Annotated[Optional[list[str]], typer.Argument(help="Options for ps (after --).")] = None,  # noqa: UP045
    fmt: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Show the processes of a running container (ps run in it; PIDs as the container sees them).

    Examples:

    \b
      pveoci ps hello
      pveoci ps -f json hello
    """
    c = cli(ctx, render.output_of(fmt, output))
    table = c.runtime().ps(container_id, list(ps_args or []))
    if c.json:
        render.emit_json(list(table.pids))
    else:
        typer.echo(table.output, nl=False)


def gc(ctx: typer.Context, output: OutputOption = None) -> None:
    """Finish what interrupted commands left: roll back half-made creates, drop stale cache entries.

    Examples:

    \b
      pveoci gc
    """
    c = cli(ctx, output)
    report = c.runtime().gc()
    if c.json:
        render.emit_json(report.to_json())
    elif report.rolled_back:
        typer.echo("rolled back unfinished creates: " + ", ".join(report.rolled_back))
    else:
        typer.echo("nothing to clean up")


cache_app = typer.Typer(help="The local cache of containers.", no_args_is_help=True)


@cache_app.command("sync")
def cache_sync(ctx: typer.Context, output: OutputOption = None) -> None:
    """Reconcile the cache with the cluster: adopt marked containers, drop entries whose container is gone.

    Examples:

    \b
      pveoci cache sync
    """
    c = cli(ctx, output)
    states = c.runtime().list()
    if c.json:
        render.emit_json({"containers": [s.id for s in states]})
    else:
        typer.echo(f"cache holds {len(states)} container(s) of profile {c.settings().profile.name}")
