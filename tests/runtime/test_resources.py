"""Runtime.update: a container's limits changed through its config, from a dict or the typed model, on any
container Proxmox runs; the config read only when a field needs it; findings as a create's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.oci.runtime_spec import Cpu, Memory, Resources
from pveoci.runtime import Runtime

MIB = 1024 * 1024


def ct_config(rt: Runtime, memory: MemoryBackend, cid: str) -> dict[str, object]:
    return dict(memory.cts[rt.state(cid).vmid].config)


def test_a_dict_and_the_model_change_the_same(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("a", bundle)
    rt.run("b", bundle)
    asked = rt.update("a", {"memory": {"limit": 200 * MIB}, "cpu": {"cpus": "0-2", "quota": 25000}})
    typed = rt.update("b", Resources(memory=Memory(limit=200 * MIB), cpu=Cpu(cpus="0-2", quota=25000)))
    assert asked.to_json() == typed.to_json()
    assert asked.options == {"memory": 200, "cpulimit": 0.25, "cores": 3}
    for cid in ("a", "b"):
        assert {k: ct_config(rt, memory, cid)[k] for k in asked.options} == asked.options


def test_the_config_is_read_only_for_a_swap_without_its_limit(rt: Runtime, memory: MemoryBackend,
                                                              bundle: Path) -> None:
    rt.run("a", bundle)
    memory.calls.clear()
    rt.update("a", {"memory": {"limit": 300 * MIB}, "cpu": {"shares": 1024}})
    assert "config" not in memory.calls
    rt.update("a", {"memory": {"swap": 400 * MIB}})
    assert memory.calls.count("config") == 1
    assert ct_config(rt, memory, "a")["swap"] == 100  # 400 MiB of memory plus swap, 300 of them memory


def test_a_stopped_container_is_not_running(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("a", bundle)
    memory.exit(rt.state("a").vmid, 0)
    memory.calls.clear()
    with pytest.raises(errors.NotRunning, match=r"^container not running$") as caught:
        rt.update("a", {"memory": {"limit": 300 * MIB}})
    assert caught.value.status == "stopped"
    assert "set_options" not in memory.calls


def test_a_document_that_is_not_one_is_a_bundle_error(rt: Runtime, bundle: Path) -> None:
    rt.run("a", bundle)
    with pytest.raises(errors.BundleError, match=r"^invalid resources: cpu\.quota: "):
        rt.update("a", {"cpu": {"quota": "half"}})


def test_findings_go_to_their_logger_unless_quiet(rt: Runtime, bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt.run("a", bundle)
    with caplog.at_level(logging.INFO, logger="pveoci.findings"):
        rt.update("a", {"cpu": {"cpus": "0-1"}}, findings="quiet")
        assert caplog.records == []
        rt.update("a", {"cpu": {"cpus": "0-1"}})
    assert [r.getMessage() for r in caplog.records] == [
        "linux.resources.cpu.cpus: cores=2: as many CPUs, but PVE chooses which (approximated)"]
