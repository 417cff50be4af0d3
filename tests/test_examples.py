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


def test_run_and_wait_exits_with_the_status_of_a_failing_job(lxc_bed: Testbed, tmp_path: Path) -> None:
    bundle = make_busybox_bundle(tmp_path / "job", ["sh", "-c", "echo failing >&2; exit 3"])
    result = example(lxc_bed, tmp_path, "run_and_wait.py", str(bundle), "job2", "--timeout", "60")
    assert result.returncode == 3, result.stderr
    final = json.loads(result.stdout)
    assert (final["id"], final["status"], final["exit_status"]) == ("job2", "stopped", 3)
    assert lxc_bed.pve.cts == []


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


def test_move_annotated(lxc_bed3: Testbed, tmp_path: Path) -> None:
    bed = lxc_bed3
    blue = annotate(make_busybox_bundle(tmp_path / "blue", FOREVER), team="blue")
    red = annotate(make_busybox_bundle(tmp_path / "red", FOREVER), team="red")
    for name, bundle in (("b1", blue), ("b2", blue), ("r1", red)):
        assert pveoci(bed, tmp_path, "run", "-d", "-b", str(bundle), "--node", "pve1", name).returncode == 0
    dry = example(bed, tmp_path, "move_annotated.py", "team=blue", "--to", "pve3", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [(x["id"], x["to"], x["result"]) for x in map(json.loads, dry.stdout.splitlines())] == [
        ("b1", "pve3", "would move"), ("b2", "pve3", "would move")]
    moved = example(bed, tmp_path, "move_annotated.py", "team=blue", "--to", "pve3")
    assert moved.returncode == 0, moved.stderr
    assert [(x["id"], x["result"], x["status"]) for x in map(json.loads, moved.stdout.splitlines())] == [
        ("b1", "moved", "running"), ("b2", "moved", "running")]
    bed.pve.maintenance = {"pve2"}
    refused = example(bed, tmp_path, "move_annotated.py", "team=red", "--to", "pve2")
    assert refused.returncode == 1
    assert [(x["id"], x["result"]) for x in map(json.loads, refused.stdout.splitlines())] == [("r1", "refused")]
    where = {s["id"]: (s["pveoci"]["node"], s["status"])
             for s in json.loads(pveoci(bed, tmp_path, "list", "-o", "json").stdout)}
    assert where == {"b1": ("pve3", "running"), "b2": ("pve3", "running"), "r1": ("pve1", "running")}


def two_clusters(src: Testbed, dst: Testbed, path: Path) -> Path:
    """One settings file with a profile for each bed: src (two nodes) and dst (three)."""
    first = src.config_path.read_text().replace('default_profile = "bed"', 'default_profile = "src"')
    second = dst.config_path.read_text().replace('default_profile = "bed"\n', "")
    path.write_text(first.replace("[profiles.bed", "[profiles.src") + "\n"
                    + second.replace("[profiles.bed", "[profiles.dst"))
    return path


def test_recreate_on_cluster(lxc_bed: Testbed, lxc_bed3: Testbed, tmp_path: Path) -> None:
    config = two_clusters(lxc_bed, lxc_bed3, tmp_path / "two.toml")
    env = lxc_bed.env(PVEOCI_CONFIG=str(config), XDG_STATE_HOME=str(tmp_path / "state"),
                      XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False,
                              timeout=300)

    blue = annotate(make_busybox_bundle(tmp_path / "blue", FOREVER), team="blue")
    red = annotate(make_busybox_bundle(tmp_path / "red", FOREVER), team="red")
    for args in (("run", "-d", "-b", str(blue), "j1"), ("create", "-b", str(blue), "j2"),
                 ("run", "-d", "-b", str(red), "x1"), ("-p", "dst", "create", "-b", str(red), "j2")):
        made = run("-m", "pveoci", *args)
        assert made.returncode == 0, made.stderr
    script = str(EXAMPLES / "recreate_on_cluster.py")
    common = ("--from", "src", "--to", "dst", "--annotation", "team=blue")
    clash = run(script, *common)  # j2 exists on dst: the dry run refuses, nothing changes
    assert clash.returncode == 1, clash.stderr
    assert [(x["id"], x["result"]) for x in map(json.loads, clash.stdout.splitlines())] == [
        ("j1", "would recreate"), ("j2", "refused")]
    assert run("-m", "pveoci", "-p", "dst", "delete", "-f", "j2").returncode == 0   # created, never started
    dry = run(script, *common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert {x["id"]: x["to"].split(":")[0] for x in map(json.loads, dry.stdout.splitlines())} == {
        "j1": "dst", "j2": "dst"}
    done = run(script, *common)
    assert done.returncode == 0, done.stderr
    assert [(x["id"], x["result"], x["status"]) for x in map(json.loads, done.stdout.splitlines())] == [
        ("j1", "recreated", "running"), ("j2", "recreated", "created")]
    on = {p: {s["id"]: s["status"] for s in json.loads(run("-m", "pveoci", "-p", p, "list", "-o", "json").stdout)}
          for p in ("src", "dst")}
    assert on == {"src": {"x1": "running"}, "dst": {"j1": "running", "j2": "created"}}
