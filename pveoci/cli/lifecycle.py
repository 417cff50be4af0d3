"""The runc-shaped lifecycle commands: create, start, run, state, list, kill, delete, pause, resume, exec, gc."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from pveoci.cli import render
from pveoci.cli.plan import BundleOption, StrictOption
from pveoci.cli.state import Output, OutputOption, state
from pveoci.cli.template import NodeOption

IdArgument = Annotated[str, typer.Argument(help="The container id (runc rules: letters, digits, _ + . -).",
                                           show_default=False)]
PidFileOption = Annotated[Optional[Path],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                          typer.Option("--pid-file", help="Write the container's pid (on its node) here.")]
TransportOption = Annotated[str, typer.Option("--transport", help="How the template travels: sftp or api.")]


def _print_state(data: dict[str, object]) -> None:
    render.emit_json(data)


def create(
    ctx: typer.Context,
    container_id: IdArgument,
    bundle: BundleOption = Path("."),
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
    console_socket: Annotated[Optional[str], typer.Option("--console-socket", hidden=True)] = None,  # noqa: UP045
    no_pivot: Annotated[bool, typer.Option("--no-pivot", hidden=True)] = False,
    no_new_keyring: Annotated[bool, typer.Option("--no-new-keyring", hidden=True)] = False,
) -> None:
    """Create a container from a bundle, without starting it.

    Packs the rootfs (with pveoci's init shim) into a content-addressed template, uploads it
    unless the node has it, takes a VMID from the cluster and creates the container.

    Examples:

    \b
      pveoci create -b ./hello hello
      pveoci create --bundle ./hello --node pve2 --pid-file hello.pid hello
    """
    from pveoci.cli import progress
    from pveoci.runtime import write_pid_file

    st = state(ctx)
    with progress.bar("packing", None) as on_pack, progress.bar("uploading", None) as on_upload:
        created = st.runtime().create(container_id, bundle, node=node, strict=strict, transport=transport,
                                      on_pack=on_pack, on_upload=on_upload)
    if pid_file is not None:
        write_pid_file(pid_file, created.pid)


def start(ctx: typer.Context, container_id: IdArgument) -> None:
    """Start a created container: its process runs as PID 1 on its node.

    Examples:

    \b
      pveoci start hello
    """
    state(ctx).runtime().start(container_id)


def run(
    ctx: typer.Context,
    container_id: IdArgument,
    bundle: BundleOption = Path("."),
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once it runs (else wait for it to "
                                         "stop and exit with its status).")] = False,
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
) -> None:
    """Create and start a container.

    Without -d, waits until the container stops (Ctrl-C leaves it running) and exits 0.

    Examples:

    \b
      pveoci run -d -b ./hello hello
      pveoci run --bundle ./job job42
    """
    from pveoci import errors
    from pveoci.cli import progress
    from pveoci.runtime import write_pid_file

    rt = state(ctx).runtime()
    with progress.bar("packing", None) as on_pack, progress.bar("uploading", None) as on_upload:
        rt.create(container_id, bundle, node=node, strict=strict, transport=transport, on_pack=on_pack,
                  on_upload=on_upload)
    try:
        started = rt.start(container_id)
    except errors.PveociError:
        rt.delete(container_id, force=True)  # run is all or nothing: no created container is left behind
        raise
    if pid_file is not None:
        write_pid_file(pid_file, started.pid)
    if detach:
        return
    delay = 0.2
    while rt.state(container_id).status in ("running", "paused"):
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


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
    _print_state(state(ctx).runtime().state(container_id, cached=cached).to_json())


def list_cmd(
    ctx: typer.Context,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table or json.")] = None,  # noqa: UP045
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
    output: OutputOption = None,
) -> None:
    """List pveoci's containers on the cluster.

    Examples:

    \b
      pveoci list
      pveoci list -q
      pveoci list -f json
    """
    from pveoci import errors

    st = state(ctx, output)
    if fmt not in (None, "table", "json"):
        raise errors.InvalidParameter(f"invalid format option: {fmt} (table or json)")
    states = st.runtime().list_containers()
    if quiet:
        for s in states:
            typer.echo(s.id)
        return
    if fmt == "json" or (fmt is None and st.output is Output.json):
        render.emit_json([s.to_json() for s in states])
        return
    render.table(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "NODE", "VMID"],
                 [[s.id, str(s.to_json()["pid"]), s.status, s.bundle, s.created, "", s.node, str(s.vmid)]
                  for s in states])


def kill(
    ctx: typer.Context,
    container_id: IdArgument,
    signal: Annotated[str, typer.Argument(help="Signal: TERM (default), KILL, HUP, 9, SIGUSR1, ...")] = "SIGTERM",
    all_processes: Annotated[bool, typer.Option("--all", "-a", help="Accepted, as runc does.")] = False,
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
    state(ctx).runtime().kill(container_id, signal, timeout=timeout)


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
    state(ctx).runtime().delete(container_id, force=force)


def pause(ctx: typer.Context, container_id: IdArgument) -> None:
    """Freeze every process of a running container.

    Examples:

    \b
      pveoci pause hello
    """
    state(ctx).runtime().pause(container_id)


def resume(ctx: typer.Context, container_id: IdArgument) -> None:
    """Thaw a paused container.

    Examples:

    \b
      pveoci resume hello
    """
    state(ctx).runtime().resume(container_id)


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
    code = state(ctx).runtime().exec(container_id, list(command), tty=tty)
    raise typer.Exit(code)


def ps(
    ctx: typer.Context,
    container_id: IdArgument,
    ps_args: Annotated[Optional[list[str]], typer.Argument(help="Options for ps (after --).")] = None,  # noqa: UP045
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (the PIDs).")] = "table",
) -> None:
    """Show the processes of a running container (ps run in it; PIDs as the container sees them).

    Examples:

    \b
      pveoci ps hello
      pveoci ps -f json hello
    """
    from pveoci import errors

    if fmt not in ("table", "json"):
        raise errors.InvalidParameter(f"invalid format option: {fmt} (table or json)")
    text, pids = state(ctx).runtime().ps(container_id, list(ps_args or []))
    if fmt == "json":
        render.emit_json(pids)
    else:
        typer.echo(text, nl=False)


def gc(ctx: typer.Context, output: OutputOption = None) -> None:
    """Finish what interrupted commands left: roll back half-made creates, drop stale cache entries.

    Examples:

    \b
      pveoci gc
    """
    st = state(ctx, output)
    report = st.runtime().gc()
    if st.output is Output.json:
        render.emit_json(report)
    elif report["rolled_back"]:
        typer.echo("rolled back unfinished creates: " + ", ".join(report["rolled_back"]))
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
    st = state(ctx, output)
    states = st.runtime().list_containers()
    if st.output is Output.json:
        render.emit_json({"containers": [s.id for s in states]})
    else:
        typer.echo(f"cache holds {len(states)} container(s) of profile {st.settings().profile.name}")
