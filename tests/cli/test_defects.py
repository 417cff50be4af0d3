"""What acceptance testing of 0.1.0 found, each as the user meets it on the bed (each failed on 0.1.0)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out


def one_line(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    assert result.err.count("\n") == 1, result.err
    return result.err.removeprefix("pveoci: error: ").rstrip("\n")


def test_template_ls_rm_and_gc_know_which_templates_are_in_use(cli, busybox_bundle: Path,  # type: ignore[no-untyped-def]
                                                              cluster: Testbed) -> None:
    made = json.loads(ok(cli("create", "-o", "json", "-b", str(busybox_bundle), "--node", "pve1", "user1")))
    name = made["pveoci"]["template"].split("/")[1]
    listed = json.loads(ok(cli("template", "ls", "-o", "json")))
    assert [(t["node"], t["name"], t["used_by"]) for t in listed] == [("pve1", name, ["user1"])]
    assert "user1" in ok(cli("template", "ls"))
    assert json.loads(ok(cli("template", "gc", "-o", "json")))["removed"] == []
    message = one_line(cli("template", "rm", name, "--node", "pve1"), 28)
    assert message == f"template {name} is used by user1; --force removes it anyway"
    assert (cluster.template_dir("pve1") / name).exists()
    ok(cli("delete", "-f", "user1"))   # created, never started
    assert [t["name"] for t in json.loads(ok(cli("template", "gc", "-o", "json")))["removed"]] == [name]
    assert not (cluster.template_dir("pve1") / name).exists()


def test_a_failed_start_leaves_the_container_created_and_startable(lxc_bed: Testbed, busybox_bundle: Path,
                                                                   tmp_path: Path) -> None:
    def pveoci(*args: str, **env: str) -> Result:
        return invoke(["--root", str(tmp_path / "cache"), *args], env=lxc_bed.env(**env))

    ok(pveoci("create", "-b", str(busybox_bundle), "flaky"))
    # The start cannot reach the node (SSH is down there): it fails, and nothing changes.
    assert one_line(pveoci("start", "flaky", PVEOCI_SSH_PORT="1"), 16).startswith("cannot reach node")
    assert json.loads(ok(pveoci("state", "flaky")))["status"] == "created"
    ok(pveoci("start", "flaky"))
    assert json.loads(ok(pveoci("state", "flaky")))["status"] == "running"
    ok(pveoci("delete", "-f", "flaky"))


def test_a_rootfs_that_is_a_symlink_is_packed_as_the_tree_it_names(cli, busybox_bundle: Path,  # type: ignore[no-untyped-def]
                                                                   cluster: Testbed, tmp_path: Path) -> None:
    real = tmp_path / "images" / "busybox-root"
    real.parent.mkdir()
    shutil.move(str(busybox_bundle / "rootfs"), real)
    (busybox_bundle / "rootfs").symlink_to(real)
    made = json.loads(ok(cli("create", "-o", "json", "-b", str(busybox_bundle), "--node", "pve1", "linked")))
    template = cluster.template_dir("pve1") / made["pveoci"]["template"].split("/")[1]
    names = subprocess.run(["tar", "-tf", str(template)], capture_output=True, text=True, check=True).stdout.split()
    assert "./bin/busybox" in names
    assert len(names) > 10
    ok(cli("delete", "-f", "linked"))   # created, never started


def test_state_names_the_rootfs_the_bundle_names(cli, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["root"]["path"] = "image/root"
    (busybox_bundle / "image").mkdir()
    shutil.move(str(busybox_bundle / "rootfs"), busybox_bundle / "image" / "root")
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    ok(cli("create", "-b", str(busybox_bundle), "rooted"))
    state = json.loads(ok(cli("state", "rooted")))
    assert state["rootfs"] == str(busybox_bundle / "image" / "root")
    ok(cli("delete", "-f", "rooted"))   # created, never started


SAME_ID = """
import sys, pveoci
from pathlib import Path
try:
    pveoci.connect(config=sys.argv[1], root=sys.argv[2]).create("dup", Path(sys.argv[3]), node=sys.argv[4])
    print("won")
except pveoci.AlreadyExists as exc:
    print("lost:", exc)
"""


@pytest.mark.parametrize("round_", range(3))
def test_eight_concurrent_creates_of_one_id_make_one_container(cluster: Testbed, busybox_bundle: Path,
                                                               tmp_path: Path, round_: int) -> None:
    # The template is there first, so every create is quick and they truly overlap.
    for node in ("pve1", "pve2"):
        ok(invoke(["template", "push", "-b", str(busybox_bundle), "--node", node], env=cluster.env()))
    # Eight processes, each with its own cache: the race is between processes, as between users' commands.
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(SAME_ID), str(cluster.config_path),
                               str(tmp_path / f"cache{i}"), str(busybox_bundle), ("pve1", "pve2")[i % 2]],
                              env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) for i in range(8)]
    outcomes = [p.communicate(timeout=300) for p in procs]
    said = [out.strip() for out, _err in outcomes]
    assert all(s == "won" or s.startswith("lost: container with given ID already exists") for s in said), outcomes
    assert said.count("won") == 1, said
    tagged = [ct for ct in cluster.pve.cts if any(t.startswith("pveoci-id-") for t in str(ct.config.get("tags",
                                                                                                            "")).split(";"))]
    assert len(tagged) == 1


RANGED = """
import sys, threading, json, pveoci
from pathlib import Path
results, failures = [], []
def one(i):
    try:
        rt = pveoci.connect(config=sys.argv[1], root=sys.argv[2])
        results.append(rt.create(f"{sys.argv[4]}-{i}", Path(sys.argv[3])).vmid)
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"vmids": results, "failures": failures}))
"""


def test_creates_with_a_vmid_range_spread_and_all_succeed(cluster: Testbed, busybox_bundle: Path,
                                                          tmp_path: Path) -> None:
    ranged = cluster.root / "ranged.toml"
    ranged.write_text(cluster.config_path.read_text().replace(
        'rootfs_storage = "local-lvm"', 'rootfs_storage = "local-lvm"\nvmid_range = "9000-9099"'))
    # Four processes of eight threads each: threads share a cache, processes do not.
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(RANGED), str(ranged), str(tmp_path / f"c{p}"),
                               str(busybox_bundle), f"r{p}"], env=cluster.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
             for p in range(4)]
    vmids: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"vmids": [], "failures": [err]}
        assert data["failures"] == []
        vmids += data["vmids"]
    assert len(vmids) == len(set(vmids)) == 32
    assert all(9000 <= v <= 9099 for v in vmids)


def test_settings_in_a_script_do_not_carry_the_environment(cluster: Testbed,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env = cluster.env(PVEOCI_TOKEN_SECRET="t0ps3cret-token", SOME_OTHER_SECRET="other-value")
    for name in os.environ.keys() - env.keys():
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import pveoci as api

    with api.connect() as rt:
        out = repr(rt.settings)
    assert "t0ps3cret-token" not in out
    assert "other-value" not in out
    assert os.environ.get("HOME", "/nonexistent-home") not in out or not os.environ.get("HOME")
