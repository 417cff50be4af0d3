"""The `pveoci` entry point: global options, the command table, and errors as one line + exit code."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core
import typer.main
from typer._completion_classes import completion_init

from pveoci import __version__
from pveoci.cli.invocation import Cli, Output

HELP = """Run OCI runtime bundles as LXC containers on a remote Proxmox VE cluster.

Global options go before the command, as with runc.

Examples:

\b
  pveoci config init --host pve1.example.com   # write a commented profile
  pveoci doctor                                # check API, auth, privileges, nodes, SSH
  pveoci run -d -b ./hello hello               # pack, upload, create and start a bundle
  pveoci run -d --image reg.example/web:2 web  # or an image, pulled here, its layers packed once
  pveoci exec hello -- cat /proc/1/environ     # run a command in it (over SSH)
  pveoci state hello                           # OCI state JSON
  pveoci -p lab list -o json                   # another profile, JSON for scripts

Shell completion: pveoci --install-completion [bash|zsh|fish] (default: the shell you run).
"""

# The commands: name -> where its function (or its Typer of sub-commands) is, in pveoci.cli. runc's commands
# first, then pveoci's own; `pveoci --help` lists them in this order.
COMMANDS = {
    "spec": "spec:spec", "create": "lifecycle:create", "start": "lifecycle:start", "run": "lifecycle:run",
    "state": "lifecycle:state_cmd", "list": "lifecycle:list_cmd", "kill": "lifecycle:kill",
    "delete": "lifecycle:delete", "exec": "lifecycle:exec_cmd", "ps": "lifecycle:ps", "logs": "lifecycle:logs",
    "pause": "lifecycle:pause", "resume": "lifecycle:resume", "update": "update:update", "events": "events:events",
    "features": "features:features", "pull": "images:pull", "images": "images:images", "plan": "plan:plan",
    "place": "place:place",
    "migrate": "moves:migrate", "drain": "moves:drain", "rebalance": "moves:rebalance", "doctor": "doctor:doctor",
    "nodes": "nodes:nodes", "gc": "lifecycle:gc",
    "template": "template:app", "config": "config:app", "cache": "lifecycle:cache_app",
}
# exec: options end at the container id, as runc's and docker's (`exec ID sh -c ...`: -c is sh's).
COMMAND_SETTINGS: dict[str, dict[str, Any]] = {"exec": {"allow_interspersed_args": False}}


def _target(name: str) -> Any:
    module, attribute = COMMANDS[name].split(":")
    return getattr(importlib.import_module(f"pveoci.cli.{module}"), attribute)


def _build(name: str) -> Any:
    """The click command of one entry of COMMANDS, built as app.command()/app.add_typer() would build it."""
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)
    target = _target(name)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name, context_settings=COMMAND_SETTINGS.get(name, {}))(target)
    return typer.main.get_group(holder).commands[name]


class _Commands(MutableMapping[str, Any]):
    """The group's command table, each command built on first use: a command's options are turned into click's
    (every annotation read, every default resolved) only when it runs, not for all of them at every start."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._built)


class _LazyGroup(typer.core.TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands()

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list of `pveoci --help` from the functions' docstrings (as click shortens them), without
        building every command's options."""
        names = list(self.list_commands(ctx))
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            target = _target(name)
            if isinstance(target, typer.Typer):
                short = self.commands[name].get_short_help_str(limit)
            else:
                short = typer.core.TyperCommand(name=name, help=inspect.getdoc(target)).get_short_help_str(limit)
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


# typer's own --show-completion/--install-completion are flags: a shell named after them was not read (the
# detected one won). Ours take the shell as a value, and main() supplies the detected one when none is named.
app = typer.Typer(
    name="pveoci", help=HELP, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None, cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
completion_init()  # the completion classes of bash, zsh, fish and PowerShell, as add_completion would register


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"
    pwsh = "pwsh"


COMPLETE_VAR = "_PVEOCI_COMPLETE"  # what the completion scripts set to ask pveoci for completions
COMPLETION_FLAGS = ("--show-completion", "--install-completion")


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class BackendName(str, Enum):
    api = "api"
    pct = "pct"
    auto = "auto"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pveoci version {__version__}")
        raise typer.Exit()


def _show_completion(ctx: typer.Context, value: Shell | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_shared import get_completion_script

    typer.echo(get_completion_script(prog_name="pveoci", complete_var=COMPLETE_VAR, shell=value.value))
    raise typer.Exit()


def _install_completion(ctx: typer.Context, value: Shell | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_shared import install

    from pveoci import errors

    try:
        shell, path = install(shell=value.value, prog_name="pveoci", complete_var=COMPLETE_VAR)
    except OSError as exc:
        raise errors.PveociError(f"cannot install the {value.value} completion: {exc.strerror or exc}") from None
    typer.echo(f"{shell} completion installed in {path}; it works in shells started from now on")
    raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Profile from config.toml "
                                                 "(default: PVEOCI_PROFILE, then default_profile).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file (default: PVEOCI_CONFIG, "
                                                 "then the platform config dir's pveoci/config.toml).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="API host, overriding the profile.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (default 8006).")] = None,
    token_id: Annotated[str | None, typer.Option("--token-id", help="API token id user@realm!name; "
                                                  "its secret comes from PVEOCI_TOKEN_SECRET or a file.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="User for ticket login (user@realm).")] = None,
    fingerprint: Annotated[str | None, typer.Option("--fingerprint", help="Pin the API certificate's "
                                                     "SHA-256 fingerprint.")] = None,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="CA certificate(s) to verify the API "
                                                  "with.")] = None,
    backend: Annotated[BackendName | None, typer.Option("--backend", help="How to reach the cluster: api, pct (pct and "
                                                "pvesh on the nodes, as root) or auto (the API; pct over SSH when "
                                                "the API cannot be reached).")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table for people, json for "
                                            "scripts.")] = Output.table,
    debug: Annotated[bool, typer.Option("--debug", help="Log requests and show error details.")] = False,
    log: Annotated[Path | None, typer.Option("--log", help="Write the log to this file, not stderr (runc's).")] = None,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="text or json (runc's "
                                                  "format).")] = LogFormat.text,
    root: Annotated[Path | None, typer.Option("--root", help="Where the local cache lives (default: the "
                                               "platform state dir's pveoci/).")] = None,
    systemd_cgroup: Annotated[bool, typer.Option("--systemd-cgroup", help="Accepted (engines pass it) and "
                                                 "changes nothing: Proxmox VE manages the containers' cgroups on "
                                                 "their nodes; the log says so.")] = False,
    rootless: Annotated[str | None, typer.Option("--rootless", help="runc's flag: false and auto are "
                                                 "accepted (nothing runs rootless here); true is refused.")] = None,
    install_completion: Annotated[Optional[Shell], typer.Option(  # noqa: UP045 - read at run time on 3.10
        "--install-completion", metavar="[SHELL]", callback=_install_completion, is_eager=True,
        help="Install completion for SHELL (bash, zsh, fish, powershell, pwsh; default: the shell you "
             "run).")] = None,
    show_completion: Annotated[Optional[Shell], typer.Option(  # noqa: UP045
        "--show-completion", metavar="[SHELL]", callback=_show_completion, is_eager=True,
        help="Print the completion script for SHELL (default: the shell you run).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from pveoci import errors, logs

    if log is not None:
        try:
            log.open("a").close()
        except OSError as exc:
            raise typer.BadParameter(f"cannot write {log}: {exc.strerror}", param_hint="'--log'") from None
    logs.configure(debug=debug, log_file=log, log_format=log_format.value)
    if systemd_cgroup:  # podman and containerd pass it whenever their host uses systemd's cgroups
        logging.getLogger("pveoci.cli").info("--systemd-cgroup: accepted; it changes nothing, Proxmox VE manages "
                                             "the containers' cgroups on their nodes")
    if rootless is not None and rootless not in ("false", "auto"):
        if rootless != "true":
            raise typer.BadParameter(f"{rootless!r} is not one of 'true', 'false', 'auto'", param_hint="'--rootless'")
        raise errors.Unsupported("--rootless true: containers run on Proxmox nodes, as Proxmox runs them")
    overrides = {"host": host, "port": port, "token_id": token_id, "user": user,
                 "fingerprint": fingerprint, "ca_file": ca_file, "backend": backend.value if backend else None}
    ctx.obj = Cli(profile=profile, config=config, output=output, debug=debug, root=root,
                  overrides={k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int) -> None:
    from pveoci.logs import scrub

    line = scrub(" ".join(message.split()))
    logger = logging.getLogger("pveoci")
    if logger.handlers:  # configured (the global options were read): the --log file gets the line too
        logger.error("%s", line, extra={"final": True})
    sys.stderr.write(f"pveoci: error: {line}\n")
    sys.exit(code)


def _with_shell(args: list[str]) -> list[str]:
    """`--show-completion` or `--install-completion` among the global options without a shell after it: the shell
    pveoci runs in (shellingham, else $SHELL). Left as it is when that cannot be told (typer then asks for one)."""
    if not any(a in COMPLETION_FLAGS for a in args):
        return args
    takes_value = {opt for p in typer.main.get_command(app).params if getattr(p, "is_flag", True) is False
                   for opt in p.opts}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i] in COMPLETION_FLAGS and (i + 1 == len(args) or args[i + 1].startswith("-")):
            shell = _current_shell()
            return [*args[: i + 1], shell, *args[i + 1 :]] if shell else args
        i += 2 if args[i] in takes_value else 1
    return args


def _current_shell() -> str | None:
    import os

    import shellingham  # type: ignore[import-untyped,unused-ignore]  # typer's dependency, untyped

    try:
        name = str(shellingham.detect_shell()[0])
    except shellingham.ShellDetectionFailure:
        name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in Shell.__members__ else None


def main(argv: list[str] | None = None) -> None:
    """Run the command line; never lets a traceback reach the user unless --debug asks for it."""
    from pveoci import errors

    args = _with_shell(sys.argv[1:] if argv is None else list(argv))
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="pveoci", standalone_mode=False)
        if code == errors.EXIT_INTERRUPTED:  # typer turns Ctrl-C into this exit code
            _fail("interrupted", errors.EXIT_INTERRUPTED)
        if isinstance(code, int) and code:
            sys.exit(code)
    except errors.PveociError as exc:
        if debug and exc.detail:
            from pveoci.logs import scrub

            sys.stderr.write(scrub(exc.detail.rstrip()) + "\n")
        _fail(exc.message, exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help, as typer does
            exc.show()  # type: ignore[attr-defined]
            sys.exit(errors.EXIT_USAGE)
        message = exc.format_message().rstrip(".").replace("Value error, ", "")
        if exc.exit_code == errors.EXIT_USAGE:
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "pveoci"
            message += f" (see '{where} --help')"
        _fail(message, exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", errors.EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report it; --debug shows the traceback)",
              errors.EXIT_INTERNAL)
