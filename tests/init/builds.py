"""The static programs' reproducible builds, made once per test run, in the background.

Building is the slow part of the build checks (zig compiles musl for each target into an empty cache, then
the init twice and the packer with zstd): a few minutes of CPU. So the builds start as soon as the run has
collected a test that needs them, at a lower priority (`nice`), while the other tests run (most of them wait
on sockets and containers), and the tests that check the builds run last and wait for them.

What is built, with the commands a developer runs (README.md, "Development"):
- `python -m pveoci.init.build --out init-a`, with an empty zig cache (the bytes must not depend on a cache);
- the same into init-b, with the cache the first build filled (two builds, the same bytes);
- `python -m pveoci.template.packer_build --check` (builds the packer afresh and compares it with the committed
  binaries), with that cache too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1800.0     # each command; CI's whole run has 90 minutes


@dataclass
class Builds:
    """The builds of one test run: their folders, and each command's result once it has run."""

    root: Path
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    cache_filled_by_first_build: bool = False
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    @property
    def cache(self) -> Path:
        return self.root / "zig-cache"

    def folder(self, name: str) -> Path:
        return self.root / name

    def start(self) -> Builds:
        self.cache.mkdir(parents=True)
        self._thread = threading.Thread(target=self._run, name="static-builds", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(self.cache), "ZIG_LOCAL_CACHE_DIR": str(self.cache)}
        commands = {
            "init-a": ["-m", "pveoci.init.build", "--out", str(self.folder("init-a"))],
            "init-b": ["-m", "pveoci.init.build", "--out", str(self.folder("init-b"))],
            "packer-check": ["-m", "pveoci.template.packer_build", "--check"],
        }
        try:
            for name, args in commands.items():
                self.results[name] = subprocess.run(["nice", "-n", "10", sys.executable, *args], cwd=ROOT, env=env,
                                                    capture_output=True, text=True, check=False, timeout=TIMEOUT)
                if name == "init-a":
                    self.cache_filled_by_first_build = any(self.cache.iterdir())
        except BaseException as exc:
            self.error = exc

    def wait_quietly(self) -> None:
        """At the end of the run: let a build still going finish (its folder is removed next)."""
        if self._thread is not None:
            self._thread.join(TIMEOUT * 3)

    def wait(self, name: str) -> subprocess.CompletedProcess[str]:
        """The named command's result, once the builds are done."""
        assert self._thread is not None, "the builds were not started"
        self._thread.join(TIMEOUT * 3)
        if self.error is not None:
            raise AssertionError(f"the builds failed to run: {self.error!r}")
        assert not self._thread.is_alive(), "the builds are still running"
        return self.results[name]
