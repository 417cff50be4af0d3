"""Round trips to the cluster, counted where the bed's API logs them: a `run -d` with the template present stays
near the minimum (nextid, create, its task), a `list` with an empty cache asks as much for 30 containers as for 3, and
what the cache remembers is checked by the cluster when it turns out wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

ROOT = Path(__file__).resolve().parents[1]
MINIMUM = 6   # nextid, create, its task, start, its task: what any client of the API needs (issue 9)
WAIT_POLLS = 4   # a task asked after about as long as the last of its kind took, then on that scale


def pveoci(bed: Testbed, root: Path, *args: str) -> Result:
    done = invoke(["--root", str(root), *args], env=bed.env())
    assert done.code == 0, done.err
    return done


def process(bed: Testbed, root: Path, *args: str) -> Result:
    """`pveoci` in a process of its own, for the runs whose requests are counted: the count includes a task's
    status polls, and how many there are depends on timing (pveoci first waits about as long as the last task
    of the kind took, measured by the run before). A client in the bed's own process, sharing its interpreter,
    times the tasks differently and then often asks once more."""
    done = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args], env=bed.env(),
                          capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


def api_calls(bed: Testbed) -> list[str]:
    return [f"{method} {path.removeprefix('/api2/json')}" for method, path, _body in bed.pve.requests]


def asked(calls: list[str]) -> list[str]:
    """The requests, a wait's repeated polls (a task's status, a container's status while its lock clears) counted
    once: how many polls a wait takes depends on how long the machine takes for the task, which varies from run to
    run; each wait's polls are bounded on their own (`polls_of_each_wait`)."""
    return [c for i, c in enumerate(calls) if i == 0 or c != calls[i - 1] or not c.startswith("GET /nodes/")]


def polls_of_each_wait(calls: list[str]) -> list[int]:
    runs: list[int] = []
    for i, c in enumerate(calls):
        if i and c == calls[i - 1] and c.startswith("GET /nodes/"):
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def test_run_detached_with_the_template_present_is_within_three_requests_of_the_minimum(
        lxc_bed: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    process(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "first")  # sends the template
    pveoci(lxc_bed, root, "delete", "-f", "first")
    lxc_bed.pve.requests.clear()
    process(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "second")
    calls = api_calls(lxc_bed)
    assert len(asked(calls)) <= MINIMUM + 3, calls
    assert max(polls_of_each_wait(calls)) <= WAIT_POLLS, calls
    assert sum(c == "GET /cluster/nextid" for c in calls) == 1
    assert sum(c == "POST /nodes/pve1/lxc" for c in calls) == 1
    assert not any("/storage" in c or c in ("GET /version", "GET /nodes", "GET /cluster/status") for c in calls), calls
    state = pveoci(lxc_bed, root, "state", "second").out
    assert '"status": "running"' in state


def test_run_detached_placed_by_score_is_within_three_requests_of_the_minimum_too(
        lxc_bed: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"   # the profile's node is auto: placement by score, the user's default
    process(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "first")
    pveoci(lxc_bed, root, "delete", "-f", "first")
    lxc_bed.pve.requests.clear()
    process(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "second")
    calls = api_calls(lxc_bed)
    assert len(asked(calls)) <= MINIMUM + 3, "\n".join(calls)
    assert max(polls_of_each_wait(calls)) <= WAIT_POLLS, "\n".join(calls)
    # The nodes' status and load are read as they are now, with the containers, in one request (a node put in
    # maintenance a moment ago takes nothing new); their storages come from the cache.
    assert not any(c.endswith("/storage") or c in ("GET /version", "GET /nodes", "GET /cluster/status")
                   for c in calls), calls
    lxc_bed.pve.maintenance = {"pve1", "pve2"}
    refused = invoke(["--root", str(root), "run", "-d", "-b", str(busybox_bundle), "third"], env=lxc_bed.env())
    assert refused.code == 29, refused.err   # no node can take it
    assert refused.err.splitlines()[-1] == ("pveoci: error: no node can take it (pve1: in maintenance; "
                                               "pve2: in maintenance)")


def test_list_with_an_empty_cache_asks_as_much_for_30_containers_as_for_3(cluster: Testbed, busybox_bundle: Path,
                                                                          tmp_path: Path) -> None:
    import pveoci as api

    def listed_by_a_new_workstation(root: Path) -> tuple[list[str], list[str]]:
        cluster.pve.requests.clear()
        return pveoci(cluster, root, "list", "-q").out.split(), api_calls(cluster)

    rt = api.connect(config=cluster.config_path, root=tmp_path / "maker")
    try:
        made = [f"c{i:02d}" for i in range(30)]
        for cid in made[:3]:
            rt.create(cid, busybox_bundle, node="pve1")
        few, asked_few = listed_by_a_new_workstation(tmp_path / "empty3")
        for cid in made[3:]:
            rt.create(cid, busybox_bundle, node="pve1")
        many, asked_many = listed_by_a_new_workstation(tmp_path / "empty30")
    finally:
        rt.close()
    assert (few, many) == (made[:3], made)
    # The cards in /cluster/resources (its tags) say what the descriptions would; the pids of the created
    # containers (their init waits) come from their node's listing: the same two requests for 3 and for 30.
    assert asked_many == asked_few == ["GET /cluster/resources", "GET /nodes/pve1/lxc"], asked_many
    cluster.pve.requests.clear()
    assert len(pveoci(cluster, tmp_path / "empty30", "list", "-q").out.split()) == 30
    assert api_calls(cluster) == ["GET /cluster/resources"]   # the cache knows them all now


def test_a_template_removed_on_the_node_behind_pveocis_back_is_sent_again(lxc_bed: Testbed, busybox_bundle: Path,
                                                                         tmp_path: Path) -> None:
    root = tmp_path / "cache"
    pveoci(lxc_bed, root, "create", "-b", str(busybox_bundle), "--node", "pve1", "one")
    pveoci(lxc_bed, root, "delete", "-f", "one")
    templates = [p for p in lxc_bed.template_dir("pve1").iterdir() if p.name.endswith(".tar.zst")]
    assert len(templates) == 1
    templates[0].unlink()   # another workstation's gc, say: this cache still believes it is there
    sftp_before = sum(c.endswith("sftp-server") for c in lxc_bed.sshd("pve1").commands())
    pveoci(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "two")
    assert templates[0].is_file()
    assert sum(c.endswith("sftp-server") for c in lxc_bed.sshd("pve1").commands()) == sftp_before + 1
    assert '"status": "running"' in pveoci(lxc_bed, root, "state", "two").out
    assert pveoci(lxc_bed, root, "list", "-q").out.split() == ["two"]
