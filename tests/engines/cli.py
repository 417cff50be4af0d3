"""What the engines' tests share: an engine's command line (podman, ctr, docker) run with the session's
environment, the launcher through which a daemon runs this checkout's pveoci, and a daemon's stop."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests import pids
from tests.testbed import Testbed

TIMEOUT = 120.0


@dataclass
class EngineCli:
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    def __call__(self, *args: str, input: bytes | None = None,
                 timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(*args), input=input, capture_output=True, env=self.env, timeout=timeout,
                              check=False, stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout.decode()


def launcher(bed: Testbed, root: Path, state: Path | None = None) -> Path:
    """root/pveoci: runs this checkout's pveoci with the bed's profile (its state in `state`, by default
    root/pveoci-state), recording each call in root/calls."""
    path = root / "pveoci"
    path.write_text("#!/bin/sh\n"
                    f"echo \"$*\" >> '{root / 'calls'}'\n"       # which calls reached pveoci
                    f"export PVEOCI_CONFIG='{bed.config_path}' XDG_STATE_HOME='{state or root / 'pveoci-state'}'\n"
                    f"exec '{sys.executable}' -m pveoci \"$@\"\n")
    path.chmod(0o755)
    return path


def calls(root: Path) -> list[str]:
    """The runtime calls that reached pveoci through the launcher, in order."""
    path = root / "calls"
    return path.read_text().splitlines() if path.exists() else []


def stop(daemon: subprocess.Popen[bytes], grace: float = 30) -> None:
    """A daemon the tests started, stopped by its pid: TERM, then KILL after `grace` seconds."""
    pids.stop(daemon, grace)


def wait_up(engine: EngineCli, daemon: subprocess.Popen[bytes], log: Path, seconds: float,
            close: Callable[[], None]) -> None:
    """Until the daemon answers `version`; one that exits or takes longer than `seconds` is closed and reported
    with the end of its log."""
    deadline = time.monotonic() + seconds
    while engine("version").returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            close()
            raise RuntimeError(f"{daemon.args[0]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
