"""A create killed after any of its steps leaves, once `pveoci gc` (or the next command on that id) ran, no
orphan container and no cache entry that points at nothing: real processes killed, on the bed over the API
(the runtime's recovery reaches the cluster through the protocol each backend keeps: tests/contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from tests.runtime.conftest import MakeRuntime
from tests.runtime.helpers import run_script
from tests.testbed import Testbed

KILL_AT_STEP = """
from pveoci import cache as cache_mod
original = cache_mod.Cache.step
def step(self, op, name, **data):
    original(self, op, name, **data)
    if name == sys.argv[3]:
        die()
cache_mod.Cache.step = step
runtime(sys.argv[1]).create("victim", Path(sys.argv[2]), node="pve1")
"""

KILL_AFTER_POST = """
from pveoci.backends import api
def api_create(self, node, vmid, options):
    self.client.post("nodes", node, "lxc", vmid=vmid, **options)
    die()
api.ApiLifecycle.create = api_create
runtime(sys.argv[1]).create("victim", Path(sys.argv[2]), node="pve1")
"""

KILL_BEFORE_CACHE = """
from pveoci import cache as cache_mod
def put(self, record):
    die()
cache_mod.Cache.put = put
runtime(sys.argv[1]).create("victim", Path(sys.argv[2]), node="pve1")
"""


def pveoci(bed: Testbed, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args],
                          env=bed.env(), capture_output=True, text=True, check=False)


def killed_create(bed: Testbed, script: str, root: Path, bundle: Path, *extra: str) -> None:
    result = run_script(bed, script, str(root), str(bundle), *extra)
    assert result.returncode == -9, result.stderr


def assert_cache_empty(root: Path) -> None:
    import sqlite3

    db = sqlite3.connect(root / "cache.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM journal").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM containers").fetchone() == (0,)
    finally:
        db.close()


def assert_nothing_left(bed: Testbed, root: Path) -> None:
    assert [ct.vmid for ct in bed.pve.cts] == []
    state = pveoci(bed, root, "state", "victim")
    assert state.returncode == 8
    assert state.stderr == "pveoci: error: container does not exist\n"
    assert json.loads(pveoci(bed, root, "list", "-f", "json").stdout) == []
    assert_cache_empty(root)


@pytest.mark.bed
@pytest.mark.parametrize("step", ["template", "allocate", "create"])
def test_killed_after_a_journal_step_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                             step: str) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AT_STEP, root, busybox_bundle, step)
    gc = pveoci(cluster, root, "gc")
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout == "rolled back unfinished creates: victim\n"
    assert_nothing_left(cluster, root)


@pytest.mark.bed
def test_killed_after_the_create_request_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AFTER_POST, root, busybox_bundle)
    assert len(cluster.pve.cts) == 1  # Proxmox made it: the kill came after the request
    assert pveoci(cluster, root, "gc").returncode == 0
    assert_nothing_left(cluster, root)


@pytest.mark.bed
def test_killed_before_the_cache_entry_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_BEFORE_CACHE, root, busybox_bundle)
    assert len(cluster.pve.cts) == 1
    assert pveoci(cluster, root, "gc").returncode == 0
    assert_nothing_left(cluster, root)


@pytest.mark.bed
def test_the_next_command_on_that_id_rolls_back(cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AFTER_POST, root, busybox_bundle)
    again = pveoci(cluster, root, "create", "-b", str(busybox_bundle), "victim")
    assert again.returncode == 0, again.stderr
    assert len(cluster.pve.cts) == 1
    assert json.loads(pveoci(cluster, root, "state", "victim").stdout)["status"] == "created"


@pytest.mark.parametrize("failure", [
    errors.InvalidParameter("Proxmox rejected the request: rootfs: invalid format"),
    errors.TaskFailed("Proxmox task vzcreate 100 on pve1 failed: unable to create CT 100 - storage 'nope' does not "
                      "exist", upid="UPID:x", exitstatus="error", log_tail=[]),
], ids=["refused", "task failed"])
def test_a_failing_create_leaves_nothing(make_runtime: MakeRuntime, memory: MemoryBackend, bundle: Path,
                                         tmp_path: Path, failure: errors.PveociError) -> None:
    """The create is refused, or its task fails (how each backend words either: tests/contract, tests/backends)."""
    rt = make_runtime(root=tmp_path / "cache")
    memory.fail("create", failure)
    with pytest.raises(type(failure)):
        rt.create("victim", bundle)
    assert memory.cts == {}
    with pytest.raises(errors.NotFound):
        rt.state("victim")
    assert rt.list() == []
    rt.close()
    assert_cache_empty(tmp_path / "cache")
