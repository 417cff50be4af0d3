"""VMIDs come from nextid; every form of a lost race is retried; an optional range keeps them together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.helpers import run_script
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

CONCURRENT = """
root, bundle, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
results, failures = {}, []
def one(i):
    try:
        st = runtime(root).create(f"{prefix}-{i}", Path(bundle))
        results[st.id] = (st.node, st.vmid)
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"results": results, "failures": failures}))
"""


def test_sixteen_concurrent_creates_from_four_processes_get_sixteen_vmids(
        cluster: Testbed, busybox_bundle: Path, tmp_path: Path, backend_name: str) -> None:
    import subprocess
    import sys
    import textwrap

    from tests.runtime.helpers import PRELUDE

    # Besides the natural races (concurrent nextid calls get the same id), inject PVE's other forms.
    cluster.pve.fail("POST", "/nodes/pve1/lxc", 500,
                     "unable to create CT 999 - close (rename) atomic file '/etc/pve/nodes/pve1/lxc/999.conf' "
                     "failed: File exists", times=2)
    code = PRELUDE + "import json\n" + textwrap.dedent(CONCURRENT)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"cache{p}"), str(busybox_bundle),
                               f"c{p}"], env=cluster.env(PVEOCI_BACKEND=backend_name), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2]) for p in range(4)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    results: dict[str, list[object]] = {}
    for out, err in outputs:
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"results": {}, "failures": [err]}
        assert data["failures"] == []
        results.update(data["results"])
    assert len(results) == 16
    vmids = [vmid for _node, vmid in results.values()]
    assert len(set(vmids)) == 16
    assert sorted(ct.vmid for ct in cluster.pve.cts) == sorted(vmids)
    raced = [r for r in cluster.pve.requests if r[0] == "POST" and r[1].endswith("/lxc")]
    assert len(raced) > 16  # some creates lost a race and were retried


def test_lock_timeout_race_form_is_retried(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                          backend_name: str) -> None:
    cluster.pve.fail("POST", "/nodes/pve1/lxc", 500, "can't lock file '/run/lock/lxc/pve-config-100.lock' - got "
                     "timeout", times=1)
    result = run_script(cluster, """
        st = runtime(sys.argv[1]).create("locky", Path(sys.argv[2]), node="pve1")
        print(st.vmid)
    """, str(tmp_path / "cache"), str(busybox_bundle), backend=backend_name)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 100


def test_vmid_range_keeps_containers_together(cluster: Testbed, busybox_bundle: Path, tmp_path: Path,
                                              backend_name: str) -> None:
    (cluster.root / "ranged.toml").write_text(cluster.config_path.read_text().replace(
        'rootfs_storage = "local-lvm"', 'rootfs_storage = "local-lvm"\nvmid_range = "9000-9002"'))
    env = cluster.env(PVEOCI_CONFIG=str(cluster.root / "ranged.toml"), PVEOCI_BACKEND=backend_name)
    import subprocess
    import sys

    vmids = []
    for name in ("r1", "r2", "r3"):
        proc = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "c"), "create", "-b",
                               str(busybox_bundle), name], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        state = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "c"), "state", name],
                               env=env, capture_output=True, text=True, check=False)
        vmids.append(json.loads(state.stdout)["pveoci"]["vmid"])
    assert sorted(vmids) == [9000, 9001, 9002]  # picked at random among the free ones, so racers spread
    full = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "c"), "create", "-b",
                           str(busybox_bundle), "r4"], env=env, capture_output=True, text=True, check=False)
    assert full.returncode == 3
    assert full.stderr.splitlines()[-1] == "pveoci: error: no free VMID left in vmid_range 9000-9002"
