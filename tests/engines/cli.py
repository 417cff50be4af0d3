"""What the engines' tests share: an engine's command line (podman, ctr) run with the session's environment."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

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
