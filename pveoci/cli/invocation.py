"""What the global options decided, shared by every command through the typer context: one Runtime, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from pveoci.runtime import Runtime
    from pveoci.settings import Settings


class Output(str, Enum):
    table = "table"
    json = "json"


@dataclass
class Cli:
    profile: str | None = None
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    output: Output = Output.table
    debug: bool = False
    root: Path | None = None
    _settings: Settings | None = None
    _runtime: Runtime | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from pveoci import settings

            # A file named on the command line must be there (a typo would silently fall back to the
            # environment alone); the default file may be missing (`config show` of a fresh install).
            if self.config is not None and not self.config.expanduser().exists():
                from pveoci.errors import ConfigError

                raise ConfigError(f"--config {self.config}: no such file (pveoci --config "
                                  f"{self.config} config init writes one)")
            self._settings = settings.load(profile=self.profile, config_path=self.config, overrides=self.overrides)
        return self._settings

    def runtime(self) -> Runtime:
        """The one Runtime of this command (pveoci.connect: the composition root)."""
        if self._runtime is None:
            self._runtime = open_runtime(self.settings(), self.root)
        return self._runtime

    @property
    def json(self) -> bool:
        return self.output is Output.json


def open_runtime(settings: Settings, root: Path | None) -> Runtime:
    """Connect a command to the cluster: pveoci.connect, the composition root. Looked up when a command first
    needs it, so that the in-process test harness (tests/harness.py) can hand the commands another backend and
    close what they opened."""
    from pveoci.connect import connect

    return connect(settings=settings, root=root)


IdArgument = Annotated[str, typer.Argument(help="The container id (runc rules: letters, digits, _ + . -).",
                                           show_default=False)]
OutputOption = Annotated[
    Optional[Output],  # noqa: UP045 - typer reads this annotation at run time, also on Python 3.10
    typer.Option("--output", "-o", help="table for people, json for scripts (default: the global -o)."),
]


def cli(ctx: typer.Context, output: Output | None = None) -> Cli:
    """The global state; a command's own -o/--output wins over the global one."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Cli):
        obj = Cli()
        ctx.find_root().obj = obj
    if output is not None:
        obj.output = output
    return obj
