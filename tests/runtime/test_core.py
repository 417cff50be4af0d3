"""The runtime's use cases on the in-memory backend: the OCI state machine, VMIDs, templates, the cache."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from pveoci import errors, marker
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from pveoci.runtime.ids import id_tag
from tests.runtime.conftest import MakeRuntime, tiny_bundle


def test_create_makes_a_created_container_with_the_ownership_marker(rt: Runtime, memory: MemoryBackend,
                                                                     bundle: Path) -> None:
    state = rt.create("web", bundle)
    assert state.status == "created"
    assert (state.node, state.vmid) == ("pve1", 100)
    assert state.rootfs == str(bundle / "rootfs")
    ct = memory.cts[100]
    # Its init runs and waits: the state's pid is the init's, as runc's created container has its init's.
    assert (ct.status, ct.phase) == ("running", "waiting")
    assert state.pid == ct.pid
    assert ct.config["entrypoint"].startswith("/.pveoci/init --spec=")
    assert ct.config["arch"] == "amd64"
    found = marker.parse(ct.config["description"])
    assert found is not None
    assert found.id == "web"
    assert id_tag("web") in ct.tags
    assert memory.uploads == [("pve1", state.template.split("/")[1])]


def test_a_taken_id_is_refused_before_anything_is_made(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.create("web", bundle)
    with pytest.raises(errors.AlreadyExists, match="container with given ID already exists"):
        rt.create("web", bundle)
    assert list(memory.cts) == [100]


def test_create_retries_when_the_vmid_is_taken_meanwhile(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.fail("create", errors.ApiError("CT 100 already exists on node 'pve2'"), times=2)
    memory.fail("create", errors.ApiError("unable to create CT 100 - close (rename) atomic file "
                                          "'/etc/pve/nodes/pve1/lxc/100.conf' failed: File exists"))
    assert rt.create("web", bundle).vmid == 100
    assert memory.calls.count("create") == 4


def test_a_create_that_fails_leaves_nothing(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.fail("create", errors.TaskFailed("unable to create CT 100 - no space left on device",
                                            upid="UPID:x", exitstatus="error", log_tail=[]))
    with pytest.raises(errors.TaskFailed):
        rt.create("web", bundle)
    assert memory.cts == {}
    with pytest.raises(errors.NotFound):
        rt.state("web")


def test_vmid_range_picks_spread_free_ids_and_says_when_full(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                             tmp_path: Path) -> None:
    rt = make_runtime(vmid_range="9000-9002")
    vmids = {rt.create(f"c{i}", tiny_bundle(tmp_path / f"b{i}")).vmid for i in range(3)}
    assert vmids == {9000, 9001, 9002}
    with pytest.raises(errors.ConfigError, match="no free VMID left in vmid_range 9000-9002"):
        rt.create("c4", tiny_bundle(tmp_path / "b4"))


def test_a_forced_delete_of_a_container_that_stops_by_itself_meanwhile_deletes_it(
        rt: Runtime, memory: MemoryBackend, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` deletes its container when the process ends; the container stops on its own at that moment, after
    pveoci saw it running: Proxmox then refuses the stop ("CT 100 not running"), which must not fail the delete."""
    rt.create("web", bundle)
    rt.start("web")
    stop = memory.stop

    def process_ends_first(node: str, vmid: int) -> None:
        memory.exit(vmid, 0)
        stop(node, vmid)

    monkeypatch.setattr(memory, "stop", process_ends_first)
    rt.delete("web", force=True)
    assert memory.cts == {}


def test_a_stop_that_fails_while_the_container_runs_fails_the_delete(rt: Runtime, memory: MemoryBackend,
                                                                     bundle: Path) -> None:
    rt.create("web", bundle)
    rt.start("web")
    memory.fail("stop", errors.ApiError("CT 100 is locked (migrate)"))
    with pytest.raises(errors.ApiError, match="is locked"):
        rt.delete("web", force=True)
    assert list(memory.cts) == [100]


def test_start_kill_delete_follow_the_oci_states(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    created = rt.create("web", bundle)
    started = rt.start("web")
    assert started.status == "running"
    assert started.pid == created.pid  # the init's, on the node
    assert memory.signals == [("pve1", started.pid, "40")]
    with pytest.raises(errors.NotCreated):
        rt.start("web")
    with pytest.raises(errors.NotStopped, match="cannot delete container web that is not stopped: running"):
        rt.delete("web")
    rt.kill("web", "HUP")
    rt.kill("web", "term")
    assert memory.cts[100].signals == ["SIGHUP", "SIGTERM"]  # to the process, through its init
    assert rt.state("web").status == "running"  # the process decides what TERM means
    memory.exit(100, 143)
    assert rt.state("web").status == "stopped"
    with pytest.raises(errors.NotRunning, match="container not running"):
        rt.kill("web", "TERM")
    rt.delete("web")
    assert memory.cts == {}
    with pytest.raises(errors.NotFound, match="container does not exist"):
        rt.state("web")
    rt.delete("web", force=True)  # runc: -f on an unknown id succeeds


def test_a_failed_start_leaves_the_container_created_and_startable(rt: Runtime, memory: MemoryBackend,
                                                                  bundle: Path) -> None:
    rt.create("web", bundle)
    memory.fail("signal", errors.SshError("cannot reach node 'pve1' over SSH at root@10.0.0.1:22: "
                                          "Connection refused"))
    with pytest.raises(errors.SshError):
        rt.start("web")
    assert rt.state("web").status == "created"
    assert rt.start("web").status == "running"


@pytest.mark.parametrize("signal", ["KILL", "TERM", "9"])
def test_killing_a_created_container_stops_it(rt: Runtime, memory: MemoryBackend, bundle: Path, signal: str) -> None:
    pid = rt.create("web", bundle).pid
    rt.kill("web", signal)
    assert memory.signals[-1][1] == pid  # its init, which ends as the signal says
    assert rt.state("web").status == "stopped"


def test_kill_of_a_running_process_sends_kill_to_the_process_itself(rt: Runtime, memory: MemoryBackend,
                                                                   bundle: Path) -> None:
    rt.run("web", bundle)
    rt.kill("web", "KILL")
    assert memory.cts[100].exit_status == 137
    assert rt.state("web").status == "stopped"


class SlowLogins(MemoryBackend):
    """A cluster whose answer to status/current comes only once the node's login is under way, as when both
    take a round trip or more: a kill that asks first and logs in afterwards waits for ever (here: fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.logging_in = threading.Event()
        self.reached: list[str] = []

    def reach(self, node: str) -> None:
        self.reached.append(node)
        self.logging_in.set()

    def status(self, node: str, vmid: int):  # type: ignore[no-untyped-def]
        if self.signals and not self.logging_in.wait(5):
            raise AssertionError("the cluster was asked before the login to the node began")
        return super().status(node, vmid)


def test_kill_logs_in_to_the_node_while_it_asks_the_cluster(make_runtime: MakeRuntime, bundle: Path) -> None:
    slow = SlowLogins()
    rt = make_runtime(slow)
    rt.run("web", bundle)          # its init got the start signal: the cache knows node, pid and status
    slow.logging_in.clear()
    rt.kill("web", "USR1")
    assert slow.reached == ["pve1"]
    assert slow.signals[-1][2] == "SIGUSR1"
    assert slow.cts[100].signals == ["SIGUSR1"]   # forwarded by the init to the process
    rt.kill("web", "KILL")
    assert rt.state("web").status == "stopped"
    with pytest.raises(errors.NotRunning):
        rt.kill("web", "TERM")     # stopped, as the cache knows: nobody logs in for it
    assert slow.reached == ["pve1", "pve1"]


def test_pause_and_resume(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("web", bundle)
    rt.pause("web")
    assert rt.state("web").status == "paused"
    assert memory.cts[100].frozen
    with pytest.raises(errors.Paused):
        rt.kill("web", "HUP")
    with pytest.raises(errors.NotRunning):
        rt.pause("web")
    rt.resume("web")
    assert rt.state("web").status == "running"
    with pytest.raises(errors.NotPaused):
        rt.resume("web")


def test_run_deletes_what_cannot_start(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.fail("signal", errors.SshError("SSH login to node 'pve1' as root failed: Authentication failed."))
    with pytest.raises(errors.SshError):
        rt.run("web", bundle)
    assert memory.cts == {}


def test_exec_returns_the_status_and_writes_the_callers_streams(make_runtime: MakeRuntime, bundle: Path) -> None:
    def program(node: str, vmid: int, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        return 3, b"out:" + stdin, b"err:" + " ".join(argv).encode()

    rt = make_runtime(MemoryBackend(programs=program))
    rt.run("web", bundle)
    out, err = io.BytesIO(), io.BytesIO()
    assert rt.exec("web", ["echo", "hi"], stdin=io.BytesIO(b"in"), stdout=out, stderr=err) == 3
    assert (out.getvalue(), err.getvalue()) == (b"out:in", b"err:/.pveoci/init exec -- echo hi")
    err = io.BytesIO()
    rt.exec("web", ["env"], env=["A=1"], cwd="/tmp", user="1000:1000", stderr=err)
    assert err.getvalue() == b"err:/.pveoci/init exec -e A=1 --cwd /tmp --user 1000:1000 -- env"
    rt.kill("web", "KILL")
    with pytest.raises(errors.NotRunning, match="cannot exec in a stopped container"):
        rt.exec("web", ["true"])


def test_list_with_an_empty_cache_reads_no_config(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                                tmp_path: Path) -> None:
    first = make_runtime()
    for i in range(5):
        first.create(f"c{i}", tiny_bundle(tmp_path / f"b{i}"))
    other = make_runtime(root=tmp_path / "other-cache")
    memory.calls.clear()
    states = other.list()
    assert [s.id for s in states] == [f"c{i}" for i in range(5)]
    assert memory.calls.count("guests") == 1
    assert memory.calls.count("config") == 0  # the cards in the tags say what the descriptions would
    memory.calls.clear()
    assert [s.id for s in other.list()] == [f"c{i}" for i in range(5)]
    assert memory.calls == ["guests"]


def test_two_profiles_keep_their_containers_of_the_same_id_apart(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    lab = make_runtime(MemoryBackend(), profile="lab")
    prod = make_runtime(MemoryBackend(), profile="prod")
    lab.create("web", tiny_bundle(tmp_path / "a"))
    prod.run("web", tiny_bundle(tmp_path / "b"))
    assert lab.state("web", cached=True).status == "created"
    assert prod.state("web", cached=True).status == "running"


def test_one_runtime_is_safe_across_threads(rt: Runtime, memory: MemoryBackend, tmp_path: Path) -> None:
    bundles = [tiny_bundle(tmp_path / f"b{i}") for i in range(8)]
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            rt.create(f"t{i}", bundles[i])
            rt.start(f"t{i}")
            assert rt.state(f"t{i}").status == "running"
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(s.id for s in rt.list()) == [f"t{i}" for i in range(8)]
    assert len({ct.vmid for ct in memory.cts.values()}) == 8


@pytest.mark.parametrize("root", [True, False])
def test_bind_mounts_are_planned_only_when_the_backend_acts_as_root(make_runtime: MakeRuntime, tmp_path: Path,
                                                                    root: bool) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"] = [{"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]}]
    (bundle / "config.json").write_text(json.dumps(spec))
    backend = MemoryBackend(nodes=("pve1",), root=root)
    state = make_runtime(backend).create("web", bundle)
    assert ("mp0" in backend.cts[state.vmid].config) is root
    if root:
        assert backend.cts[state.vmid].config["mp0"] == "/srv/data,mp=/data"


def test_gc_in_another_thread_leaves_a_create_under_way_alone(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                               bundle: Path) -> None:
    """One process, two threads: a create waits inside Proxmox's create while the other thread runs gc (which
    rolls back the creates of dead processes): it is not taken for abandoned, and it ends well."""
    maker, cleaner = make_runtime(), make_runtime()   # one cache, as two threads of a script would share it
    inside, go_on = threading.Event(), threading.Event()
    real_create = memory.create

    def slow_create(node: str, vmid: int, options: dict[str, object]) -> None:
        inside.set()
        go_on.wait(30)
        real_create(node, vmid, options)

    memory.create = slow_create  # type: ignore[method-assign]
    failures: list[BaseException] = []

    def make() -> None:
        try:
            maker.create("busy", bundle)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    assert inside.wait(30)
    report = cleaner.gc()
    go_on.set()
    thread.join(60)
    assert failures == []
    assert "busy" not in report.rolled_back
    assert maker.state("busy").status == "created"
    assert cleaner.gc().rolled_back == ()


def test_logs_of_a_container_whose_process_ends_just_then_are_read_as_a_stopped_ones(make_runtime: MakeRuntime,
                                                                                    bundle: Path) -> None:
    """Seen on the bed: the process ended between the state's read and the exec; lxc-attach could not enter the
    container any more, and its complaint came out as the container's stderr, with exit 1."""
    memory: list[MemoryBackend] = []

    def program(node: str, vmid: int, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        memory[0].exit(vmid, 3)   # the process ends now
        return 1, b"", b"lxc-attach: 100: ../src/lxc/attach.c: Failed to enter namespaces\n"

    memory.append(MemoryBackend(programs=program))
    rt = make_runtime(memory[0])
    rt.run("job", bundle)
    out, err = io.BytesIO(), io.BytesIO()
    assert rt.logs("job", stdout=out, stderr=err, follow=True) == 3
    assert (out.getvalue(), err.getvalue()) == (b"", b"")
