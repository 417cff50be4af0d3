"""A create killed after any of its steps leaves, once `pveoci gc` (or the next command on that id) ran, no
orphan container and no cache entry that points at nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.helpers import run_script
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

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
from pveoci.backends import api, pct
def api_create(self, node, vmid, options):
    self.client.post("nodes", node, "lxc", vmid=vmid, **options)
    die()
def pct_create(self, node, vmid, options):
    template = options.pop("ostemplate")
    self.pct(node, "create", vmid, template, params=options)
    die()
api.ApiBackend.create = api_create
pct.PctBackend.create = pct_create
runtime(sys.argv[1]).create("victim", Path(sys.argv[2]), node="pve1")
"""

KILL_BEFORE_CACHE = """
from pveoci import cache as cache_mod
def put(self, record):
    die()
cache_mod.Cache.put = put
runtime(sys.argv[1]).create("victim", Path(sys.argv[2]), node="pve1")
"""


def pveoci(bed: Testbed, root: Path, *args: str, backend: str = "api") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args],
                          env=bed.env(PVEOCI_BACKEND=backend), capture_output=True, text=True, check=False)


def killed_create(bed: Testbed, script: str, root: Path, bundle: Path, *extra: str, backend: str) -> None:
    result = run_script(bed, script, str(root), str(bundle), *extra, backend=backend)
    assert result.returncode == -9, result.stderr


def assert_nothing_left(bed: Testbed, root: Path, backend: str) -> None:
    assert [ct.vmid for ct in bed.pve.cts] == []
    state = pveoci(bed, root, "state", "victim", backend=backend)
    assert state.returncode == 8
    assert state.stderr == "pveoci: error: container does not exist\n"
    assert json.loads(pveoci(bed, root, "list", "-f", "json", backend=backend).stdout) == []
    import sqlite3

    db = sqlite3.connect(root / "cache.db")
    assert db.execute("SELECT COUNT(*) FROM journal").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM containers").fetchone() == (0,)


@pytest.mark.parametrize("step", ["template", "allocate", "create"])
def test_killed_after_a_journal_step_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                             step: str, backend_name: str) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AT_STEP, root, busybox_bundle, step, backend=backend_name)
    gc = pveoci(cluster, root, "gc", backend=backend_name)
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout == "rolled back unfinished creates: victim\n"
    assert_nothing_left(cluster, root, backend_name)


def test_killed_after_the_create_request_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                                 backend_name: str) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AFTER_POST, root, busybox_bundle, backend=backend_name)
    assert len(cluster.pve.cts) == 1  # Proxmox made it: the kill came after the request
    assert pveoci(cluster, root, "gc", backend=backend_name).returncode == 0
    assert_nothing_left(cluster, root, backend_name)


def test_killed_before_the_cache_entry_then_gc(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                               backend_name: str) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_BEFORE_CACHE, root, busybox_bundle, backend=backend_name)
    assert len(cluster.pve.cts) == 1
    assert pveoci(cluster, root, "gc", backend=backend_name).returncode == 0
    assert_nothing_left(cluster, root, backend_name)


def test_the_next_command_on_that_id_rolls_back(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                                backend_name: str) -> None:
    root = tmp_path / "cache"
    killed_create(cluster, KILL_AFTER_POST, root, busybox_bundle, backend=backend_name)
    again = pveoci(cluster, root, "create", "-b", str(busybox_bundle), "victim", backend=backend_name)
    assert again.returncode == 0, again.stderr
    assert len(cluster.pve.cts) == 1
    assert json.loads(pveoci(cluster, root, "state", "victim", backend=backend_name).stdout)["status"] == "created"


def test_a_failing_create_leaves_nothing(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                         backend_name: str) -> None:
    root = tmp_path / "cache"
    cluster.pve.fail("POST", "/nodes/pve1/lxc", 400, "Parameter verification failed.", times=1)
    result = pveoci(cluster, root, "create", "-b", str(busybox_bundle), "--node", "pve1", "victim",
                    backend=backend_name)
    assert result.returncode == 1
    said = {"api": "Proxmox API error 400 on POST /nodes/pve1/lxc: Parameter verification failed.",
            "pct": "Proxmox VE error 400 from pct on node pve1: Parameter verification failed."}
    assert result.stderr.splitlines()[-1] == f"pveoci: error: {said[backend_name]}"
    assert_nothing_left(cluster, root, backend_name)


def test_a_task_error_leaves_nothing(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                     backend_name: str) -> None:
    root = tmp_path / "cache"
    # A rootfs storage that does not exist fails inside the create task, as on PVE.
    env_config = cluster.config_path.read_text().replace('rootfs_storage = "local-lvm"', 'rootfs_storage = "nope"')
    (cluster.root / "bad.toml").write_text(env_config)
    env = cluster.env(PVEOCI_CONFIG=str(cluster.root / "bad.toml"), PVEOCI_BACKEND=backend_name)
    result = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), "create", "-b",
                             str(busybox_bundle), "victim"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert_nothing_left(cluster, root, backend_name)
