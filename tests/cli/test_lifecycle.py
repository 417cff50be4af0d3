"""The lifecycle with OCI semantics, ported from the runtime-tools validation cases (create, state, start, kill,
kill_no_effect, delete, pidfile, misc_props) and run against the bed through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.oci import state_schema
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def oci(lxc_bed: Testbed, tmp_path: Path, backend_name: str):  # type: ignore[no-untyped-def]
    """`pveoci --root <private cache> ...` -> (exit code, stdout, stderr), against the bed with real containers,
    over each backend."""
    cluster = lxc_bed
    def run(*args: str) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=cluster.env(PVEOCI_BACKEND=backend_name), capture_output=True, text=True,
                              check=False, timeout=180)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def state(oci, cid: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    code, out, err = oci("state", cid)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_create(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    code, out, err = oci("create", "-b", str(busybox_bundle), "c1")
    assert (code, out) == (0, "")
    assert state(oci, "c1")["status"] == "created"
    code, _, err = oci("create", "-b", str(busybox_bundle), "c1")
    assert code == 9
    assert last_line(err) == "pveoci: error: container with given ID already exists"
    assert len(cluster.pve.cts) == 1


def test_create_does_not_start_the_process(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    assert oci("create", "-b", str(busybox_bundle), "c2")[0] == 0
    (ct,) = cluster.pve.cts
    assert ct.status == "running"  # its init runs, waiting for start, as runc's does
    assert "hello from pveoci" not in cluster.console_log(ct.node, ct.vmid).read_text()
    assert oci("start", "c2")[0] == 0
    deadline = time.monotonic() + 30
    while "hello from pveoci" not in cluster.console_log(ct.node, ct.vmid).read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    oci("delete", "-f", "c2")


def test_state_validates_against_the_runtime_spec_schema(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "s1")
    first = oci("state", "s1")[1]
    data = json.loads(first)
    state_schema().validate(data)
    assert data["id"] == "s1"
    assert data["bundle"] == str(busybox_bundle)
    assert data["ociVersion"] == "1.3.0"
    assert set(data["pveoci"]) == {"cluster", "node", "vmid", "template"}
    assert oci("state", "s1")[1] == first  # byte-stable between calls


def test_state_of_an_unknown_container(oci) -> None:  # type: ignore[no-untyped-def]
    code, out, err = oci("state", "nope")
    assert (code, out, err) == (8, "", "pveoci: error: container does not exist\n")


@pytest.mark.parametrize(("cid", "message"), [("", "container id cannot be empty"),
                                               ("bad/id", "invalid container ID format"),
                                               ("x" * 1025, "invalid container ID format")])
def test_bad_ids(oci, cid: str, message: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = oci("state", cid)
    assert code == 13
    assert err == f"pveoci: error: {message}\n"


def test_containerd_style_ids_work(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    cid = "0123456789abcdef" * 4
    assert oci("create", "-b", str(busybox_bundle), cid)[0] == 0
    assert state(oci, cid)["id"] == cid


def test_start(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "st")
    code, out, err = oci("start", "st")
    assert (code, out) == (0, ""), err
    running = state(oci, "st")
    assert running["status"] == "running"
    assert running["pid"] > 0
    code, _, err = oci("start", "st")
    assert code == 22
    assert last_line(err) == "pveoci: error: cannot start a container that is not created (it is running)"
    assert oci("start", "nope")[0] == 8
    oci("kill", "st", "KILL")


def test_kill(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("run", "-d", "-b", str(busybox_bundle), "k1")
    code, _, err = oci("kill", "--timeout", "1", "k1", "TERM")  # the shell ignores PVE's halt signal: stopped
    assert code == 0, err
    assert state(oci, "k1")["status"] == "stopped"
    assert state(oci, "k1")["pid"] == 0


def test_kill_accepts_runc_signal_spellings(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("run", "-d", "-b", str(busybox_bundle), "k2")
    assert oci("kill", "k2", "9")[0] == 0
    assert state(oci, "k2")["status"] == "stopped"
    code, _, err = oci("kill", "k2", "SIGNOPE")
    assert code == 13
    assert err == "pveoci: error: unknown signal: SIGNOPE\n"


def test_kill_no_effect(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("run", "-d", "-b", str(busybox_bundle), "kn")
    oci("kill", "kn", "KILL")
    before = oci("state", "kn")[1]
    code, _, err = oci("kill", "kn", "TERM")
    assert code == 21
    assert err == "pveoci: error: container not running\n"
    assert oci("state", "kn")[1] == before


def test_delete(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    oci("run", "-d", "-b", str(busybox_bundle), "d1")
    code, _, err = oci("delete", "d1")
    assert code == 25
    assert err == "pveoci: error: cannot delete container d1 that is not stopped: running\n"
    oci("kill", "d1", "KILL")
    assert oci("delete", "d1") == (0, "", "")
    assert cluster.pve.cts == []
    assert oci("state", "d1")[0] == 8
    assert oci("delete", "d1")[0] == 8
    assert oci("delete", "-f", "d1") == (0, "", "")  # -f on an unknown id succeeds, as runc's


def test_delete_force_stops_a_running_container(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    oci("run", "-d", "-b", str(busybox_bundle), "d2")
    assert oci("delete", "-f", "d2") == (0, "", "")
    assert cluster.pve.cts == []


def test_delete_of_a_created_container(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "d3")
    assert oci("delete", "d3") == (0, "", "")
    assert cluster.pve.cts == []
    assert oci("create", "-b", str(busybox_bundle), "d3")[0] == 0  # the id can be reused


def test_pidfile(oci, busybox_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "run.pid"
    code, _, err = oci("run", "-d", "-b", str(busybox_bundle), "--pid-file", str(pid_file), "p1")
    assert code == 0, err
    assert pid_file.read_text() == str(state(oci, "p1")["pid"])  # no trailing newline
    oci("kill", "p1", "KILL")


def test_misc_props(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["annotations"] = {"org.example.key": "value", "org.opencontainers.image.stopSignal": "SIGQUIT"}
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    oci("create", "-b", str(busybox_bundle), "m1")
    data = state(oci, "m1")
    assert data["annotations"] == {"org.example.key": "value", "org.opencontainers.image.stopSignal": "SIGQUIT"}
    assert data["created"].endswith("Z")
    # Later edits to config.json do not affect the container.
    config["annotations"] = {"changed": "yes"}
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    assert state(oci, "m1")["annotations"]["org.example.key"] == "value"


def test_list(oci, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "l1")
    oci("run", "-d", "-b", str(busybox_bundle), "l2")
    code, out, _ = oci("list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:6] == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert [(r.split()[0], r.split()[2]) for r in rows] == [("l1", "created"), ("l2", "running")]
    assert oci("list", "-q")[1] == "l1\nl2\n"
    listed = json.loads(oci("list", "-f", "json")[1])
    assert [s["id"] for s in listed] == ["l1", "l2"]
    for item in listed:
        state_schema().validate(item)
    oci("kill", "l2", "KILL")


def test_any_workstation_finds_containers_by_id_with_an_empty_cache(lxc_bed: Testbed, busybox_bundle: Path,
                                                                    tmp_path: Path, backend_name: str) -> None:
    cluster = lxc_bed
    def run(root: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / root), *args],
                              env=cluster.env(PVEOCI_BACKEND=backend_name), capture_output=True, text=True,
                              check=False)

    assert run("laptop", "create", "-b", str(busybox_bundle), "shared-id").returncode == 0
    other = run("desktop", "state", "shared-id")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["bundle"] == str(busybox_bundle)
    assert json.loads(run("desktop", "list", "-f", "json").stdout)[0]["id"] == "shared-id"
    assert run("laptop", "start", "shared-id").returncode == 0
    running = json.loads(run("desktop", "list", "-f", "json").stdout)[0]
    assert running["status"] == "running"
    assert running["pid"] == json.loads(run("laptop", "state", "shared-id").stdout)["pid"] > 0
    requests_before = len(cluster.pve.requests)
    run("desktop", "state", "shared-id")
    assert len(cluster.pve.requests) - requests_before == 1  # warm cache: one call


def test_state_answers_from_the_cache_when_asked_or_offline(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    oci("create", "-b", str(busybox_bundle), "--node", "pve1", "off")
    cached = json.loads(oci("state", "--cached", "off")[1])
    assert cached["pveoci"]["cached"] is True
    cluster.pve.set_node_offline("pve1")
    code, out, err = oci("state", "off")
    assert code == 0, err
    assert json.loads(out)["pveoci"]["cached"] is True
    assert "answering from the cache" in err


def _hook(tmp_path: Path, name: str, exit_code: int = 0) -> dict:  # type: ignore[type-arg]
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ncat > {tmp_path}/{name}.json\nexit {exit_code}\n")
    script.chmod(0o755)
    return {"path": str(script), "args": [name]}


def test_hooks_run_on_this_machine_with_the_state_on_stdin(oci, busybox_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["hooks"] = {"createRuntime": [_hook(tmp_path, "createRuntime")], "poststart": [_hook(tmp_path, "poststart")],
                       "poststop": [_hook(tmp_path, "poststop")]}
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    oci("create", "-b", str(busybox_bundle), "h1")
    assert json.loads((tmp_path / "createRuntime.json").read_text())["status"] == "created"
    oci("start", "h1")
    assert json.loads((tmp_path / "poststart.json").read_text())["status"] == "running"
    oci("delete", "-f", "h1")
    stopped = json.loads((tmp_path / "poststop.json").read_text())
    assert (stopped["id"], stopped["status"], stopped["pid"]) == ("h1", "stopped", 0)


def test_a_failing_create_runtime_hook_fails_the_create(oci, busybox_bundle: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        cluster: Testbed) -> None:
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["hooks"] = {"createRuntime": [_hook(tmp_path, "createRuntime", exit_code=3)]}
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    code, _, err = oci("create", "-b", str(busybox_bundle), "h2")
    assert code == 26
    assert last_line(err).startswith("pveoci: error: hooks.createRuntime[0]")
    assert "exited with 3" in last_line(err)
    assert cluster.pve.cts == []
