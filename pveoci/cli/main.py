"""The `pveoci` entry point: global options, the command table, and errors as one line + exit code."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from pveoci import __version__
from pveoci.cli import config as config_cmd
from pveoci.cli import doctor as doctor_cmd
from pveoci.cli import lifecycle
from pveoci.cli import nodes as nodes_cmd
from pveoci.cli import plan as plan_cmd
from pveoci.cli import spec as spec_cmd
from pveoci.cli import template as template_cmd
from pveoci.cli.state import Output, State

HELP = """Run OCI runtime bundles as LXC containers on a remote Proxmox VE cluster.

Global options go before the command, as with runc.

Examples:

\b
  pveoci config init --host pve1.example.com   # write a commented profile
  pveoci doctor                                # check API, auth, privileges, nodes, SSH
  pveoci run -d -b ./hello hello               # pack, upload, create and start a bundle
  pveoci exec hello -- cat /proc/1/environ     # run a command in it (over SSH)
  pveoci state hello                           # OCI state JSON
  pveoci -p lab list -f json                   # another profile, JSON for scripts
"""

app = typer.Typer(
    name="pveoci", help=HELP, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# runc's commands first, then pveoci's own; `pveoci --help` lists them in this order.
for name, command in (("spec", spec_cmd.spec), ("create", lifecycle.create), ("start", lifecycle.start),
                      ("run", lifecycle.run), ("state", lifecycle.state_cmd), ("list", lifecycle.list_cmd),
                      ("kill", lifecycle.kill), ("delete", lifecycle.delete), ("exec", lifecycle.exec_cmd),
                      ("ps", lifecycle.ps), ("pause", lifecycle.pause), ("resume", lifecycle.resume),
                      ("plan", plan_cmd.plan), ("doctor", doctor_cmd.doctor), ("nodes", nodes_cmd.nodes),
                      ("gc", lifecycle.gc)):
    app.command(name)(command)
app.add_typer(template_cmd.app, name="template")
app.add_typer(config_cmd.app, name="config")
app.add_typer(lifecycle.cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pveoci version {__version__}")
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
    output: Annotated[Output, typer.Option("--output", "-o", help="table for people, json for "
                                            "scripts.")] = Output.table,
    debug: Annotated[bool, typer.Option("--debug", help="Log requests and show error details.")] = False,
    log: Annotated[Path | None, typer.Option("--log", help="Also write the log to this file.")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json (runc's "
                                            "format).")] = "text",
    root: Annotated[Path | None, typer.Option("--root", help="Where the local cache lives (default: the "
                                               "platform state dir's pveoci/).")] = None,
    systemd_cgroup: Annotated[bool, typer.Option("--systemd-cgroup", hidden=True)] = False,
    rootless: Annotated[str | None, typer.Option("--rootless", hidden=True)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from pveoci import logs

    if log_format not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    overrides = {"host": host, "port": port, "token_id": token_id, "user": user,
                 "fingerprint": fingerprint, "ca_file": ca_file}
    ctx.obj = State(profile=profile, config=config, output=output, debug=debug, root=root,
                    overrides={k: v for k, v in overrides.items() if v is not None})
    logs.configure(debug=debug, log_file=log, log_format=log_format)


def _fail(message: str, code: int) -> None:
    from pveoci.logs import scrub

    line = scrub(" ".join(message.split()))
    logging.getLogger("pveoci").error("%s", line, extra={"final": True})
    sys.stderr.write(f"pveoci: error: {line}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; never lets a traceback reach the user unless --debug asks for it."""
    from pveoci import errors

    args = sys.argv[1:] if argv is None else argv
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
        message = exc.format_message().rstrip(".")
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
