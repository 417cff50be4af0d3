"""The lifecycle contract: what each change does to a container, and how each backend refuses, in typed errors
the runtime relies on (NotFound for a container that is not there, the race error for a VMID taken, ...)."""

from __future__ import annotations

import pytest

from pveoci import errors
from pveoci.backends.base import Backend
from pveoci.runtime.create import _template_missing
from pveoci.runtime.vmids import is_race
from tests.contract.conftest import World


def test_a_created_container_is_stopped_with_the_options_it_was_given(world: World, backend: Backend) -> None:
    vmid = world.create(tags="web;Pveoci", description="line one\nline two $(x) 'y'")
    status = backend.status("pve1", vmid)
    assert (status.vmid, status.node, status.status, status.pid) == (vmid, "pve1", "stopped", None)
    config = backend.config("pve1", vmid)
    assert (config["hostname"], int(config["memory"])) == (f"ct{vmid}", 256)
    assert config["description"].rstrip("\n") == "line one\nline two $(x) 'y'"
    assert config["tags"] == "pveoci;web"  # as PVE keeps them: lower case, sorted
    assert "ostemplate" not in config
    (listed,) = [g for g in backend.guests() if g.vmid == vmid]
    assert (listed.node, listed.status, listed.tags) == ("pve1", "stopped", ("pveoci", "web"))
    assert backend.configs([listed])[vmid]["hostname"] == f"ct{vmid}"
    assert backend.statuses([listed])[vmid].status == "stopped"


def test_set_options_changes_the_config(world: World, backend: Backend) -> None:
    vmid = world.create()
    backend.set_options("pve1", vmid, {"tags": "B;a", "description": "changed"})
    config = backend.config("pve1", vmid)
    assert (config["tags"], config["description"].rstrip("\n")) == ("a;b", "changed")


def test_set_options_changes_a_running_containers_limits_at_once(world: World, backend: Backend) -> None:
    # `pveoci update`: what Proxmox applies to a running container as its config changes (no pending change).
    vmid = world.running()
    backend.set_options("pve1", vmid, {"memory": 300, "swap": 64, "cores": 2, "cpulimit": 1.5, "cpuunits": 79})
    config = backend.config("pve1", vmid)
    assert {k: float(config[k]) for k in ("memory", "swap", "cores", "cpulimit", "cpuunits")} == {
        "memory": 300, "swap": 64, "cores": 2, "cpulimit": 1.5, "cpuunits": 79}
    backend.set_options("pve1", vmid, {"memory": 256, "delete": "cpulimit,cpuunits"})  # back to PVE's defaults
    config = backend.config("pve1", vmid)
    assert (int(config["memory"]), "cpulimit" in config, "cpuunits" in config) == (256, False, False)
    assert backend.status("pve1", vmid).status == "running"


def test_a_vmid_taken_is_the_race_the_runtime_retries(world: World, backend: Backend) -> None:
    vmid = world.create()
    world.template("pve2")
    for node in ("pve1", "pve2"):
        with pytest.raises(errors.PveociError) as err:
            world.create(node, vmid=vmid)
        assert is_race(err.value), err.value.message
    assert [g.node for g in backend.guests() if g.vmid == vmid] == ["pve1"]
    assert backend.next_vmid() != vmid


def test_a_create_from_a_template_the_node_lacks_fails_in_the_words_the_runtime_knows(
        world: World, backend: Backend) -> None:
    vmid = backend.next_vmid()
    with pytest.raises(errors.TaskFailed) as err:
        backend.create("pve1", vmid, {"ostemplate": "local:vztmpl/missing.tar.zst", "hostname": "x",
                                      "rootfs": "local-lvm:1"})
    assert _template_missing(err.value, "local:vztmpl/missing.tar.zst"), err.value.message
    assert vmid not in {g.vmid for g in backend.guests()}


def test_start_and_stop(world: World, backend: Backend) -> None:
    vmid = world.create()
    backend.start("pve1", vmid)
    running = backend.status("pve1", vmid)
    assert running.status == "running"
    assert isinstance(running.pid, int)
    assert running.pid > 0
    assert backend.statuses([running])[vmid].pid == running.pid
    backend.stop("pve1", vmid)
    stopped = backend.status("pve1", vmid)
    assert (stopped.status, stopped.pid) == ("stopped", None)


def test_a_status_reports_the_containers_figures(world: World, backend: Backend) -> None:
    mib = 1024 * 1024
    vmid = world.create(swap=128)
    stopped = backend.status("pve1", vmid)
    assert (stopped.maxmem, stopped.maxswap, stopped.mem, stopped.swap, stopped.uptime) == (256 * mib, 128 * mib,
                                                                                            0, 0, 0)
    backend.start("pve1", vmid)
    running = backend.status("pve1", vmid)
    assert (running.maxmem, running.maxswap) == (256 * mib, 128 * mib)
    assert 0 < running.mem <= running.maxmem   # what its processes hold: more than nothing, within its limit
    assert running.cpus >= 1
    assert running.maxdisk > 0
    assert running.uptime >= 0
    assert min(running.netin, running.netout, running.diskread, running.diskwrite, running.swap) >= 0
    backend.stop("pve1", vmid)


def test_start_of_a_running_container_is_refused(world: World, backend: Backend) -> None:
    vmid = world.running()
    with pytest.raises(errors.ApiError, match="already running"):
        backend.start("pve1", vmid)
    assert backend.status("pve1", vmid).status == "running"


def test_stop_and_shutdown_of_a_stopped_container_are_refused(world: World, backend: Backend) -> None:
    vmid = world.create()
    with pytest.raises(errors.ApiError, match="not running"):
        backend.stop("pve1", vmid)
    with pytest.raises(errors.ApiError, match="not running"):
        backend.shutdown("pve1", vmid, 5)
    assert backend.status("pve1", vmid).status == "stopped"


def test_shutdown_stops_a_running_container(world: World, backend: Backend) -> None:
    vmid = world.running()
    backend.shutdown("pve1", vmid, 5)
    assert backend.status("pve1", vmid).status == "stopped"


def test_destroy_of_a_running_container_is_refused_and_leaves_it(world: World, backend: Backend) -> None:
    vmid = world.running()
    with pytest.raises(errors.ApiError, match=f"unable to destroy CT {vmid} - container is running"):
        backend.destroy("pve1", vmid)
    assert backend.status("pve1", vmid).status == "running"


def test_a_destroyed_container_is_gone(world: World, backend: Backend) -> None:
    vmid = world.create()
    backend.destroy("pve1", vmid)
    assert vmid not in {g.vmid for g in backend.guests()}
    with pytest.raises(errors.NotFound):
        backend.status("pve1", vmid)
    with pytest.raises(errors.NotFound):
        backend.config("pve1", vmid)
    with pytest.raises(errors.NotFound):
        backend.destroy("pve1", vmid)


@pytest.mark.parametrize("call", [
    lambda b, v: b.status("pve1", v), lambda b, v: b.config("pve1", v), lambda b, v: b.destroy("pve1", v),
    lambda b, v: b.set_options("pve1", v, {"description": "x"}), lambda b, v: b.migrate_check("pve1", v, "pve2"),
], ids=["status", "config", "destroy", "set_options", "migrate_check"])
def test_a_container_that_is_nowhere_is_not_found(backend: Backend, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.NotFound):
        call(backend, 4242)


def test_a_container_that_is_nowhere_cannot_be_started_or_stopped(backend: Backend) -> None:
    # PVE asks whether it runs before it looks for its config: stopping it says "not running".
    for stop in (lambda: backend.stop("pve1", 4242), lambda: backend.shutdown("pve1", 4242, 5)):
        with pytest.raises(errors.ApiError, match="CT 4242 not running"):
            stop()
    # The API's start task fails where pct names the missing config (NotFound): an error either way.
    with pytest.raises(errors.PveociError, match=r"4242\.conf' does not exist"):
        backend.start("pve1", 4242)


def test_reads_of_many_leave_out_those_that_vanished(world: World, backend: Backend) -> None:
    kept, gone = world.create(), world.create()
    guests = [g for g in backend.guests() if g.vmid in (kept, gone)]
    backend.destroy("pve1", gone)
    assert set(backend.configs(guests)) == {kept}
    assert set(backend.statuses(guests)) == {kept}


def test_a_node_that_is_offline(world: World, backend: Backend) -> None:
    vmid = world.create("pve2")
    world.template("pve2")
    world.take_offline("pve2")
    nodes = {n.name: n for n in backend.nodes()}
    assert (nodes["pve1"].online, nodes["pve2"].online) == (True, False)
    with pytest.raises(errors.NodeOffline):
        backend.status("pve2", vmid)
    with pytest.raises(errors.NodeOffline):
        world.create("pve2")
    assert backend.statuses([g for g in backend.guests() if g.vmid == vmid]) == {}


def test_the_cluster_as_a_whole(world: World, backend: Backend) -> None:
    vmid = world.create()
    assert backend.version() == (9, 1)
    nodes = backend.nodes()
    assert [(n.name, n.online) for n in nodes] == [("pve1", True), ("pve2", True)]
    local = next(s for s in nodes[0].storages if s.name == "local")
    assert "vztmpl" in local.content
    overview_nodes, overview_guests = backend.overview()
    assert [n.name for n in overview_nodes] == ["pve1", "pve2"]
    assert vmid in {g.vmid for g in overview_guests}
    assert backend.node_machine("pve1") in ("x86_64", "aarch64")
    assert isinstance(backend.privileged(), bool)


def test_migrate_a_stopped_container(world: World, backend: Backend) -> None:
    vmid = world.create()
    check = backend.migrate_check("pve1", vmid, "pve2")
    assert (check.running, "pve2" in check.allowed) == (False, True)
    said: list[str] = []
    backend.migrate("pve1", vmid, "pve2", restart=False, on_log=said.append)
    assert said
    assert backend.status("pve2", vmid).status == "stopped"
    assert [g.node for g in backend.guests() if g.vmid == vmid] == ["pve2"]
    with pytest.raises(errors.NotFound):
        backend.status("pve1", vmid)


def test_a_running_container_moves_only_in_restart_mode(world: World, backend: Backend) -> None:
    vmid = world.running()
    assert backend.migrate_check("pve1", vmid, "pve2").running
    with pytest.raises(errors.PveociError, match="running"):
        backend.migrate("pve1", vmid, "pve2", restart=False)
    assert backend.status("pve1", vmid).status == "running"
    backend.migrate("pve1", vmid, "pve2", restart=True)
    moved = backend.status("pve2", vmid)
    assert moved.status == "running"
    assert isinstance(moved.pid, int)
