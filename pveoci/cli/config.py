"""`pveoci config show|init`: the effective settings (secrets masked) and a commented example."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

HELP = """Show or create the settings: profiles in config.toml, overridden by PVEOCI_* and flags.

Examples:

\b
  pveoci config init --name lab --host pve1.lab.example   # a new file, or one more profile
  pveoci config show                        # the effective settings and where each comes from
  pveoci -p lab config show -o json
"""

app = typer.Typer(help=HELP, no_args_is_help=True)


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
    force: Annotated[bool, typer.Option("--force", help="Replace a profile of the same name.")] = False,
    output: OutputOption = None,
) -> None:
    """Write a commented profile into config.toml: a new file (mode 0600), or one more profile added
    to an existing file, whose other profiles and comments are kept as they are.

    A profile of the same name is refused unless --force, which replaces its tables. The profile
    names its token secret file in the platform config dir (honouring XDG_CONFIG_HOME).

    Examples:

    \b
      pveoci config init --name lab --host pve1.lab.example
      pveoci config init --name prod --host pve1.prod.example   # a second profile, same file
      pveoci --config ./pveoci.toml config init
    """
    from pveoci import errors, settings

    c = cli(ctx, output)
    if not settings.PROFILE_NAME.fullmatch(profile):
        raise typer.BadParameter(f"{profile!r}: use letters, digits, '_' and '-'", param_hint="'--name'")
    if not _is_host(host):
        raise typer.BadParameter(f"{host!r} is not a host name or an IP address", param_hint="'--host'")
    path: Path = (c.config or Path(os.environ.get(settings.CONFIG_ENV) or settings.default_config_path()))
    path = path.expanduser()
    secrets = settings.secrets_dir()
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if old is None or not old.strip():
        text, action = settings.example_config(profile, host, secrets), "wrote"
    else:
        text, action = _add_profile(path, old, profile, host, secrets, force=force)
    _write(path, text)
    token_file = f"{secrets}/{profile}.token"
    if c.json:
        render.emit_json({"config_file": str(path), "profile": profile, "action": action,
                          "token_secret_file": token_file})
        return
    said = {"wrote": f"wrote {path}", "added": f"added profile {profile} to {path}",
            "replaced": f"replaced profile {profile} in {path}"}[action]
    use = "" if _default_profile(text) == profile else f" -p {profile}"
    typer.echo(f"{said}; put its token secret in {token_file} (a file only you can read: "
               f"install -m 600 /dev/null {token_file}), then run: pveoci{use} doctor")


def _is_host(host: str) -> bool:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        return len(host) <= 253 and re.fullmatch(rf"{label}(?:\.{label})*\.?", host) is not None


def _default_profile(text: str) -> str:
    return str(tomllib.loads(text).get("default_profile") or "default")


def _add_profile(path: Path, old: str, name: str, host: str, secrets: str, *, force: bool) -> tuple[str, str]:
    """The file's text with the profile added (or, with force, replaced); every other line kept as it is."""
    from pveoci import errors, settings

    try:
        data = tomllib.loads(old)
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path} is not valid TOML ({exc}); fix it first") from None
    profiles = data.get("profiles", {})
    action = "added"
    if isinstance(profiles, dict) and name in profiles:
        if not force:
            raise errors.ConfigError(f"{path} has a profile '{name}' already; use --force to replace it")
        old, action = _without_profile(old, name), "replaced"
    text = old.rstrip("\n") + "\n\n"
    left = tomllib.loads(old)
    if "default_profile" not in left and not left.get("profiles"):
        text += f"default_profile = {settings.toml_string(name)}\n\n"
    text += settings.example_profile(name, host, secrets)
    try:
        made = tomllib.loads(text).get("profiles", {}).get(name)
    except tomllib.TOMLDecodeError as exc:
        made = exc
    if not isinstance(made, dict) or made.get("host") != host:
        raise errors.ConfigError(f"cannot {'replace' if action == 'replaced' else 'add'} profile '{name}' in "
                                 f"{path}: its profiles are not written as [profiles.NAME] tables; edit it by hand")
    return text, action


def _without_profile(text: str, name: str) -> str:
    """The text without the [profiles.NAME] table and its sub-tables (up to the next other table; comment lines
    right above that table are its own, and stay)."""
    import re

    lines = text.splitlines(keepends=True)
    header = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    starts = [(i, "".join(m.group(1).replace('"', "").replace("'", "").split()))
              for i, line in enumerate(lines) if (m := header.match(line))]
    ours = f"profiles.{name}"
    drop: set[int] = set()
    for n, (i, key) in enumerate(starts):
        if key != ours and not key.startswith(ours + "."):
            continue
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        if n + 1 < len(starts) and not starts[n + 1][1].startswith(ours + "."):
            while end - 1 > i and lines[end - 1].lstrip().startswith("#"):
                end -= 1
        drop.update(range(i, end))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def _write(path: Path, text: str) -> None:
    """Atomically: a new file is 0600, an existing one keeps its mode; a link is followed, not replaced."""
    from pveoci import errors

    target = path.resolve() if path.is_symlink() else path
    try:
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise errors.ConfigError(f"cannot write {path}: {exc.strerror}") from None
