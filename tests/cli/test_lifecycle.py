"""The lifecycle with OCI semantics, ported from the runtime-tools validation cases (create, state, start, kill,
kill_no_effect, delete, pidfile, misc_props).

What the runtime decides (states, refusals, the cache, hooks) runs once, in this process on the in-memory
backend: each refusal is the typed error the command line prints as `pveoci: error: <message>` with its exit
code (pveoci.cli.main). What only a real container shows (its process not started by create, a shell that
ignores PVE's halt signal, the init's pid) runs on the bed with real LXC, through the real command line.
How each backend does its part is the contract suite's (tests/contract)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from tests.inmemory import MakeRuntime, tiny_bundle
from tests.oci import state_schema
from tests.testbed import Testbed

# ------------------------------------------------------------------------------------------ in memory

@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return tiny_bundle(tmp_path / "bundle")


def refused(call: Callable[[], object], code: int, message: str) -> None:
    """The call fails as the command line says it: `pveoci: error: MESSAGE`, exit CODE."""
    with pytest.raises(errors.PveociError) as err:
        call()
    assert (err.value.exit_code, err.value.message) == (code, message)


def test_create(rt: Runtime, bundle: Path, memory: MemoryBackend) -> None:
    assert rt.create("c1", bundle).status == "created"
    assert rt.state("c1").status == "created"
    refused(lambda: rt.create("c1", bundle), 9, "container with given ID already exists")
    assert len(memory.cts) == 1


def test_state_validates_against_the_runtime_spec_schema(rt: Runtime, bundle: Path) -> None:
    rt.create("s1", bundle)
    data = rt.state("s1").to_json()
    state_schema().validate(data)
    assert data["id"] == "s1"
    assert data["bundle"] == str(bundle)
    assert data["ociVersion"] == "1.3.0"
    assert set(data["pveoci"]) == {"cluster", "node", "vmid", "template"}
    assert json.dumps(rt.state("s1").to_json()) == json.dumps(data)  # stable between calls


def test_state_of_an_unknown_container(rt: Runtime) -> None:
    refused(lambda: rt.state("nope"), 8, "container does not exist")


@pytest.mark.parametrize(("cid", "message"), [("", "container id cannot be empty"),
                                               ("bad/id", "invalid container ID format"),
                                               ("x" * 1025, "invalid container ID format")])
def test_bad_ids(rt: Runtime, cid: str, message: str) -> None:
    refused(lambda: rt.state(cid), 13, message)


def test_containerd_style_ids_work(rt: Runtime, bundle: Path) -> None:
    cid = "0123456789abcdef" * 4
    rt.create(cid, bundle)
    assert rt.state(cid).id == cid


def test_start(rt: Runtime, bundle: Path) -> None:
    rt.create("st", bundle)
    rt.start("st")
    running = rt.state("st")
    assert running.status == "running"
    assert running.pid > 0
    refused(lambda: rt.start("st"), 22, "cannot start a container that is not created (it is running)")
    refused(lambda: rt.start("nope"), 8, "container does not exist")


def test_kill_accepts_runc_signal_spellings(rt: Runtime, bundle: Path) -> None:
    rt.run("k2", bundle)
    rt.kill("k2", "9")
    assert rt.state("k2").status == "stopped"
    refused(lambda: rt.kill("k2", "SIGNOPE"), 13, "unknown signal: SIGNOPE")


def test_kill_no_effect(rt: Runtime, bundle: Path) -> None:
    rt.run("kn", bundle)
    rt.kill("kn", "KILL")
    before = rt.state("kn").to_json()
    refused(lambda: rt.kill("kn", "TERM"), 21, "container not running")
    assert rt.state("kn").to_json() == before


def test_delete(rt: Runtime, bundle: Path, memory: MemoryBackend) -> None:
    rt.run("d1", bundle)
    refused(lambda: rt.delete("d1"), 25, "cannot delete container d1 that is not stopped: running")
    rt.kill("d1", "KILL")
    rt.delete("d1")
    assert memory.cts == {}
    refused(lambda: rt.state("d1"), 8, "container does not exist")
    refused(lambda: rt.delete("d1"), 8, "container does not exist")
    rt.delete("d1", force=True)  # -f on an unknown id succeeds, as runc's


def test_delete_force_stops_a_running_container(rt: Runtime, bundle: Path, memory: MemoryBackend) -> None:
    rt.run("d2", bundle)
    rt.delete("d2", force=True)
    assert memory.cts == {}


def test_delete_of_a_created_container(rt: Runtime, bundle: Path, memory: MemoryBackend) -> None:
    """runtime-spec: deleting a container that is not stopped MUST be an error, `created` included (runc 1.1 deletes
    one; runtime-tools' `delete` test holds runtimes to the spec); --force deletes it."""
    rt.create("d3", bundle)
    with pytest.raises(errors.NotStopped, match="cannot delete container d3 that is not stopped: created") as caught:
        rt.delete("d3")
    assert caught.value.exit_code == errors.NotStopped.exit_code
    assert rt.state("d3").status == "created"   # nothing changed
    rt.delete("d3", force=True)
    assert memory.cts == {}
    assert rt.create("d3", bundle).status == "created"  # the id can be reused


def test_misc_props(rt: Runtime, bundle: Path) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["annotations"] = {"org.example.key": "value", "org.opencontainers.image.stopSignal": "SIGQUIT"}
    (bundle / "config.json").write_text(json.dumps(config))
    rt.create("m1", bundle)
    data = rt.state("m1").to_json()
    assert data["annotations"] == {"org.example.key": "value", "org.opencontainers.image.stopSignal": "SIGQUIT"}
    assert data["created"].endswith("Z")
    # Later edits to config.json do not affect the container.
    config["annotations"] = {"changed": "yes"}
    (bundle / "config.json").write_text(json.dumps(config))
    assert rt.state("m1").annotations["org.example.key"] == "value"


def test_list(rt: Runtime, bundle: Path) -> None:
    rt.create("l1", bundle)
    rt.run("l2", bundle)
    listed = rt.list()
    assert [(s.id, s.status) for s in listed] == [("l1", "created"), ("l2", "running")]
    for item in listed:
        state_schema().validate(item.to_json())


def test_any_workstation_finds_containers_by_id_with_an_empty_cache(make_runtime: MakeRuntime, bundle: Path,
                                                                    memory: MemoryBackend, tmp_path: Path) -> None:
    laptop, desktop = make_runtime(root=tmp_path / "laptop"), make_runtime(root=tmp_path / "desktop")
    laptop.create("shared-id", bundle)
    assert desktop.state("shared-id").bundle == str(bundle)
    assert [s.id for s in desktop.list()] == ["shared-id"]
    laptop.start("shared-id")
    (running,) = desktop.list()
    assert running.status == "running"
    assert running.pid == laptop.state("shared-id").pid > 0
    calls_before = len(memory.calls)
    desktop.state("shared-id")
    assert len(memory.calls) - calls_before == 1  # warm cache: one call


def test_state_answers_from_the_cache_when_asked_or_offline(rt: Runtime, bundle: Path, memory: MemoryBackend,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    rt.create("off", bundle, node="pve1")
    calls_before = len(memory.calls)
    assert rt.state("off", cached=True).to_json()["pveoci"]["cached"] is True
    assert len(memory.calls) == calls_before  # the cluster is not asked
    memory.nodes_online["pve1"] = False
    with caplog.at_level(logging.WARNING, logger="pveoci"):
        answered = rt.state("off")
    assert answered.cached
    assert "answering from the cache" in caplog.text


def _hook(tmp_path: Path, name: str, exit_code: int = 0) -> dict:  # type: ignore[type-arg]
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ncat > {tmp_path}/{name}.json\nexit {exit_code}\n")
    script.chmod(0o755)
    return {"path": str(script), "args": [name]}


def test_hooks_run_on_this_machine_with_the_state_on_stdin(rt: Runtime, bundle: Path, tmp_path: Path) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["hooks"] = {"createRuntime": [_hook(tmp_path, "createRuntime")], "poststart": [_hook(tmp_path, "poststart")],
                       "poststop": [_hook(tmp_path, "poststop")]}
    (bundle / "config.json").write_text(json.dumps(config))
    rt.create("h1", bundle)
    assert json.loads((tmp_path / "createRuntime.json").read_text())["status"] == "created"
    rt.start("h1")
    assert json.loads((tmp_path / "poststart.json").read_text())["status"] == "running"
    rt.delete("h1", force=True)
    stopped = json.loads((tmp_path / "poststop.json").read_text())
    assert (stopped["id"], stopped["status"], stopped["pid"]) == ("h1", "stopped", 0)


def test_a_failing_create_runtime_hook_fails_the_create(rt: Runtime, bundle: Path, tmp_path: Path,
                                                        memory: MemoryBackend) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["hooks"] = {"createRuntime": [_hook(tmp_path, "createRuntime", exit_code=3)]}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(errors.HookFailed) as err:
        rt.create("h2", bundle)
    assert err.value.exit_code == 26
    assert err.value.message.startswith("hooks.createRuntime[0]")
    assert "exited with 3" in err.value.message
    assert memory.cts == {}


# ------------------------------------------------------------------------------- real containers

@pytest.fixture
def oci(lxc_bed: Testbed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`pveoci --root <private cache> ...` -> (exit code, stdout, stderr), against the bed with real containers."""
    def run(*args: str) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=lxc_bed.env(), capture_output=True, text=True, check=False, timeout=180)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def state(oci, cid: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    code, out, err = oci("state", cid)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.bed
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


@pytest.mark.bed
def test_pidfile_and_kill(oci, busybox_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "run.pid"
    code, _, err = oci("run", "-d", "-b", str(busybox_bundle), "--pid-file", str(pid_file), "k1")
    assert code == 0, err
    running = state(oci, "k1")
    assert pid_file.read_text() == str(running["pid"])  # no trailing newline
    assert Path(f"/proc/{running['pid']}").exists()  # the init's pid on its node (the bed's nodes are here)
    code, _, err = oci("kill", "--timeout", "1", "k1", "TERM")  # the shell ignores PVE's halt signal: stopped
    assert code == 0, err
    assert state(oci, "k1")["status"] == "stopped"
    assert state(oci, "k1")["pid"] == 0
