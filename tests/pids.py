"""Servers the tests start are stopped by their pid: TERM, a grace period, then KILL."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], grace: float = 5) -> None:
    """Stop a process the tests started (one that ended already is only reaped): TERM, then KILL after `grace`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
