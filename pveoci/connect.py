"""The front door: settings -> backend -> cache -> Runtime, in one place for scripts and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pveoci import errors
from pveoci.backends.base import Backend, Facts
from pveoci.runtime import Runtime
from pveoci.settings import Settings, load


def connect(profile: str | None = None, *, config: Path | str | None = None, root: Path | str | None = None,
            settings: Settings | None = None, backend: Backend | None = None, **overrides: Any) -> Runtime:
    """A Runtime for a cluster: the profile from config.toml (or PVEOCI_PROFILE, then default_profile).

    `config` names another settings file, `root` the directory of the local cache (default: the
    platform's state directory). Keyword overrides win over the profile and the environment, e.g.
    `connect("lab", node="pve2", vmid_range="9000-9099")`; an override of None removes a setting.
    `settings` (from pveoci.settings.load) and `backend` replace what would be built from them.

    Raises ConfigError for missing or unsafe settings (no host, a secret file others can read);
    nothing is asked of the cluster until a method needs it.

    Example:

        >>> import pveoci
        >>> rt = pveoci.connect("lab")
        >>> for c in rt.list():
        ...     print(c.id, c.status, c.node)
    """
    from pveoci.cache import Cache, ClusterFacts, default_root
    from pveoci.runtime.context import facts_scope

    settings = settings or load(profile=profile, config_path=Path(config) if config else None, overrides=overrides)
    cache = Cache(Path(root) if root else default_root())
    if backend is None:
        backend = backend_for(settings, ClusterFacts(cache, facts_scope(settings)))
    return Runtime(backend, cache, settings)


def backend_for(settings: Settings, facts: Facts | None = None) -> Backend:
    """The backend the profile names (`backend = api`; pct and auto are not there yet); `facts`: where it may
    keep what rarely changes between commands (the local cache)."""
    name = settings.profile.backend
    if name != "api":
        raise errors.Unsupported(f"backend = {name}: the pct/pvesh fallback is not available yet; use backend = api")
    from pveoci.backends.api import ApiBackend
    from pveoci.pve.client import PveClient

    return ApiBackend(PveClient.from_settings(settings), settings, facts)
