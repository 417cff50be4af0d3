"""`pveoci drain` and `rebalance` on the three-node bed with real containers: a node of six is emptied, a drain
killed (SIGKILL) midway finishes when run again with each container exactly once, rebalance evens out (the
drained six, uneven again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

FOREVER = ["sh", "-c", "while true; do sleep 1; done"]


def pveoci(bed: Testbed, root: Path, *args: str) -> Result:
    return invoke(["--root", str(root), *args], env=bed.env())


def six_on_pve1(bed: Testbed, root: Path, tmp_path: Path) -> None:
    """c0-c3 running, c4-c5 created, all on pve1."""
    bundle = make_busybox_bundle(tmp_path / "b", FOREVER)
    for i in range(6):
        made = pveoci(bed, root, "run" if i < 4 else "create", *(["-d"] if i < 4 else []), "-b", str(bundle),
                      "--node", "pve1", f"c{i}")
        assert made.code == 0, made.err


def listed(bed: Testbed, root: Path) -> list[dict]:  # type: ignore[type-arg]
    done = pveoci(bed, root, "list", "-o", "json")
    assert done.code == 0, done.err
    return json.loads(done.out)  # type: ignore[no-any-return]


def assert_all_there_once(bed: Testbed, root: Path) -> list[dict]:  # type: ignore[type-arg]
    """Each of the six exactly once on the cluster, none on pve1, each in the state it had, processes running."""
    states = listed(bed, root)
    assert sorted(s["id"] for s in states) == [f"c{i}" for i in range(6)]
    assert len(bed.pve.cts) == 6
    assert "pve1" not in {s["pveoci"]["node"] for s in states}
    assert {s["id"]: s["status"] for s in states} == {f"c{i}": "running" if i < 4 else "created" for i in range(6)}
    for cid in ("c0", "c3"):
        inside = pveoci(bed, root, "exec", cid, "--", "cat", "/.pveoci/run/state")
        assert (inside.code, inside.out) == (0, "running"), inside.err
    assert all("pveoci-moving" not in str(ct.config.get("tags")) for ct in bed.pve.cts)
    return states


def test_draining_a_node_of_six_moves_them_all_and_rebalance_evens_out_within_its_budget(
        lxc_bed3: Testbed, tmp_path: Path) -> None:
    bed, root = lxc_bed3, tmp_path / "cache"
    six_on_pve1(bed, root, tmp_path)
    dry = pveoci(bed, root, "drain", "pve1", "--dry-run")
    assert dry.code == 0, dry.err
    assert len(dry.out.splitlines()) == 6
    assert all("would move" in line for line in dry.out.splitlines())
    assert Counter(s["pveoci"]["node"] for s in listed(bed, root)) == {"pve1": 6}
    drained = pveoci(bed, root, "drain", "pve1", "--parallel", "3", "-o", "json")
    assert drained.code == 0, drained.err
    lines = [json.loads(line) for line in drained.out.splitlines()]
    assert sorted(x["id"] for x in lines) == [f"c{i}" for i in range(6)]
    assert {x["result"] for x in lines} == {"moved"}
    assert {x["id"]: x["mode"] for x in lines} == {f"c{i}": "restart" for i in range(6)}
    states = assert_all_there_once(bed, root)
    assert Counter(s["pveoci"]["node"] for s in states) == {"pve2": 3, "pve3": 3}
    # The same six, uneven now (pve1 empty): rebalance plans two moves, takes one within a budget of one, then
    # the rest.
    dry = pveoci(bed, root, "rebalance", "--dry-run")
    assert dry.code == 0, dry.err
    assert len(dry.out.splitlines()) == 2
    assert "(planned); 2 move(s)" in dry.err
    one = pveoci(bed, root, "rebalance", "--max-moves", "1", "-o", "json")
    assert one.code == 0, one.err
    assert len(one.out.splitlines()) == 1
    assert Counter(s["pveoci"]["node"] for s in listed(bed, root))["pve1"] == 1
    rest = pveoci(bed, root, "rebalance")
    assert rest.code == 0, rest.err
    states = listed(bed, root)
    assert Counter(s["pveoci"]["node"] for s in states) == {"pve1": 2, "pve2": 2, "pve3": 2}
    assert {s["id"]: s["status"] for s in states} == {f"c{i}": "running" if i < 4 else "created" for i in range(6)}


def test_a_drain_killed_midway_finishes_when_run_again(lxc_bed3: Testbed, tmp_path: Path) -> None:
    bed, root = lxc_bed3, tmp_path / "cache"
    six_on_pve1(bed, root, tmp_path)
    # A process: it is killed (SIGKILL) midway, with nothing of its own left to finish.
    first = subprocess.Popen([sys.executable, "-m", "pveoci", "--root", str(root), "drain", "pve1", "--parallel",
                              "2", "-o", "json"], env=bed.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert first.stdout is not None
    done_first = json.loads(first.stdout.readline())  # one container moved, others under way
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    assert done_first["result"] == "moved"
    left = Counter(s["pveoci"]["node"] for s in listed(bed, root))
    assert 0 < left["pve1"] < 6  # it was killed midway
    again = pveoci(bed, root, "drain", "pve1", "--parallel", "2", "-o", "json")
    assert again.code == 0, again.err
    lines = [json.loads(line) for line in again.out.splitlines()]
    assert done_first["id"] not in {x["id"] for x in lines}
    assert {x["result"] for x in lines} <= {"moved"}
    assert_all_there_once(bed, root)
