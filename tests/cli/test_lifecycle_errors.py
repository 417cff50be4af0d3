"""Every lifecycle error path: one line on stderr, its documented exit code, and nothing half-made.

The runtime's refusals run once, in this process on the in-memory backend: each is the typed error the command
line prints as `pveoci: error: <message>` with its exit code (pveoci.cli.main). What needs the real thing (a
cluster without quorum, an API token's privileges, SSH that fails after the API worked) runs on the bed through
the real command line. How each backend refuses is the contract suite's (tests/contract)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pveoci
from pveoci import errors, settings
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from pveoci.settings import Profile, Settings
from tests.inmemory import tiny_bundle
from tests.testbed import Testbed

# ------------------------------------------------------------------------------------------ in memory


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return tiny_bundle(tmp_path / "bundle")


def refused(call: Callable[[], object], code: int, message: str | None = None) -> str:
    """The call fails as the command line says it: `pveoci: error: MESSAGE`, exit CODE; the message."""
    with pytest.raises(errors.PveociError) as err:
        call()
    assert err.value.exit_code == code, err.value.message
    if message is not None:
        assert err.value.message == message
    return err.value.message


#: What changes a cluster (the in-memory backend's calls of these never happen before a refusal).
CHANGES = {"create", "set_options", "start", "stop", "shutdown", "destroy", "migrate", "upload", "begin_upload",
           "upload_delta", "remove_template", "signal", "freeze", "thaw"}


def test_create_from_a_missing_bundle(rt: Runtime, memory: MemoryBackend, tmp_path: Path) -> None:
    refused(lambda: rt.create("x", tmp_path / "nowhere"), 18, f"bundle {tmp_path / 'nowhere'} does not exist")
    assert memory.cts == {}


def test_strict_create_refuses_before_any_change(rt: Runtime, memory: MemoryBackend, tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path / "caps", capabilities={"bounding": ["CAP_SYS_MODULE"]})
    assert "process.capabilities" in refused(lambda: rt.create("x", bundle, strict=True), 19)
    assert CHANGES.isdisjoint(memory.calls)


def test_create_on_an_offline_node(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.nodes_online["pve2"] = False
    refused(lambda: rt.create("x", bundle, node="pve2"), 12, "node 'pve2' is offline")
    assert memory.cts == {}


def test_create_with_an_unknown_transport(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    refused(lambda: rt.create("x", bundle, transport="ftp"), 3, "unknown transport 'ftp' (one of: sftp, api)")
    assert memory.cts == {}


@pytest.mark.parametrize("operation", [
    lambda rt: rt.start("ghost"), lambda rt: rt.kill("ghost"), lambda rt: rt.delete("ghost"),
    lambda rt: rt.pause("ghost"), lambda rt: rt.resume("ghost"), lambda rt: rt.exec("ghost", ["true"]),
    lambda rt: rt.state("ghost"), lambda rt: rt.exec("ghost", ["sh", "-c", "exit 3"], env=["A=1"]),
], ids=["start", "kill", "delete", "pause", "resume", "exec", "state", "exec-env"])
def test_operations_on_unknown_ids(rt: Runtime, operation: Callable[[Runtime], object]) -> None:
    refused(lambda: operation(rt), 8, "container does not exist")


def test_operations_in_the_wrong_state(rt: Runtime, bundle: Path) -> None:
    rt.create("w", bundle)
    refused(lambda: rt.pause("w"), 21, "container not running")
    refused(lambda: rt.resume("w"), 24, "container not paused")
    assert rt.exec("w", ["true"]) == 0  # as runc: exec works in a created container (its init runs)
    rt.kill("w", "KILL")
    assert rt.state("w").status == "stopped"
    refused(lambda: rt.exec("w", ["true"]), 21, "cannot exec in a stopped container")


def test_kill_of_a_created_container_makes_it_stopped(rt: Runtime, bundle: Path) -> None:
    rt.create("kc", bundle)
    rt.kill("kc")
    assert rt.state("kc").status == "stopped"
    refused(lambda: rt.start("kc"), 22, "cannot start a container that is not created (it is stopped)")


def test_unwritable_cache_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    message = refused(lambda: pveoci.connect(settings=Settings(Profile(name="mem"), tmp_path / "none.toml"),
                                      root=blocker / "sub", backend=MemoryBackend()), 3)
    assert message.startswith(f"cannot open the cache in {blocker / 'sub'}")


def test_api_down_is_a_connect_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('default_profile = "x"\n\n[profiles.x]\nhost = "127.0.0.1"\ntoken_id = "pveoci@pve!t"\n')
    loaded = settings.load(config_path=config, env={"PVEOCI_TOKEN_SECRET": "s"},
                           overrides={"port": 1, "retries": 0, "backend": "api"})
    rt = pveoci.connect(settings=loaded, root=tmp_path / "cache")
    try:
        assert refused(rt.list, 4).endswith(":1: connection refused")
    finally:
        rt.close()


# ------------------------------------------------------------------------------------------- on the bed

@pytest.fixture
def oci(cluster: Testbed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The command line against the bed, over the API."""
    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=cluster.env(**(env or {})), capture_output=True, text=True, check=False,
                              timeout=180)
        assert "Traceback" not in proc.stderr
        return proc.returncode, proc.stdout, proc.stderr
    return run


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("pveoci: error: ")
    assert all(line.startswith("pveoci: warning: ") for line in lines[:-1])
    return lines[-1][len("pveoci: error: "):]


@pytest.mark.bed
def test_create_without_quorum(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.lose_quorum()
    code, _, err = oci("create", "-b", str(busybox_bundle), "x")
    assert code == 11
    assert error_line(err).startswith("the cluster has no quorum")
    assert cluster.pve.cts == []
    assert oci("list", "-f", "json")[1] == "[]\n"


@pytest.mark.bed
def test_create_without_the_privilege_to_allocate(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    from tests.testbed import PVEOCI_PRIVILEGES

    secret = cluster.add_token("weak@pve!t", [p for p in PVEOCI_PRIVILEGES if p != "VM.Allocate"])
    code, _, err = oci("--token-id", "weak@pve!t", "create", "-b", str(busybox_bundle), "x",
                       env={"PVEOCI_TOKEN_SECRET": secret})
    assert code == 7
    assert error_line(err).startswith("permission denied for weak@pve!t")
    assert cluster.pve.cts == []


@pytest.mark.bed  # the pct backend without SSH: tests/cli/test_backends.py
def test_run_whose_start_fails_leaves_nothing(oci, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    assert oci("template", "push", "-b", str(busybox_bundle), "--node", "pve1")[0] == 0
    # The API works, SSH to the node does not: the start signal cannot be sent.
    code, _, err = oci("run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "rf", env={"PVEOCI_SSH_PORT": "1"})
    assert code == 16
    assert error_line(err).startswith("cannot reach node 'pve1' over SSH")
    assert cluster.pve.cts == []
    assert oci("state", "rf")[0] == 8
