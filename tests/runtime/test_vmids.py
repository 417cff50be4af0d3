"""VMIDs come from nextid; every form of a lost race is retried (an optional range keeps them together:
tests/runtime/test_core.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from tests.testbed import Testbed

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


@pytest.mark.bed
def test_sixteen_concurrent_creates_from_four_processes_get_sixteen_vmids(
        cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    """Real races between processes, over the API (how each backend words a taken VMID: tests/contract)."""
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
                               f"c{p}"], env=cluster.env(), stdout=subprocess.PIPE,
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


def test_lock_timeout_race_form_is_retried(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    # PVE's words when another create holds the VMID's config lock (the API's 500, pct's die, the same text).
    memory.fail("create", errors.ApiError("can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout"))
    assert rt.create("locky", bundle, node="pve1").vmid >= 100
    assert memory.calls.count("create") == 2
