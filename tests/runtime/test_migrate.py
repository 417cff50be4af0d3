"""Migrations on the in-memory cluster: the preflight refuses before anything changes, the process runs again
after a restart-mode move, HA-managed containers go through HA, and an unfinished move is finished later."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import GIB, MemoryBackend
from pveoci.runtime import Runtime
from pveoci.runtime.ids import TAG_MOVING, TAG_PAUSED, TAG_STARTED
from tests.runtime.conftest import THREE, MakeRuntime

NODES = THREE


def test_a_running_container_moves_in_restart_mode_and_runs_there(rt: Runtime, memory: MemoryBackend,
                                                                  bundle: Path) -> None:
    rt.run("web", bundle)
    ct = memory.cts[100]
    old_pid = ct.pid
    moved = rt.migrate("web", "pve2")
    assert (moved.result, moved.mode, moved.source, moved.target) == ("moved", "restart", "pve1", "pve2")
    assert moved.state is not None
    assert (moved.state.node, moved.state.status) == ("pve2", "running")
    assert (ct.node, ct.phase) == ("pve2", "running")  # its init was told to start the process again
    assert ct.pid != old_pid
    assert memory.signals[-1] == ("pve2", ct.pid, "40")
    assert TAG_MOVING not in ct.tags
    assert TAG_STARTED in ct.tags
    assert rt.state("web").node == "pve2"
    assert rt.state("web", cached=True).node == "pve2"  # the cache followed
    assert {c.name for c in moved.checks} >= {"target", "container", "ha", "proxmox", "storage", "template"}


def test_a_created_container_waits_again_after_its_move(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.create("web", bundle)
    moved = rt.migrate("web", "pve3")
    assert moved.state is not None
    assert (moved.state.node, moved.state.status) == ("pve3", "created")
    assert memory.cts[100].phase == "waiting"
    assert [s for s in memory.signals if s[2] == "40"] == []


def test_a_stopped_container_moves_offline(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("job", bundle)
    memory.exit(100, 0)
    moved = rt.migrate("job", "pve2")
    assert (moved.mode, moved.result) == ("offline", "moved")
    assert rt.state("job").status == "stopped"


def test_a_paused_container_is_paused_again_there(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("web", bundle)
    rt.pause("web")
    moved = rt.migrate("web", "pve2")
    assert moved.state is not None
    assert moved.state.status == "paused"
    assert memory.cts[100].frozen
    assert memory.cts[100].phase == "running"
    assert TAG_PAUSED in memory.cts[100].tags


def test_an_offline_target_is_refused_before_any_change(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("web", bundle)
    memory.nodes_online["pve2"] = False
    before = len(memory.calls)
    with pytest.raises(errors.NodeOffline, match="node 'pve2' is offline: web stays where it is"):
        rt.migrate("web", "pve2")
    with pytest.raises(errors.NotFound, match="node 'pve9' is not in the cluster"):
        rt.migrate("web", "pve9")
    assert {"migrate", "set_options"}.isdisjoint(memory.calls[before:])  # not even a tag was set
    assert memory.cts[100].node == "pve1"


@pytest.mark.parametrize(("setup", "why"), [
    (lambda m: m.maintenance.add("pve2"), "pve2 is in maintenance"),
    (lambda m: m.ha_blocked.update(pve2="HA rules: ct:101 (resource-affinity)"),
     "Proxmox does not allow pve2: HA rules: ct:101 (resource-affinity)"),
    (lambda m: m.cts[100].config.update(mp0="/srv/data,mp=/data"),
     "mp0 binds /srv/data of this node (mark it shared=1 if every node has it)"),
    (lambda m: m.node_storages.update(pve2=m._storages()[:1]),
     "storage 'local-lvm' of its volumes is not usable on pve2"),
    (lambda m: setattr(m.cts[100], "ha_state", "error"), "HA resource ct:100 is in state error: HA deals with it"),
])
def test_a_disallowed_move_is_refused_before_any_change(rt: Runtime, memory: MemoryBackend, bundle: Path,
                                                        setup, why: str) -> None:  # type: ignore[no-untyped-def]
    rt.run("web", bundle)
    memory.cts[100].config["rootfs"] = "local-lvm:vm-100-disk-0,size=4G"
    memory.cts[100].ha_state = "started"
    setup(memory)
    before = list(memory.calls)
    with pytest.raises(errors.MoveRefused) as caught:
        rt.migrate("web", "pve2")
    assert caught.value.message == f"cannot move web to pve2: {why}"
    assert caught.value.exit_code == 30
    assert [c.detail for c in caught.value.checks if c.status == "fail"] == [why]
    assert {"migrate", "set_options"}.isdisjoint(memory.calls[len(before):])
    assert memory.cts[100].node == "pve1"


def test_a_running_container_is_not_stopped_unless_restart_is_allowed(rt: Runtime, memory: MemoryBackend,
                                                                      bundle: Path) -> None:
    rt.run("web", bundle)
    with pytest.raises(errors.MoveRefused, match="containers move only in restart mode"):
        rt.migrate("web", "pve2", restart=False)


def test_a_dry_run_says_what_would_happen_and_changes_nothing(rt: Runtime, memory: MemoryBackend,
                                                              bundle: Path) -> None:
    rt.run("web", bundle)
    memory.cts[100].config["dev0"] = "/dev/ttyUSB0"
    plan = rt.migrate("web", "pve3", dry_run=True)
    assert (plan.result, plan.mode, plan.target) == ("would move", "restart", "pve3")
    assert [c.detail for c in plan.checks if c.status == "warn"] == ["dev0 passes /dev/ttyUSB0 through: the "
                                                                    "target must have it"]
    assert "migrate" not in memory.calls
    assert memory.cts[100].node == "pve1"


def test_auto_moves_it_where_placement_puts_it(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("web", bundle)
    memory.load = {"pve2": {"mem": 6 * GIB}, "pve3": {"mem": 1 * GIB}}
    moved = rt.migrate("web")
    assert moved.target == "pve3"
    assert rt.migrate("web", "pve3").result == "unchanged"


def test_an_ha_managed_container_moves_through_ha(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("web", bundle)
    memory.cts[100].ha_state = "started"
    lines: list[str] = []

    class Notes:
        def note(self, message: str) -> None:
            lines.append(message)

        def transfer(self, name: str, total: int | None):  # type: ignore[no-untyped-def]
            return lambda n: None

        def done(self, name: str) -> None:
            return None

    moved = rt.migrate("web", "pve2", progress=Notes())
    assert (moved.mode, moved.result) == ("ha", "moved")
    assert "Requesting HA migration for CT 100 to node pve2" in lines
    assert memory.cts[100].phase == "running"


def test_a_move_left_unfinished_is_finished_by_gc(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    """The migration happened, but the command that asked for it was killed before it started the process."""
    rt.run("web", bundle)
    ct = memory.cts[100]
    memory.set_options("pve1", 100, {"tags": ";".join([*ct.tags, TAG_MOVING])})
    memory.migrate("pve1", 100, "pve2", restart=True)
    assert ct.phase == "waiting"
    rt.gc()
    assert ct.phase == "running"
    assert TAG_MOVING not in ct.tags
    rt.gc()  # twice is harmless: the start signal goes only to an init that waits
    assert [s for s in memory.signals if s[2] == "40" and s[0] == "pve2"] == [("pve2", ct.pid, "40")]


def test_a_failed_move_leaves_the_container_running_where_it_was(rt: Runtime, memory: MemoryBackend,
                                                                 bundle: Path) -> None:
    rt.run("web", bundle)
    memory.fail("migrate", errors.TaskFailed("migration aborted", upid="UPID:x", exitstatus="error", log_tail=[]))
    with pytest.raises(errors.TaskFailed):
        rt.migrate("web", "pve2")
    assert (memory.cts[100].node, memory.cts[100].phase) == ("pve1", "running")
    assert TAG_MOVING not in memory.cts[100].tags


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime()
