"""runc's lifecycle commands: create, start, run, state, list, kill, delete, pause, resume, exec, ps, gc.

Each parses its arguments, calls one method of the Runtime and renders the result.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from pveoci.cli import images as flags
from pveoci.cli import render
from pveoci.cli.invocation import IdArgument, OutputOption, cli
from pveoci.cli.place import ExcludeOption, ExplainOption

if TYPE_CHECKING:
    from pveoci.models import Placement, StandIn
    from pveoci.process import ProcessSpec
    from pveoci.runtime import FindingsMode, Runtime

BundleOption = Annotated[Path, typer.Option("--bundle", "-b", help="The bundle directory (default: the current "
                                            "directory).")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Fail on any field Proxmox cannot honour.")]
NodeOption = Annotated[Optional[str],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                       typer.Option("--node", "-n", help="Node (default: the profile's node; auto: the best "
                                    "scored node that can take it, see `pveoci place`).")]
PidFileOption = Annotated[Optional[Path],  # noqa: UP045
                          typer.Option("--pid-file", help="Write the stand-in's pid here (with --no-stand-in: "
                                       "the container's init pid on its node).")]
ConsoleSocketOption = Annotated[Optional[str],  # noqa: UP045
                                typer.Option("--console-socket", help="A terminal for the process: the master of "
                                             "its pty goes to this unix socket, as runc sends it (the stand-in "
                                             "relays it; process.terminal must be true).")]
StandInOption = Annotated[bool, typer.Option("--stand-in/--no-stand-in", envvar="PVEOCI_STAND_IN",
                                             help="Leave a local process, as runc leaves its init: it holds "
                                             "this command's stdin, stdout and stderr, writes the process's "
                                             "output to them and exits with its status (env PVEOCI_STAND_IN=0: "
                                             "none; the output stays in `pveoci logs`).")]
TransportOption = Annotated[str, typer.Option("--transport", help="How the template travels: sftp or api.")]
FormatOption = Annotated[Optional[str],  # noqa: UP045
                         typer.Option("--format", "-f", help="table or json (runc's flag; same as -o).")]


def _refuse(flag: str, reason: str) -> None:
    from pveoci import errors

    raise errors.Unsupported(f"{flag}: {reason}")


def create(
    ctx: typer.Context,
    container_id: IdArgument,
    args: flags.ArgsArgument = None,
    bundle: BundleOption = Path("."),
    image: flags.ImageOption = None, entrypoint: flags.EntrypointOption = None, env: flags.EnvOption = None,
    workdir: flags.WorkdirOption = None, user: flags.UserOption = None, authfile: flags.AuthfileOption = None,
    cert_dir: flags.CertDirOption = None, tls_verify: flags.TlsVerifyOption = True, pull: flags.PullOption = "auto",
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
    console_socket: ConsoleSocketOption = None,
    no_pivot: Annotated[bool, typer.Option("--no-pivot", help="Refused: LXC always pivots.")] = False,
    no_new_keyring: Annotated[bool, typer.Option("--no-new-keyring", help="Refused: LXC gives every "
                                                 "container its own session keyring.")] = False,
    preserve_fds: Annotated[int, typer.Option("--preserve-fds", help="Refused unless 0: no file descriptor "
                                              "can cross to a remote node.")] = 0,
    exclude_node: ExcludeOption = None,
    show: ExplainOption = False,
    stand_in: StandInOption = True,
    output: OutputOption = None,
) -> None:
    """Create a container from a bundle or an image, without starting its process.

    Packs the rootfs (or the image's layers) into a content-addressed template, uploads it unless the
    node has it, takes a VMID from the cluster and creates the container; pveoci's init then waits in
    it for `start`. With --image, the image's config says the process (Entrypoint and Cmd, Env,
    WorkingDir, User), changed by --entrypoint, -e, -w, -u and a command after the id.
    As runc's create leaves its init, it leaves a stand-in: a local process that holds this
    command's stdin, stdout and stderr, writes the process's output to them once it runs, and exits
    with its status; its pid is the state's and what --pid-file gets (engines wait for it). A caller
    that reads this command's output to its end waits for the container's process: use
    --no-stand-in. With -o json, prints its state.

    Examples:

    \b
      pveoci create -b ./hello hello
      pveoci create --bundle ./hello --node pve2 hello
      pveoci create -b ./hello --explain --exclude-node pve1 hello   # every node's score on stderr
      pveoci create --image registry.example:5000/web:2 -e PORT=8080 web
    """
    _refuse_runc_only(no_pivot, no_new_keyring, preserve_fds)
    from pveoci.cli.display import display

    wanted = flags.request(image, args=args, entrypoint=entrypoint, env=env, workdir=workdir, user=user,
                           authfile=authfile, cert_dir=cert_dir, tls_verify=tls_verify, pull=pull,
                           terminal=console_socket is not None, bundle_given=bundle != Path("."))
    io = _stdio(stand_in, console_socket)
    c = cli(ctx, output)
    rt = c.runtime()
    with display() as shown:
        made = rt.create(container_id, bundle, node=node, strict=strict, transport=transport, progress=shown,
                         exclude=exclude_node or (), on_placement=_explainer(show), findings=_findings(stand_in),
                         stand_in=io, image=wanted)
    if pid_file is not None:
        render.write_pid_file(pid_file, made.pid)
    if c.json:
        render.emit_json(made.to_json())


def _stdio(stand_in: bool, console_socket: str | None) -> StandIn | None:
    """The stand-in create leaves (none with --no-stand-in). The process's input comes from its stdin when that
    is a pipe, socket or file an engine gave (not a terminal: the shell's user types to the shell, not to a
    container; not /dev/null), or from a pty of its own with --console-socket."""
    import os
    import stat

    if console_socket is not None and not stand_in:
        _refuse("--console-socket", "the terminal is relayed by the stand-in: not with --no-stand-in")
    if not stand_in:
        return None
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        mode = 0
    piped = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode)
    from pveoci.models import StandIn

    return StandIn(stdin=console_socket is None and piped, console_socket=console_socket)


def _findings(stand_in: bool) -> FindingsMode | None:
    """With a stand-in, stderr is the container's: a finding written there would become its output (an engine's
    `logs`). Findings then go to --log, or to stderr only when it is a terminal; `pveoci plan` shows them."""
    from pveoci import logs

    return "quiet" if stand_in and logs.to_console() and not sys.stderr.isatty() else None


def _explainer(show: bool) -> Callable[[Placement], None] | None:
    """--explain: every node's score goes to stderr (stdout keeps what scripts read)."""
    if not show:
        return None
    from pveoci.cli.place import explain

    return lambda placed: explain(placed, sys.stderr)


def _refuse_runc_only(no_pivot: bool, no_new_keyring: bool, preserve_fds: int) -> None:
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
    if c.json:
        render.emit_json(started.to_json())


def run(
    ctx: typer.Context,
    container_id: IdArgument,
    args: flags.ArgsArgument = None,
    bundle: BundleOption = Path("."),
    image: flags.ImageOption = None, entrypoint: flags.EntrypointOption = None, env: flags.EnvOption = None,
    workdir: flags.WorkdirOption = None, user: flags.UserOption = None, authfile: flags.AuthfileOption = None,
    cert_dir: flags.CertDirOption = None, tls_verify: flags.TlsVerifyOption = True, pull: flags.PullOption = "auto",
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once it runs (else stream its output "
                                         "and exit with its status).")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Without -d: keep the container after it "
                                       "exits.")] = False,
    pid_file: PidFileOption = None,
    node: NodeOption = None,
    strict: StrictOption = False,
    transport: TransportOption = "sftp",
    console_socket: ConsoleSocketOption = None,
    no_pivot: Annotated[bool, typer.Option("--no-pivot", help="Refused: LXC always pivots.")] = False,
    no_new_keyring: Annotated[bool, typer.Option("--no-new-keyring", help="Refused.")] = False,
    preserve_fds: Annotated[int, typer.Option("--preserve-fds", help="Refused unless 0.")] = 0,
    exclude_node: ExcludeOption = None,
    show: ExplainOption = False,
    stand_in: StandInOption = True,
    output: OutputOption = None,
) -> None:
    """Create and start a container, from a bundle or an image (--image, as create).

    Without -d, as runc: its stdout and stderr stream here live, Ctrl-C sends it SIGINT, and pveoci
    exits with its status (128+N when signal N ended it); the container is deleted afterwards
    unless --keep. With -d, returns once it runs, leaving a stand-in as create does.

    Examples:

    \b
      pveoci run -b ./job job42               # the job's output here; exit status the job's
      pveoci run -d -b ./hello hello
      pveoci run -d --pid-file hello.pid -b ./hello hello
      pveoci run --image registry.example:5000/tools:1 t1 -- ls -l /   # an image's tool, once
    """
    _refuse_runc_only(no_pivot, no_new_keyring, preserve_fds)
    from pveoci.cli.display import display

    _refuse_in_foreground(detach, pid_file, console_socket)
    wanted = flags.request(image, args=args, entrypoint=entrypoint, env=env, workdir=workdir, user=user,
                           authfile=authfile, cert_dir=cert_dir, tls_verify=tls_verify, pull=pull,
                           terminal=console_socket is not None, bundle_given=bundle != Path("."))
    c = cli(ctx, output)
    rt = c.runtime()
    placing: dict[str, Any] = {"exclude": exclude_node or (), "on_placement": _explainer(show), "image": wanted}
    if not detach:
        raise typer.Exit(_run_attached(rt, container_id, bundle, keep=keep, node=node, strict=strict,
                                       transport=transport, placing=placing))
    io = _stdio(stand_in, console_socket)
    with display() as shown:
        started = rt.run(container_id, bundle, node=node, strict=strict, transport=transport, progress=shown,
                         findings=_findings(stand_in), stand_in=io, **placing)
    if pid_file is not None:
        render.write_pid_file(pid_file, started.pid)
    if c.json:
        render.emit_json(started.to_json())


def _refuse_in_foreground(detach: bool, pid_file: Path | None, console_socket: str | None) -> None:
    if not detach and pid_file is not None:
        _refuse("--pid-file", "with run in the foreground; use run -d --pid-file")
    if not detach and console_socket is not None:
        _refuse("--console-socket", "with run in the foreground (its output comes here); use run -d")


def _run_attached(rt: Runtime, cid: str, bundle: Path, *, keep: bool, node: str | None, strict: bool,
                  transport: str, placing: dict[str, Any]) -> int:
    """The foreground run: Ctrl-C (and TERM, HUP) go to the container's process, which decides."""
    import signal
    import threading

    from pveoci.cli.display import display

    def forward(signum: int, _frame: object) -> None:
        threading.Thread(target=_quietly, args=(rt.kill, cid, signal.Signals(signum).name), daemon=True).start()

    with display() as shown:
        rt.create(cid, bundle, node=node, strict=strict, transport=transport, progress=shown, **placing)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return rt.attach(cid, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer, start=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if not keep:
            rt.delete(cid, force=True)


def _quietly(call: Callable[..., object], *args: object) -> None:
    from pveoci import errors

    with contextlib.suppress(errors.PveociError):
        call(*args)


def state_cmd(
    ctx: typer.Context,
    container_id: IdArgument,
    cached: Annotated[bool, typer.Option("--cached", help="Answer from the local cache, without asking the "
                                         "cluster.")] = False,
    output: OutputOption = None,
) -> None:
    """Print the container's state as OCI state JSON (pveoci's own fields under "pveoci").

    The state is JSON whatever -o says, as runc prints it.

    Examples:

    \b
      pveoci state hello
      pveoci state hello | jq -r .status
    """
    render.emit_json(cli(ctx, output).runtime().state(container_id, cached=cached).to_json())


def list_cmd(
    ctx: typer.Context,
    fmt: FormatOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the ids.")] = False,
    filters: Annotated[Optional[list[str]], typer.Option("--filter", help="node=NODE, status=STATUS or "  # noqa: UP045
                                                         "annotation=KEY[=VALUE] (repeatable: the same key "
                                                         "twice is either, different keys are all).")] = None,
    output: OutputOption = None,
) -> None:
    """List pveoci's containers on the cluster, with the node each runs on.

    Examples:

    \b
      pveoci list
      pveoci list -q --filter node=pve2
      pveoci list --filter status=running --filter annotation=team=blue
      pveoci list -o json | jq -r '.[] | [.id, .pveoci.node] | @tsv'
    """
    from pveoci import errors
    from pveoci.runtime.listing import Filters

    c = cli(ctx, render.output_of(fmt, output))
    try:
        keep = Filters.parse(filters or [])
    except errors.InvalidParameter as exc:
        raise typer.BadParameter(exc.message, param_hint="'--filter'") from None
    states = c.runtime().list(node=keep.nodes, status=keep.statuses, annotations=dict(keep.annotations))
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
    all_processes: Annotated[bool, typer.Option("--all", "-a", help="Send it to every process of the "
                                                "container.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Containers made by pveoci 0.1 only: seconds "
                                         "their TERM (a shutdown) waits before they are stopped.")] = 10,
    output: OutputOption = None,
) -> None:
    """Send a signal to the container's process, and return at once (as runc).

    The process's handler runs (a `trap` in a shell); KILL ends it; the container stops when its
    process ends. A created container's init ends as the signal says (it becomes stopped).

    Examples:

    \b
      pveoci kill hello               # SIGTERM
      pveoci kill hello KILL
      pveoci kill --all hello HUP     # every process of the container
    """
    cli(ctx, output).runtime().kill(container_id, signal, all_processes=all_processes, timeout=timeout)


def delete(
    ctx: typer.Context,
    container_id: IdArgument,
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop a created, running or paused container "
                                        "first; an unknown id is not an error.")] = False,
    output: OutputOption = None,
) -> None:
    """Delete a stopped container and everything create made for it.

    As the runtime-spec says, a container that is not stopped (created included) is refused
    unless --force, which stops it first.

    Examples:

    \b
      pveoci delete hello
      pveoci delete -f hello
    """
    cli(ctx, output).runtime().delete(container_id, force=force)


def pause(ctx: typer.Context, container_id: IdArgument, output: OutputOption = None) -> None:
    """Freeze every process of a running container.

    Examples:

    \b
      pveoci pause hello
    """
    cli(ctx, output).runtime().pause(container_id)


def resume(ctx: typer.Context, container_id: IdArgument, output: OutputOption = None) -> None:
    """Thaw a paused container.

    Examples:

    \b
      pveoci resume hello
    """
    cli(ctx, output).runtime().resume(container_id)


def exec_cmd(
    ctx: typer.Context,
    container_id: IdArgument,
    command: Annotated[Optional[list[str]], typer.Argument(help="The command and its arguments (after --; "  # noqa: UP045
                                                           "with -p, from the file).")] = None,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="A terminal: raw mode, its size and resizes, "
                                      "stdin streamed.")] = False,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", help="KEY=VALUE to add to or replace in "  # noqa: UP045
                                                     "the bundle's environment (repeatable).")] = None,
    cwd: Annotated[Optional[str], typer.Option("--cwd", help="Working directory (default: the "  # noqa: UP045
                                               "bundle's).")] = None,
    user: Annotated[Optional[str], typer.Option("--user", "-u", help="UID[:GID] (default: the "  # noqa: UP045
                                                "bundle's user and groups).")] = None,
    process: Annotated[Optional[Path], typer.Option("--process", "-p", help="A runtime-spec process.json "  # noqa: UP045
                                                    "to run instead.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start it in the background and "
                                         "return.")] = False,
    pid_file: Annotated[Optional[Path], typer.Option("--pid-file", help="With -d: write the stand-in's pid "  # noqa: UP045
                                                     "here (with --no-stand-in: the command's PID as the "
                                                     "container sees it).")] = None,
    console_socket: Annotated[Optional[str], typer.Option("--console-socket", help="With -d: send the master "  # noqa: UP045
                                                          "of the command's terminal to this unix socket "
                                                          "(runc's; implies --tty).")] = None,
    stand_in: StandInOption = True,
    output: OutputOption = None,
) -> None:
    """Run a command in a container as its process runs: the bundle's environment, user and working
    directory, unless -e, -u, --cwd or -p say otherwise; exits with the command's status.

    Examples:

    \b
      pveoci exec hello -- cat /proc/1/environ
      pveoci exec -e DEBUG=1 --cwd /tmp hello -- env
      pveoci exec -t hello -- sh
      pveoci exec -d --pid-file side.pid hello -- sleep 600
      pveoci exec hello sh -c 'echo $HOSTNAME'    (options end at the id: -c is sh's)

    With -d, a stand-in runs it (as create's does for the container's process): a local process
    with this command's streams (or the terminal sent to --console-socket) that exits with the
    command's status; --pid-file gets its pid.
    """
    argv, spec = _exec_command(command, process)
    if pid_file is not None and not detach:
        _refuse("--pid-file", "only with --detach (a command in the foreground has ended when exec returns)")
    if console_socket is not None and not (detach and stand_in):
        _refuse("--console-socket", "only with --detach and a stand-in")
    rt = cli(ctx, output).runtime()
    if detach:
        pid = rt.exec_stand_in(container_id, argv, tty=tty or bool(spec and spec.terminal),
                               console_socket=console_socket, env=env, cwd=cwd, user=user,
                               process=spec) if stand_in else None
        pid = pid or rt.exec_detached(container_id, argv, env=env, cwd=cwd, user=user, process=spec)
        if pid_file is not None:
            render.write_pid_file(pid_file, pid)
        return
    stdin = None if sys.stdin.isatty() and not tty else sys.stdin.buffer
    code = rt.exec(container_id, argv, tty=tty, stdin=stdin, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer,
                   env=env, cwd=cwd, user=user, process=spec)
    raise typer.Exit(code)


def _exec_command(command: list[str] | None, process: Path | None) -> tuple[list[str], ProcessSpec | None]:
    if command and command[0] == "--":  # options end at the container id (as runc's): `--` is optional
        command = command[1:]
    if process is None:
        if not command:
            raise typer.BadParameter("a command is needed (or --process FILE)", param_hint="'COMMAND'")
        return list(command), None
    from pveoci.lxc.mapping import exec_process
    from pveoci.oci import jsonfile

    # A pipe too (runc's `exec -p /dev/stdin`, or `<(jq ...)`); never a device, never without a size limit.
    data = jsonfile.decode(jsonfile.read(process, pipes=True), process)
    spec = exec_process(data, where=str(process))
    return list(command or spec.args), spec


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


def logs(
    ctx: typer.Context,
    container_id: IdArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Go on until the process ends, then exit with "
                                         "its status.")] = False,
    output: OutputOption = None,
) -> None:
    """Print what the container's process wrote to stdout and stderr (each to its own), running or stopped.

    Examples:

    \b
      pveoci logs hello
      pveoci logs -f job42 ; echo "job42 exited $?"
    """
    status = cli(ctx, output).runtime().logs(container_id, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer,
                                     follow=follow)
    if follow and status is not None:
        raise typer.Exit(status)


def gc(
    ctx: typer.Context,
    images_unused_for: Annotated[int, typer.Option("--images-unused-for", metavar="DAYS", help="Forget the "
                                                   "images of this machine's store no create used for this "
                                                   "many days (0: every one).")] = 30,
    output: OutputOption = None,
) -> None:
    """Finish what interrupted commands left: roll back half-made creates, drop stale cache entries (and the
    packs of rootfs paths that are gone: an engine's removed containers); forget the image store's images
    no create used for 30 days (--images-unused-for), with their layers.

    Examples:

    \b
      pveoci gc
      pveoci gc --images-unused-for 0 -o json     # empty the image store
    """
    c = cli(ctx, output)
    report = c.runtime().gc(images_unused_for=images_unused_for * 86400.0)
    if c.json:
        render.emit_json(report.to_json())
        return
    if report.rolled_back:
        typer.echo("rolled back unfinished creates: " + ", ".join(report.rolled_back))
    if report.images or report.image_bytes:
        typer.echo(f"image store: {len(report.images)} image(s) forgotten, {render.size(report.image_bytes)} freed")
    if not (report.rolled_back or report.images or report.image_bytes):
        typer.echo("nothing to clean up")


CACHE_HELP = """The local cache of containers: a mirror of the cluster, which stays the source of truth.

Examples:

\b
  pveoci cache sync                         # adopt marked containers, drop vanished ones
  pveoci --root /srv/pveoci cache sync -o json
"""

cache_app = typer.Typer(help=CACHE_HELP, no_args_is_help=True)


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
