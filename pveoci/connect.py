"""The front door: settings -> backend -> cache -> Runtime, in one place for scripts and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pveoci.backends.base import Backend, Facts
from pveoci.runtime import FindingsMode, Runtime
from pveoci.settings import Settings, load

if TYPE_CHECKING:
    from pveoci.backends.pct import PctBackend


def connect(profile: str | None = None, *, config: Path | str | None = None, root: Path | str | None = None,
            settings: Settings | None = None, backend: Backend | str | None = None, findings: FindingsMode = "log",
            **overrides: Any) -> Runtime:
    """A Runtime for a cluster: the profile from config.toml (or PVEOCI_PROFILE, then default_profile).

    `config` names another settings file, `root` the directory of the local cache (default: the
    platform's state directory). Keyword overrides win over the profile and the environment, e.g.
    `connect("lab", node="pve2", vmid_range="9000-9099")`; an override of None removes a setting.
    `backend` is the profile's setting when a name ("api", "pct", "auto"), or the Backend to use; `settings`
    (from pveoci.settings.load) and a Backend replace what would be built from them. `findings="quiet"` keeps
    creates from logging what Proxmox cannot honour (Runtime.findings; each create may say otherwise).

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

    if isinstance(backend, str):
        overrides["backend"], backend = backend, None
    settings = settings or load(profile=profile, config_path=Path(config) if config else None, overrides=overrides)
    # The backend first: settings it refuses (no host) leave no cache behind; it reads facts only once used.
    late = _LateFacts()
    if backend is None:
        backend = backend_for(settings, late)
    cache = Cache(Path(root) if root else default_root())
    late.facts = ClusterFacts(cache, facts_scope(settings))
    return Runtime(backend, cache, settings, findings=findings)


class _LateFacts:
    """The cache's facts for a backend made before the cache (backends.base.Facts)."""

    facts: Facts | None = None

    def _bound(self) -> Facts:
        if self.facts is None:
            raise RuntimeError("a backend asked for facts while it was being made")
        return self.facts

    def recall(self, key: str, max_age: float) -> Any | None:
        return self._bound().recall(key, max_age)

    def remember(self, key: str, value: Any) -> None:
        self._bound().remember(key, value)

    def forget(self, key: str) -> None:
        self._bound().forget(key)


def backend_for(settings: Settings, facts: Facts | None = None) -> Backend:
    """The backend the profile names: `api` (the Proxmox API), `pct` (pct and pvesh on the nodes, locally or over
    SSH) or `auto` (the API, and pct over SSH when the API cannot be reached). `facts`: where the API backend may
    keep what rarely changes between commands (the local cache)."""
    name = settings.profile.backend
    if name == "api":
        return _api(settings, facts)
    if name == "pct":
        return _pct(settings)
    from pveoci.backends.auto import AutoBackend

    return AutoBackend(lambda: _api(settings, facts), lambda: _pct(settings))


def _api(settings: Settings, facts: Facts | None) -> Backend:
    from pveoci.backends.api import ApiBackend
    from pveoci.pve.client import PveClient

    return ApiBackend(PveClient.from_settings(settings), settings, facts)


def _pct(settings: Settings) -> PctBackend:
    from pveoci.backends.pct import PctBackend

    return PctBackend(settings)
