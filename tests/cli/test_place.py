"""Placement on the three-node bed, through the command line: `place --explain`, `create --explain`, excluded,
offline and maintenance nodes, and twelve creates at once (twelve processes) with real containers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

GIB = 1024 ** 3
FOREVER = ["sh", "-c", "while true; do sleep 1; done"]


def pveoci(bed: Testbed, root: Path, *args: str) -> Result:
    return invoke(["--root", str(root), *args], env=bed.env())


def templates(bed: Testbed) -> dict[str, list[str]]:
    return {n: sorted(p.name for p in bed.template_dir(n).iterdir() if p.name.endswith(".tar.zst"))
            for n in bed.node_names}


def test_place_picks_the_node_with_most_free_memory_and_says_why(cluster3: Testbed, busybox_bundle: Path,
                                                                 tmp_path: Path) -> None:
    cluster3.pve.node_load = {"pve1": {"mem": 6 * GIB}, "pve2": {"mem": 1 * GIB}, "pve3": {"mem": 4 * GIB}}
    shown = pveoci(cluster3, tmp_path, "place", "-b", str(busybox_bundle), "--explain")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].split()[:9] == ["NODE", "SCORE", "MEMORY", "SPREAD", "CPU", "STORAGE", "TEMPLATE", "GROUP",
                                    "WHY"]
    assert [line.split()[0] for line in lines[1:]] == ["pve2", "pve3", "pve1"]
    assert "chosen: 6.5 GiB memory free after its 512.0 MiB" in lines[1]
    assert "1.5 GiB memory free after its 512.0 MiB" in lines[3]
    plain = pveoci(cluster3, tmp_path, "place", "-b", str(busybox_bundle))
    assert plain.out == "pve2\n"
    data = json.loads(pveoci(cluster3, tmp_path, "place", "-b", str(busybox_bundle), "-o", "json").out)
    assert data["node"] == "pve2"
    assert [n["node"] for n in data["nodes"]] == ["pve2", "pve3", "pve1"]
    assert data["nodes"][0]["parts"]["memory"] > data["nodes"][1]["parts"]["memory"]


def test_never_an_excluded_offline_or_maintenance_node(lxc_bed3: Testbed, tmp_path: Path) -> None:
    bed = lxc_bed3
    bed.pve.node_load = {"pve1": {"mem": 0}, "pve2": {"mem": 0}, "pve3": {"mem": 7 * GIB}}
    bed.pve.set_node_offline("pve2")
    bundle = make_busybox_bundle(tmp_path / "b", FOREVER)
    shown = pveoci(bed, tmp_path, "place", "-b", str(bundle), "--explain", "--exclude-node", "pve1")
    assert shown.code == 0, shown.err
    rows = {line.split()[0]: line for line in shown.out.splitlines()[1:]}
    assert "rejected: excluded" in rows["pve1"]
    assert "rejected: offline" in rows["pve2"]
    assert "chosen:" in rows["pve3"]  # the fullest, but the only one left
    made = pveoci(bed, tmp_path, "create", "-b", str(bundle), "--exclude-node", "pve1", "--explain", "c1")
    assert made.code == 0, made.err
    assert "rejected: excluded" in made.err
    assert "rejected: offline" in made.err
    bed.pve.maintenance = {"pve3"}
    refused = pveoci(bed, tmp_path, "create", "-b", str(bundle), "--exclude-node", "pve1", "c2")
    assert refused.code == 29
    assert refused.err.splitlines()[-1] == ("pveoci: error: no node can take it (pve1: excluded; pve2: offline; "
                                                "pve3: in maintenance)")
    where = {s["id"]: s["pveoci"]["node"] for s in json.loads(pveoci(bed, tmp_path, "list", "-o", "json").out)}
    assert where == {"c1": "pve3"}
    assert templates(bed)["pve1"] == templates(bed)["pve2"] == []  # templates only where a container went


def test_twelve_creates_at_once_spread_four_per_node(lxc_bed3: Testbed, tmp_path: Path) -> None:
    bed = lxc_bed3
    bundle = make_busybox_bundle(tmp_path / "b", FOREVER)
    # Twelve processes, as twelve users' commands: they share a cache directory and race for nodes, VMIDs and
    # uploads across processes (threads of one process would share more than users do).
    procs = [subprocess.Popen([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), "run", "-d",
                               "-b", str(bundle), f"c{i:02d}"], env=bed.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(12)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    states = json.loads(pveoci(bed, tmp_path / "cache", "list", "-o", "json").out)
    assert len(states) == 12
    assert {s["status"] for s in states} == {"running"}
    assert Counter(s["pveoci"]["node"] for s in states) == {"pve1": 4, "pve2": 4, "pve3": 4}
    assert all(len(names) == 1 for names in templates(bed).values())  # one upload per node
    some = states[0]
    inside = pveoci(bed, tmp_path / "cache", "exec", some["id"], "--", "echo", "alive")
    assert (inside.code, inside.out) == (0, "alive\n"), inside.err
