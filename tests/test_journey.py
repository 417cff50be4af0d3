"""Acceptance, end to end on the bed with real LXC over the API: a new user's journey, and a second run that uploads
nothing. (pct with real LXC: tests/backends/test_pct_on_bed.py; what each backend does: tests/contract.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oci import state_schema
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def test_run_exec_state_kill_delete(lxc_bed: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    def pveoci(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=lxc_bed.env(), capture_output=True, text=True,
                              check=False, timeout=180)

    run = pveoci("run", "-d", "hello", "-b", str(busybox_bundle))
    assert run.returncode == 0, run.stderr
    env = json.loads((busybox_bundle / "config.json").read_text())["process"]["env"]
    # The process (PID 1's child: pveoci's init is PID 1) has exactly the bundle's environment.
    environ = pveoci("exec", "hello", "--", "sh", "-c", "cat /proc/$(cat /.pveoci/run/pid)/environ")
    assert environ.returncode == 0, environ.stderr
    assert environ.stdout == "\0".join(env) + "\0"  # nothing LXC or the init added
    assert pveoci("exec", "hello", "--", "env").stdout.splitlines() == env  # exec runs as the process runs
    assert pveoci("exec", "hello", "--", "sh", "-c", "exit 7").returncode == 7
    pids = json.loads(pveoci("ps", "-f", "json", "hello").stdout)
    assert 1 in pids
    assert "PID" in pveoci("ps", "hello").stdout
    state = json.loads(pveoci("state", "hello").stdout)
    state_schema().validate(state)
    assert state["status"] == "running"
    assert Path(f"/proc/{state['pid']}").exists()  # the bed's nodes are this machine: a real process
    log = lxc_bed.console_log(state["pveoci"]["node"], state["pveoci"]["vmid"])
    assert "hello from pveoci" in log.read_text()
    kill = pveoci("kill", "hello", "TERM")
    assert kill.returncode == 0, kill.stderr
    import time

    deadline = time.monotonic() + 30  # kill returns at once (runc); the process ends, then its container
    while json.loads(pveoci("state", "hello").stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not Path(f"/proc/{state['pid']}").exists()
    assert pveoci("delete", "hello").returncode == 0
    assert pveoci("state", "hello").returncode == 8
    assert json.loads(pveoci("list", "-f", "json").stdout) == []

    # The same bundle again: its template is on the node already, nothing is uploaded.
    uploads_before = [c for c in lxc_bed.sshd(state["pveoci"]["node"]).commands() if c.startswith("mv -f")]
    again = pveoci("run", "-d", "hello", "-b", str(busybox_bundle), "--node", state["pveoci"]["node"])
    assert again.returncode == 0, again.stderr
    uploads_after = [c for c in lxc_bed.sshd(state["pveoci"]["node"]).commands() if c.startswith("mv -f")]
    assert uploads_after == uploads_before
    assert pveoci("delete", "-f", "hello").returncode == 0


def test_pause_resume_and_other_signals_reach_the_real_container(lxc_bed: Testbed, busybox_bundle: Path,
                                                                 tmp_path: Path) -> None:
    config = json.loads((busybox_bundle / "config.json").read_text())
    # A process that reports the signals it gets, and stays PID 1.
    config["process"]["args"] = ["sh", "-c", "trap 'echo got HUP >> /tmp/signals' HUP; "
                                 "while true; do sleep 1; done"]
    (busybox_bundle / "config.json").write_text(json.dumps(config))

    def pveoci(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=lxc_bed.env(), capture_output=True, text=True,
                              check=False, timeout=180)

    assert pveoci("run", "-d", "-b", str(busybox_bundle), "sig").returncode == 0
    pid = json.loads(pveoci("state", "sig").stdout)["pid"]
    paused = pveoci("pause", "sig")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(pveoci("state", "sig").stdout)["status"] == "paused"
    assert _frozen(pid)
    assert pveoci("resume", "sig").returncode == 0
    assert json.loads(pveoci("state", "sig").stdout)["status"] == "running"
    hup = pveoci("kill", "sig", "HUP")
    assert hup.returncode == 0, hup.stderr
    import time

    for _ in range(50):
        done = pveoci("exec", "sig", "--", "cat", "/tmp/signals")
        if done.stdout == "got HUP\n":
            break
        time.sleep(0.2)
    assert done.stdout == "got HUP\n"
    assert pveoci("kill", "sig", "KILL").returncode == 0
    assert json.loads(pveoci("state", "sig").stdout)["status"] == "stopped"


def _frozen(pid: int) -> bool:
    """cgroup v1 freezer state of the process's cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            state = Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
            return state.exists() and state.read_text().strip() == "FROZEN"
    return False


def test_hostile_arguments_never_reach_a_shell_unquoted(lxc_bed: Testbed, busybox_bundle: Path,
                                                        tmp_path: Path) -> None:
    canary = tmp_path / "pwned"

    def pveoci(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=lxc_bed.env(), capture_output=True, text=True, check=False, timeout=180)

    assert pveoci("run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "safe").returncode == 0
    hostile = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"' ; touch {canary} '", "\\"]
    result = pveoci("exec", "safe", "--", "echo", *hostile)
    assert result.returncode == 0, result.stderr
    assert result.stdout == " ".join(hostile) + "\n"  # echoed as data, inside the container
    assert not canary.exists()  # and nothing ran on the node
    logged = [c for c in lxc_bed.sshd("pve1").commands() if c.startswith("pct exec")]
    assert logged[-1].startswith("pct exec ")
    assert "'; touch " in logged[-1]  # what reached the node's shell was quoted
    assert pveoci("delete", "-f", "safe").returncode == 0
