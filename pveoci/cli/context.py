"""What the global options decided, shared by every command through the typer context."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from pveoci.pve.client import PveClient
    from pveoci.runtime import Runtime
    from pveoci.settings import Settings


class Output(str, Enum):
    table = "table"
    json = "json"


@dataclass
class State:
    profile: str | None = None
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    output: Output = Output.table
    debug: bool = False
    root: Path | None = None
    _settings: Settings | None = None
    _client: PveClient | None = None
    _runtime: Runtime | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from pveoci import settings

            self._settings = settings.load(profile=self.profile, config_path=self.config,
                                           overrides=self.overrides)
        return self._settings

    def client(self) -> PveClient:
        if self._client is None:
            from pveoci.pve.client import PveClient

            self._client = PveClient.from_settings(self.settings())
        return self._client

    def runtime(self) -> Runtime:
        """The lifecycle use cases over the profile's backend, with the cache in --root (or the state dir)."""
        if self._runtime is None:
            from pveoci import cluster
            from pveoci.backends.api import ApiBackend
            from pveoci.cache import Cache, default_root
            from pveoci.runtime import Runtime
            from pveoci.ssh import SshConnector

            settings = self.settings()
            client = self.client()

            backend = ApiBackend(client, SshConnector(settings.profile.ssh, lambda: cluster.quorum(client).addresses))
            cache = Cache(self.root or default_root())
            self._runtime = Runtime(backend, cache, settings=settings, client=client)
        return self._runtime


OutputOption = Annotated[
    Optional[Output],  # noqa: UP045 - typer reads this annotation at run time, also on Python 3.10
    typer.Option("--output", "-o", help="table for people, json for scripts (default: the global -o)."),
]


def state(ctx: typer.Context, output: Output | None = None) -> State:
    """The global state; a command's own -o/--output wins over the global one."""
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    if output is not None:
        obj.output = output
    return obj
