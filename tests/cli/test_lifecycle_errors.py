"""Every lifecycle error path: one line on stderr, its documented exit code, and nothing half-made."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def oci(lxc_bed: Testbed, tmp_path: Path, backend_name: str):  # type: ignore[no-untyped-def]
    """The command line over each backend (a test about one backend's own path narrows backend_name)."""
    cluster = lxc_bed

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=cluster.env(PVEOCI_BACKEND=backend_name, **(env or {})), capture_output=True,
                              text=True, check=False, timeout=180)
        assert "Traceback" not in proc.stderr
        return proc.returncode, proc.stdout, proc.stderr
    return run


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("pveoci: error: ")
    assert all(line.startswith("pveoci: warning: ") for line in lines[:-1])
    return lines[-1][len("pveoci: error: "):]


def test_create_from_a_missing_bundle(oci, tmp_path: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    code, _, err = oci("create", "-b", str(tmp_path / "nowhere"), "x")
    assert code == 18
    assert error_line(err) == f"bundle {tmp_path / 'nowhere'} does not exist"
    assert cluster.pve.cts == []


def test_strict_create_refuses_before_any_change(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    code, _, err = oci("create", "--strict", "-b", str(busybox_bundle), "x")
    assert code == 19
    assert "process.capabilities" in error_line(err)
    assert [r for r in cluster.pve.requests if r[0] != "GET"] == []


def test_create_on_an_offline_node(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.set_node_offline("pve2")
    code, _, err = oci("create", "--node", "pve2", "-b", str(busybox_bundle), "x")
    assert code == 12
    assert error_line(err) == "node 'pve2' is offline"


def test_create_without_quorum(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.lose_quorum()
    code, _, err = oci("create", "-b", str(busybox_bundle), "x")
    assert code == 11
    assert error_line(err).startswith("the cluster has no quorum")
    assert cluster.pve.cts == []
    assert json.loads(oci("list", "-f", "json")[1]) == []


@pytest.mark.parametrize("backend_name", ["api"])  # refused before any backend is asked
def test_create_with_an_unknown_transport(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = oci("create", "--transport", "ftp", "-b", str(busybox_bundle), "x")
    assert code == 3
    assert error_line(err) == "unknown transport 'ftp' (one of: sftp, api)"


@pytest.mark.parametrize("backend_name", ["api"])  # tokens and privileges are the API's; pct runs as root
def test_create_without_the_privilege_to_allocate(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    from tests.testbed import PVEOCI_PRIVILEGES

    secret = cluster.add_token("weak@pve!t", [p for p in PVEOCI_PRIVILEGES if p != "VM.Allocate"])
    code, _, err = oci("--token-id", "weak@pve!t", "create", "-b", str(busybox_bundle), "x",
                       env={"PVEOCI_TOKEN_SECRET": secret})
    assert code == 7
    assert error_line(err).startswith("permission denied for weak@pve!t")
    assert cluster.pve.cts == []


def test_operations_on_unknown_ids(oci) -> None:  # type: ignore[no-untyped-def]
    for args in (["start", "ghost"], ["kill", "ghost"], ["delete", "ghost"], ["pause", "ghost"],
                 ["resume", "ghost"], ["exec", "ghost", "--", "true"], ["state", "ghost"],
                 ["exec", "ghost", "sh", "-c", "exit 3"], ["exec", "-e", "A=1", "ghost", "ls", "-l", "--", "x"]):
        code, _, err = oci(*args)
        assert (code, error_line(err)) == (8, "container does not exist"), args


def wait_status(oci, cid: str, status: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while json.loads(oci("state", cid)[1])["status"] != status:
        assert time.monotonic() < deadline, f"{cid} never became {status}"
        time.sleep(0.1)


def test_operations_in_the_wrong_state(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "w")
    assert error_line(oci("pause", "w")[2]) == "container not running"
    assert error_line(oci("resume", "w")[2]) == "container not paused"
    assert oci("exec", "w", "--", "true")[0] == 0  # as runc: exec works in a created container (its init runs)
    assert oci("kill", "w", "KILL")[0] == 0
    wait_status(oci, "w", "stopped")
    code, _, err = oci("exec", "w", "--", "true")
    assert (code, error_line(err)) == (21, "cannot exec in a stopped container")


def test_kill_of_a_created_container_makes_it_stopped(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "kc")
    assert oci("kill", "kc")[0] == 0
    wait_status(oci, "kc", "stopped")
    assert error_line(oci("start", "kc")[2]) == "cannot start a container that is not created (it is stopped)"


@pytest.mark.parametrize("backend_name", ["api"])  # the pct backend without SSH: tests/cli/test_backends.py
def test_run_whose_start_fails_leaves_nothing(oci, busybox_bundle: Path, lxc_bed: Testbed) -> None:  # type: ignore[no-untyped-def]
    assert oci("template", "push", "-b", str(busybox_bundle), "--node", "pve1")[0] == 0
    # The API works, SSH to the node does not: the start signal cannot be sent.
    code, _, err = oci("run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "rf", env={"PVEOCI_SSH_PORT": "1"})
    assert code == 16
    assert error_line(err).startswith("cannot reach node 'pve1' over SSH")
    assert lxc_bed.pve.cts == []
    assert oci("state", "rf")[0] == 8


@pytest.mark.parametrize("backend_name", ["api"])  # refused before any backend is asked
def test_unwritable_cache_is_a_config_error(oci, busybox_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = oci("--root", str(blocker / "sub"), "list")
    assert code == 3
    assert error_line(err).startswith(f"cannot open the cache in {blocker / 'sub'}")


@pytest.mark.parametrize("backend_name", ["api"])
def test_api_down_is_a_connect_error(oci) -> None:  # type: ignore[no-untyped-def]
    code, _, err = oci("--port", "1", "list", env={"PVEOCI_RETRIES": "0"})
    assert code == 4
    assert error_line(err).endswith(":1: connection refused")
