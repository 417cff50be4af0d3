"""`pveoci config show|init`: the effective settings (secrets masked) and a commented example."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pveoci.cli import render
from pveoci.cli.context import OutputOption, cli

app = typer.Typer(help="Show or create the settings.", no_args_is_help=True)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((prefix + key, value))
    return out


@app.command("show")
def show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print the effective settings of the profile, with where each value comes from.

    Secrets are never printed: only whether one is set and where it would come from.

    Examples:

    \b
      pveoci config show
      PVEOCI_HOST=pve2.lab pveoci -p lab config show -o json
    """
    c = cli(ctx, output)
    settings = c.settings()
    profile = settings.profile
    data = profile.model_dump(mode="json")
    secrets = {
        "token_secret": settings.secret_source("token_secret"),
        "password": settings.secret_source("password"),
    }
    if c.json:
        data["token_secret"] = "********" if secrets["token_secret"] else None
        data["password"] = "********" if secrets["password"] else None
        render.emit_json({"config_file": str(settings.config_path), "profile": data})
        return
    rows = []
    for key, value in _flatten(data):
        if key == "name":
            continue
        shown = "" if value is None else (", ".join(map(str, value)) if isinstance(value, list) else str(value))
        rows.append([key, shown, settings.sources.get(key, "default")])
    for key, source in secrets.items():
        if key == "password" and profile.token_id:
            continue
        rows.append([key, "********" if source else "(not set)", source or ""])
    typer.echo(f"profile {profile.name} ({settings.config_path})")
    render.table(["SETTING", "VALUE", "FROM"], rows)


@app.command("init")
def init(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option("--name", help="Name of the profile to write.")] = "default",
    host: Annotated[str, typer.Option("--host", help="API host of the cluster.")] = "pve1.example.com",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented example config.toml (mode 0600) to start from.

    Examples:

    \b
      pveoci config init --name lab --host pve1.lab.example
      pveoci --config ./pveoci.toml config init
    """
    from pveoci import errors, settings

    path: Path = (cli(ctx).config or Path(os.environ.get(settings.CONFIG_ENV) or settings.default_config_path()))
    path = path.expanduser()
    if path.exists() and not force:
        raise errors.ConfigError(f"{path} exists already; use --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(settings.example_config(profile, host))
    except OSError as exc:
        raise errors.ConfigError(f"cannot write {path}: {exc.strerror}") from None
    typer.echo(f"wrote {path}; put the token secret in a file only you can read, then run: pveoci doctor")
