"""A claim within this machine (a lock file), for storages pveoci cannot reach over SSH (API uploads)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

from pveoci.models import Destination

POLL = 0.2


def claims_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("pveoci") / "claims"


class LocalClaim:
    """Claim held by an exclusive flock; the holder writes the template name into the file when done."""

    def __init__(self, dest: Destination, key: str) -> None:
        folder = claims_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tag = hashlib.sha256(f"{dest.node}:{dest.storage}:{key}".encode()).hexdigest()[:32]
        self._fd = os.open(folder / f"{tag}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.ours = self.take_over()

    def _try(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def result(self) -> str | None:
        text = os.pread(self._fd, 4096, 0).decode(errors="replace").strip()
        return text or None

    def wait(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._try():  # the holder let go: its result is in the file
                result = self.result()
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                return result
            time.sleep(POLL)
        return None

    def take_over(self) -> bool:
        self.ours = self._try()
        if self.ours:
            os.ftruncate(self._fd, 0)  # a new holder: no result yet
        return self.ours

    def heartbeat(self) -> None:
        return None

    def release(self, name: str | None) -> None:
        try:
            if self.ours:
                os.pwrite(self._fd, (name or "").encode(), 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
