"""Run the local test bed by hand.

  python -m tests.testbed demo            # the Quick start's main job: a new user's journey on the bed
  python -m tests.testbed up [--dir D]    # serve the bed until Ctrl-C; prints the PVEOCI_CONFIG to use
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.testbed import Testbed, parts


def _check_parts() -> None:
    missing = parts.missing_for_ssh()
    if missing:
        sys.exit("the test bed needs: " + ", ".join(missing) + " (run contrib/setup.sh as root)")


def _pveoci(bed: Testbed, *args: str) -> int:
    print(f"\n$ pveoci {' '.join(shlex.quote(a) for a in args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pveoci", *args], env=bed.env(), check=False)
    return proc.returncode


def demo(workdir: Path) -> int:
    """A new user's journey on the local bed: check the profile, look at the nodes, see what a busybox bundle
    becomes, run it (packed and uploaded over SSH), see what its process did, its state and the list, stop
    and delete it; then run it again: the template is on the node already, nothing is uploaded."""
    from tests.testbed.bundle import make_busybox_bundle

    _check_parts()
    missing = parts.missing_for_lxc()
    if missing:
        sys.exit("the demo runs real containers and needs: " + ", ".join(missing) + " (run contrib/setup.sh)")
    script = "echo hello from pveoci > /tmp/hello; date > /tmp/started; while true; do sleep 1; done"
    bundle = make_busybox_bundle(workdir / "bundle", args=["sh", "-c", script],
                                 env=["PATH=/bin:/sbin", "GREETING=hello", "TERM=xterm"])
    root = str(workdir / "cache")
    with Testbed(workdir / "bed", nodes=("pve1", "pve2"), lxc=True) as bed:
        print(f"local test bed up: API {bed.url}, nodes " +
              ", ".join(f"{n} (ssh {a}:{bed.ssh_port})" for n, a in bed.addresses.items()))
        print(f"profile: {bed.config_path}; bundle: {bundle}")
        steps = (["doctor"], ["nodes"], ["plan", "-b", str(bundle)],
                 ["--root", root, "run", "-d", "-b", str(bundle), "hello"],
                 ["--root", root, "exec", "hello", "--", "cat", "/tmp/hello", "/tmp/started"],
                 ["--root", root, "exec", "hello", "--", "env"],
                 ["--root", root, "state", "hello"], ["--root", root, "list"],
                 ["--root", root, "kill", "--timeout", "2", "hello", "TERM"], ["--root", root, "list"],
                 ["--root", root, "delete", "hello"],
                 ["--root", root, "--debug", "run", "-d", "-b", str(bundle), "hello"],
                 ["--root", root, "delete", "-f", "hello"], ["template", "ls"])
        failures = sum(_pveoci(bed, *args) != 0 for args in steps)
    print("\ndemo finished" + (f" with {failures} failing command(s)" if failures else ": all commands passed"))
    return 1 if failures else 0


def up(workdir: Path) -> int:
    _check_parts()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Testbed(workdir, lxc=not parts.missing_for_lxc()) as bed:
        print(f"test bed up (pid {os.getpid()}); in another shell:\n"
              f"  export PVEOCI_CONFIG={bed.config_path}\n  pveoci doctor\nCtrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("demo", "up"))
    parser.add_argument("--dir", type=Path, help="where the bed keeps its files (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="pveoci-bed-"))
    return demo(workdir) if args.command == "demo" else up(workdir)


if __name__ == "__main__":
    sys.exit(main())
