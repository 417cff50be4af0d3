"""The runtime over the in-memory backend, for any test: a cluster in memory (`memory`), Runtimes on it, each with a
cache of its own (`make_runtime`, `rt`), and the smallest bundle that maps, packs and creates (`tiny_bundle`).
Registered for the whole suite by tests/conftest.py (pytest_plugins)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pveoci.backends.memory import MemoryBackend
from pveoci.cache import Cache
from pveoci.runtime import Runtime
from pveoci.settings import Profile, Settings

MakeRuntime = Callable[..., Runtime]


def tiny_bundle(path: Path, args: list[str] | None = None, **process: object) -> Path:
    """A bundle whose rootfs holds one executable file: enough to map, pack and create."""
    rootfs = path / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    program = rootfs / "bin" / "app"
    program.write_bytes(b"\x7fELF not really\n")
    program.chmod(0o755)
    spec = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
            "process": {"args": args or ["/bin/app"], "cwd": "/", "env": ["PATH=/bin"], **process}}
    (path / "config.json").write_text(json.dumps(spec))
    return path


THREE = ("pve1", "pve2", "pve3")


@pytest.fixture
def memory(request: pytest.FixtureRequest) -> MemoryBackend:
    """The in-memory cluster: two nodes, or the module's NODES (placement, drains and moves use THREE)."""
    return MemoryBackend(nodes=getattr(request.module, "NODES", ("pve1", "pve2")))


@pytest.fixture
def make_runtime(tmp_path: Path, memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeRuntime]:
    """Runtimes on the in-memory cluster, on the profile's node pve1; `root`: another workstation's cache. What
    they pack goes to the test's own cache directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    made: list[Runtime] = []

    def make(backend: MemoryBackend | None = None, *, profile: str = "mem", root: Path | None = None,
             **settings: object) -> Runtime:
        prof = Profile(name=profile, **{"node": "pve1", **settings})  # type: ignore[arg-type]
        rt = Runtime(backend or memory, Cache(root or tmp_path / "cache"),
                     Settings(profile=prof, config_path=tmp_path / "none.toml"))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime()
