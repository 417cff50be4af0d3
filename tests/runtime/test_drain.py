"""Drain and rebalance on the in-memory cluster: every container moves once, the plan respects placement, a drain
that was killed finishes when run again, a rebalance evens the scores out within its budget of moves."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from pveoci.backends.memory import MemoryBackend
from pveoci.models import Migration
from pveoci.runtime import Runtime
from pveoci.runtime.ids import TAG_MOVING
from tests.runtime.conftest import THREE, MakeRuntime

NODES = THREE


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime()  # creates go to pve1, the profile's node


def six_on_pve1(rt: Runtime, bundle: Path) -> None:
    for i in range(6):
        (rt.run if i < 4 else rt.create)(f"c{i}", bundle)


def where(memory: MemoryBackend) -> Counter[str]:
    return Counter(ct.node for ct in memory.cts.values())


def test_drain_moves_every_container_off_the_node(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    seen: list[Migration] = []
    report = rt.drain("pve1", parallel=3, on_move=seen.append)
    assert report.ok
    assert [m.id for m in report.moves] == [f"c{i}" for i in range(6)]
    assert sorted(m.id for m in seen) == [m.id for m in report.moves]
    assert where(memory) == {"pve2": 3, "pve3": 3}  # placement spreads them
    assert [s.status for s in rt.list()] == ["running"] * 4 + ["created"] * 2
    assert all(ct.phase == ("running" if ct.vmid < 104 else "waiting") for ct in memory.cts.values())
    assert report.to_json()["moves"][0]["result"] == "moved"


def test_a_dry_drain_plans_and_changes_nothing(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    report = rt.drain("pve1", dry_run=True)
    assert {m.result for m in report.moves} == {"would move"}
    assert Counter(m.target for m in report.moves) == {"pve2": 3, "pve3": 3}
    assert where(memory) == {"pve1": 6}
    assert "migrate" not in memory.calls


def test_drain_to_one_node_and_refusals_are_lines(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    memory.cts[101].config["mp0"] = "/srv/x,mp=/x"
    report = rt.drain("pve1", to="pve3")
    assert not report.ok
    assert {m.id: m.result for m in report.moves if m.result != "moved"} == {"c1": "refused"}
    assert where(memory) == {"pve3": 5, "pve1": 1}


def test_a_killed_drain_finishes_when_run_again(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    # What a drain killed mid-way leaves: c0 moved but its process not started again, c1 still migrating.
    c0, c1 = memory.cts[100], memory.cts[101]
    for ct in (c0, c1):
        memory.set_options("pve1", ct.vmid, {"tags": ";".join([*ct.tags, TAG_MOVING])})
    memory.migrate("pve1", 100, "pve2", restart=True)
    c1.config["lock"] = "migrate"

    def migration_ends() -> None:
        c1.config.pop("lock")
        memory.migrate("pve1", 101, "pve3", restart=True)

    timer = threading.Timer(0.5, migration_ends)
    timer.start()
    report = rt.drain("pve1")
    timer.join()
    assert [m.id for m in report.moves] == ["c2", "c3", "c4", "c5"]
    assert report.ok
    assert len(memory.cts) == 6
    assert where(memory)["pve1"] == 0
    assert sorted(s.id for s in rt.list()) == [f"c{i}" for i in range(6)]          # each exactly once
    assert [ct.phase for ct in memory.cts.values()] == ["running"] * 4 + ["waiting"] * 2
    assert all(TAG_MOVING not in ct.tags for ct in memory.cts.values())


def test_rebalance_evens_the_nodes_out(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    dry = rt.rebalance(dry_run=True)
    assert len(dry.moves) == 4
    assert where(memory) == {"pve1": 6}
    report = rt.rebalance()
    assert report.ok
    assert where(memory) == {"pve1": 2, "pve2": 2, "pve3": 2}
    assert report.spread_before is not None
    assert report.spread_after is not None
    assert report.spread_after < report.spread_before
    assert rt.rebalance().moves == ()  # even: nothing worth moving


def test_rebalance_never_moves_more_than_asked(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    six_on_pve1(rt, bundle)
    report = rt.rebalance(max_moves=1)
    assert len(report.moves) == 1
    assert where(memory) == {"pve1": 5, "pve2": 1} or where(memory) == {"pve1": 5, "pve3": 1}
    assert rt.rebalance(max_moves=0).moves == ()
