"""Run pveoci's runtime in a separate process, so a test can kill it mid-way or run many at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.testbed import Testbed

PRELUDE = """
import os, signal, sys, threading
from pathlib import Path
import pveoci

def runtime(root, **overrides):
    return pveoci.connect(config=os.environ["PVEOCI_CONFIG"], root=root, **overrides)

def die():
    os.kill(os.getpid(), signal.SIGKILL)
"""


def run_script(bed: Testbed, body: str, *args: str, timeout: float = 180,
               backend: str = "api") -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, *args], env=bed.env(PVEOCI_BACKEND=backend),
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=Path(__file__).resolve().parents[2])
