"""Placement on the in-memory cluster: which node `auto` picks, which it never picks, and how creates spread."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import GIB, MemoryBackend
from pveoci.models import Storage
from pveoci.runtime import Runtime
from pveoci.runtime.placement import Ask, NodeLoad, pick, score
from tests.runtime.conftest import THREE, MakeRuntime, tiny_bundle
from tests.testbed.bundle import with_annotations

NODES = THREE


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime(node="auto")


def annotated(path: Path, **annotations: str) -> Path:
    return with_annotations(tiny_bundle(path), **annotations)


def test_auto_picks_the_node_with_most_free_memory(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.load = {"pve1": {"mem": 6 * GIB}, "pve2": {"mem": 1 * GIB}, "pve3": {"mem": 4 * GIB}}
    placed = rt.place(bundle)
    assert placed.node == "pve2"
    assert [s.node for s in placed.scores] == ["pve2", "pve3", "pve1"]
    best = placed.scores[0]
    assert best.parts["memory"] > placed.scores[1].parts["memory"] > placed.scores[2].parts["memory"]
    assert "6.5 GiB memory free after its 512.0 MiB" in best.notes
    assert rt.create("web", bundle).node == "pve2"


def test_auto_never_picks_an_excluded_offline_or_maintenance_node(make_runtime: MakeRuntime, bundle: Path) -> None:
    memory = MemoryBackend(nodes=(*THREE, "pve4"))
    memory.load = {"pve1": {"mem": 0}, "pve2": {"mem": 0}, "pve3": {"mem": 0}, "pve4": {"mem": 6 * GIB}}
    memory.nodes_online["pve2"] = False
    memory.maintenance.add("pve3")
    rt = make_runtime(memory, node="auto")
    placed = rt.place(bundle, exclude=["pve1"])
    assert placed.node == "pve4"  # the fullest, but the only one left
    assert {s.node: s.notes[0] for s in placed.scores if s.rejected} == {
        "pve1": "excluded", "pve2": "offline", "pve3": "in maintenance"}
    assert rt.create("web", bundle, exclude=["pve1"]).node == "pve4"


def test_no_node_left_is_an_error_that_says_why_of_each(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    memory.nodes_online["pve2"] = False
    memory.maintenance.add("pve3")
    with pytest.raises(errors.NoSuitableNode) as caught:
        rt.create("web", bundle, exclude=["pve1"])
    why = {s.node: s.notes[0] for s in caught.value.placement.scores}  # type: ignore[union-attr]
    assert why == {"pve1": "excluded", "pve2": "offline", "pve3": "in maintenance"}
    assert caught.value.exit_code == 29
    assert memory.cts == {}
    assert memory.uploads == []
    assert rt.create("web", bundle).node == "pve1"  # without the exclusion, the only node left


def test_nodes_without_the_storages_or_the_memory_are_rejected(rt: Runtime, memory: MemoryBackend,
                                                               bundle: Path) -> None:
    templates = Storage("local", "dir", ("vztmpl",), False, True, 100 * GIB, 200 * GIB)
    disks = Storage("local-lvm", "lvmthin", ("rootdir",), False, True, 100 * GIB, 200 * GIB)
    memory.node_storages = {"pve1": (templates,), "pve2": (disks,)}
    memory.load = {"pve3": {"mem": 8 * GIB - 100 * 1024 * 1024}}
    with pytest.raises(errors.NoSuitableNode) as caught:
        rt.place(bundle)
    why = {s.node: s.notes[0] for s in caught.value.placement.scores}  # type: ignore[union-attr]
    assert why == {"pve1": "no usable root-disk storage 'local-lvm' (content rootdir, active)",
                   "pve2": "no usable template storage 'local' (content vztmpl, active)",
                   "pve3": "too little memory: 100.0 MiB free, it needs 512.0 MiB"}


def test_twelve_creates_on_three_equal_nodes_spread_four_each(rt: Runtime, memory: MemoryBackend,
                                                              bundle: Path) -> None:
    for i in range(12):
        rt.create(f"c{i}", bundle)
    assert Counter(ct.node for ct in memory.cts.values()) == {"pve1": 4, "pve2": 4, "pve3": 4}
    # The template went to each node once: where containers are, and nowhere else.
    assert sorted(node for node, _ in memory.uploads) == list(THREE)


def created_at_once(runtimes: list[Runtime], bundle: Path) -> list[BaseException]:
    """Each runtime creates c<i> from the bundle in a thread of its own, all at once; what they raised."""
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            runtimes[i].create(f"c{i}", bundle)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(runtimes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return failures


def test_concurrent_creates_see_each_others_picks(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                  bundle: Path) -> None:
    """Twelve threads place before any container exists: the journal (under the placement lock) spreads them."""
    runtimes = [make_runtime(node="auto") for _ in range(12)]
    arrived, everyone = Counter[str](), threading.Event()
    real_create = memory.create

    def slow_create(node: str, vmid: int, options: dict[str, object]) -> None:
        # Nobody's container exists until every create has picked its node (VMID races retry freely).
        arrived[str(options["hostname"])] += 1
        if len(arrived) == 12:
            everyone.set()
        everyone.wait(30)
        real_create(node, vmid, options)

    memory.create = slow_create  # type: ignore[method-assign]

    assert created_at_once(runtimes, bundle) == []
    assert Counter(ct.node for ct in memory.cts.values()) == {"pve1": 4, "pve2": 4, "pve3": 4}


def test_creates_made_but_not_yet_started_still_count_their_memory(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                                   bundle: Path) -> None:
    """Proxmox starts a new container in a task of its own, after the create's lock is gone: for that moment the
    container is there, stopped, unlocked. Creates that place meanwhile must count the memory it is about to take
    (its journal entry says how much), or they pile onto the node with the template."""
    memory.load = {n: {"mem": 0, "maxmem": 3 * GIB} for n in THREE}   # nodes where 512 MiB counts
    runtimes = [make_runtime(node="auto") for _ in range(12)]
    made, everyone = Counter[str](), threading.Event()
    real_create = memory.create

    def made_not_started(node: str, vmid: int, options: dict[str, object]) -> None:
        real_create(node, vmid, options)
        memory.cts[vmid].status = "stopped"    # made; its start task has not begun
        made[str(options["hostname"])] += 1
        if len(made) == 12:
            everyone.set()
        everyone.wait(30)
        memory.cts[vmid].status = "running"

    memory.create = made_not_started  # type: ignore[method-assign]

    assert created_at_once(runtimes, bundle) == []
    assert Counter(ct.node for ct in memory.cts.values()) == {"pve1": 4, "pve2": 4, "pve3": 4}


def test_creates_still_being_made_count_as_containers(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                      bundle: Path) -> None:
    """Proxmox's create task shows the container locked, with none of its config yet (so without pveoci's tag),
    until the task ends: creates that place meanwhile count it as its journal entry says, or they pile onto one
    node (seen on the bed: 5/3/4)."""
    runtimes = [make_runtime(node="auto") for _ in range(12)]
    made, everyone = Counter[str](), threading.Event()
    real_create = memory.create

    def still_being_made(node: str, vmid: int, options: dict[str, object]) -> None:
        real_create(node, vmid, options)
        config = memory.cts[vmid].config
        memory.cts[vmid].config = {"lock": "create"}   # as create_and_lock_config leaves it until the task ends
        made[str(options["hostname"])] += 1
        if len(made) == 12:
            everyone.set()
        everyone.wait(30)
        memory.cts[vmid].config = config

    memory.create = still_being_made  # type: ignore[method-assign]

    assert created_at_once(runtimes, bundle) == []
    assert Counter(ct.node for ct in memory.cts.values()) == {"pve1": 4, "pve2": 4, "pve3": 4}


def test_equal_nodes_are_chosen_by_the_id_not_by_name(rt: Runtime, bundle: Path) -> None:
    picks = {f"c{i}": rt.place(bundle, id=f"c{i}").node for i in range(30)}
    assert set(picks.values()) == set(THREE)                        # no pile-up on the first by name
    assert all(rt.place(bundle, id=c).node == node for c, node in picks.items())   # and stable


def test_a_node_with_the_template_wins_among_equals(rt: Runtime, memory: MemoryBackend, tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    first = rt.create("first", bundle, node="pve3")
    rt.delete("first", force=True)   # created, never started
    placed = rt.place(bundle, id="second")
    assert placed.node == "pve3"
    assert placed.scores[0].parts["template"] == 10.0
    assert "template there" in placed.scores[0].notes
    assert first.template.split("/")[1] in memory.template_files[("pve3", "local")]


def test_a_spread_group_keeps_its_containers_apart(rt: Runtime, memory: MemoryBackend, tmp_path: Path) -> None:
    web = annotated(tmp_path / "web", **{"pveoci.spread-group": "web"})
    other = tiny_bundle(tmp_path / "other")
    rt.create("w1", web, node="pve1")
    rt.create("w2", web, node="pve2")
    for i in range(3):  # plain containers on pve3: it is the fullest, yet the only one without a web
        rt.create(f"o{i}", other, node="pve3")
    placed = rt.place(web, id="w3")
    assert placed.node == "pve3"
    assert {s.node: s.parts["group"] for s in placed.scores} == {"pve1": -30.0, "pve2": -30.0, "pve3": 0.0}


def test_scores_are_the_weighted_criteria() -> None:
    from pveoci.models import Node

    storages = (Storage("local", "dir", ("vztmpl",), False, True, 50 * GIB, 100 * GIB),
                Storage("local-lvm", "lvmthin", ("rootdir",), False, True, 100 * GIB, 200 * GIB))
    big = Node("big", True, cpu=0.5, maxcpu=8, mem=4 * GIB, maxmem=16 * GIB, storages=storages)
    small = Node("small", True, cpu=0.0, maxcpu=4, mem=0, maxmem=8 * GIB, storages=storages)
    loads = [NodeLoad(big, containers=1, template=True), NodeLoad(small, containers=0)]
    scores = {s.node: s for s in score(loads, Ask(memory=2 * GIB, disk=4 * GIB))}
    # memory: (16-4-2)/16 and (8-0-2)/16 of 40; cpu: 4 and 4 idle cores of 8, of 15; spread: 1 of (1+1) and 0.
    assert scores["big"].parts == pytest.approx({"memory": 25.0, "cpu": 7.5, "storage": 10.0, "spread": 12.5,
                                                 "template": 10.0})
    assert scores["small"].parts == pytest.approx({"memory": 15.0, "cpu": 7.5, "storage": 10.0, "spread": 25.0,
                                                   "template": 0.0})
    assert pick(score(loads, Ask(memory=2 * GIB)), "x").node == "big"


def test_memory_promised_to_running_containers_counts_as_used() -> None:
    from pveoci.models import Node

    storages = (Storage("local", "dir", ("vztmpl",), False, True, 50 * GIB, 100 * GIB),
                Storage("local-lvm", "lvmthin", ("rootdir",), False, True, 100 * GIB, 200 * GIB))
    idle = NodeLoad(Node("idle", True, maxcpu=4, mem=1 * GIB, maxmem=8 * GIB, storages=storages), committed=6 * GIB)
    busy = NodeLoad(Node("busy", True, maxcpu=4, mem=3 * GIB, maxmem=8 * GIB, storages=storages), committed=1 * GIB)
    assert pick(score([idle, busy], Ask()), "x").node == "busy"   # 5 GiB free against 2 GiB
