"""What an engine does with a runtime's pid file, for the stand-in's tests: conmon and containerd's shim.

    python -m tests.standin.engine REPORT PIDFILE -- ARGV...

Becomes a subreaper (PR_SET_CHILD_SUBREAPER), runs ARGV (`pveoci create ...`, `pveoci exec -d ...`) with its
own streams, reads the pid ARGV wrote to PIDFILE and waits for that process as conmon does (a pid that is not
its descendant fails at once: ECHILD), then reaps whatever else came to it. REPORT gets one JSON object:
{"runtime": ARGV's exit status, "pid": the pid, "status": its exit status or null, "leftovers": how many
processes that came to it still ran 2 s after (killed then)}. REPORT + ".ready" appears once it waits
(tests act on the stand-in only then).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def main(args: list[str]) -> int:
    report, pid_file, argv = Path(args[0]), Path(args[1]), args[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    runtime = subprocess.run(argv, check=False).returncode
    result: dict[str, object] = {"runtime": runtime, "pid": None, "status": None, "leftovers": 0}
    if runtime == 0:
        pid = int(pid_file.read_text())
        result["pid"] = pid
        Path(f"{report}.ready").write_text("waiting")
        try:
            _, status = os.waitpid(pid, 0)
            result["status"] = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            result["status"] = "not a child"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # orphans the stand-in left end with it (its ssh): reaped
        try:
            other, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if other == 0:
            time.sleep(0.1)
    for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        result["leftovers"] = int(str(result["leftovers"])) + 1
        sys.stderr.write(f"engine: left over: {Path(f'/proc/{child}/cmdline').read_bytes()!r}\n")
        os.kill(int(child), signal.SIGKILL)
    report.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
