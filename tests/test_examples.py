"""The scripts of contrib/examples/, run as a user runs them, against the bed with real containers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

EXAMPLES = Path(__file__).resolve().parents[1] / "contrib" / "examples"
FOREVER = ["sh", "-c", "while true; do sleep 1; done"]


def example(bed: Testbed, tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = bed.env(XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def pveoci(bed: Testbed, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = bed.env(XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    return subprocess.run([sys.executable, "-m", "pveoci", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def annotate(bundle: Path, **annotations: str) -> Path:
    config = json.loads((bundle / "config.json").read_text())
    config["annotations"] = annotations
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_run_and_wait(lxc_bed: Testbed, tmp_path: Path) -> None:
    bundle = make_busybox_bundle(tmp_path / "job", ["sh", "-c", "echo working; sleep 1"])
    result = example(lxc_bed, tmp_path, "run_and_wait.py", str(bundle), "job1", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert (final["id"], final["status"]) == ("job1", "stopped")
    assert "job1 runs on" in result.stderr
    assert lxc_bed.pve.cts == []  # deleted afterwards


def test_stop_annotated(lxc_bed: Testbed, tmp_path: Path) -> None:
    blue = annotate(make_busybox_bundle(tmp_path / "blue", FOREVER), team="blue")
    red = annotate(make_busybox_bundle(tmp_path / "red", FOREVER), team="red")
    for name, bundle in (("b1", blue), ("r1", red)):
        assert pveoci(lxc_bed, tmp_path, "run", "-d", "-b", str(bundle), name).returncode == 0
    result = example(lxc_bed, tmp_path, "stop_annotated.py", "team=blue", "--signal", "KILL")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(c["id"] for c in report["containers"]) == ["b1", "r1"]
    assert report["stopped"] == ["b1"]
    states = {s["id"]: s["status"] for s in json.loads(pveoci(lxc_bed, tmp_path, "list", "-o", "json").stdout)}
    assert states == {"b1": "stopped", "r1": "running"}


def test_evacuate_node(lxc_bed: Testbed, tmp_path: Path) -> None:
    bundle = make_busybox_bundle(tmp_path / "svc", FOREVER)
    assert pveoci(lxc_bed, tmp_path, "run", "-d", "-b", str(bundle), "--node", "pve1", "s1").returncode == 0
    assert pveoci(lxc_bed, tmp_path, "create", "-b", str(bundle), "--node", "pve1", "s2").returncode == 0
    dry = example(lxc_bed, tmp_path, "evacuate_node.py", "pve1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [(x["id"], x["to"], x["result"]) for x in map(json.loads, dry.stdout.splitlines())] == [
        ("s1", "pve2", "would move"), ("s2", "pve2", "would move")]
    moved = example(lxc_bed, tmp_path, "evacuate_node.py", "pve1")
    assert moved.returncode == 0, moved.stderr
    lines = sorted((json.loads(line) for line in moved.stdout.splitlines()), key=lambda x: x["id"])
    assert [(x["id"], x["from"], x["to"], x["mode"], x["result"], x["status"]) for x in lines] == [
        ("s1", "pve1", "pve2", "restart", "moved", "running"), ("s2", "pve1", "pve2", "restart", "moved", "created")]
    where = {s["id"]: s["pveoci"]["node"] for s in json.loads(pveoci(lxc_bed, tmp_path, "list", "-o", "json").stdout)}
    assert where == {"s1": "pve2", "s2": "pve2"}
    inside = pveoci(lxc_bed, tmp_path, "exec", "s1", "--", "cat", "/.pveoci/run/state")
    assert (inside.returncode, inside.stdout) == (0, "running"), inside.stderr


def test_evacuate_node_moves_nothing_when_one_cannot_go(lxc_bed: Testbed, tmp_path: Path) -> None:
    bundle = make_busybox_bundle(tmp_path / "svc", FOREVER)
    assert pveoci(lxc_bed, tmp_path, "run", "-d", "-b", str(bundle), "--node", "pve1", "s1").returncode == 0
    lxc_bed.pve.maintenance = {"pve2"}  # the only other node
    refused = example(lxc_bed, tmp_path, "evacuate_node.py", "pve1")
    assert refused.returncode == 1
    (line,) = map(json.loads, refused.stdout.splitlines())
    assert (line["id"], line["result"]) == ("s1", "refused")
    assert "pve2: in maintenance" in line["error"]
    assert lxc_bed.pve.cts[0].node == "pve1"
