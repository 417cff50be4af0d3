"""`list` with filters, on the in-memory cluster: by node, status and annotation, and the filter syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import card, errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from pveoci.runtime.ids import id_tag
from pveoci.runtime.listing import Filters
from tests.runtime.conftest import THREE, MakeRuntime, tiny_bundle
from tests.testbed.bundle import with_annotations

NODES = THREE


def annotated(path: Path, **annotations: str) -> Path:
    return with_annotations(tiny_bundle(path), **annotations)


@pytest.fixture
def fleet(rt: Runtime, tmp_path: Path) -> Runtime:
    blue = annotated(tmp_path / "blue", team="blue", tier="web")
    red = annotated(tmp_path / "red", team="red")
    rt.run("a", blue, node="pve1")
    rt.create("b", blue, node="pve2")
    rt.run("c", red, node="pve2")
    rt.create("d", red, node="pve3")
    return rt


def ids(states: list) -> list[str]:  # type: ignore[type-arg]
    return [s.id for s in states]


def test_list_filters_by_node_status_and_annotation(fleet: Runtime) -> None:
    assert ids(fleet.list()) == ["a", "b", "c", "d"]
    assert ids(fleet.list(node="pve2")) == ["b", "c"]
    assert ids(fleet.list(node=["pve1", "pve3"])) == ["a", "d"]
    assert ids(fleet.list(status="running")) == ["a", "c"]
    assert ids(fleet.list(annotations={"team": "blue"})) == ["a", "b"]
    assert ids(fleet.list(annotations={"tier": None})) == ["a", "b"]
    assert ids(fleet.list(node="pve2", status="created", annotations={"team": "blue"})) == ["b"]
    assert fleet.list(node="pve9") == []


def test_filters_parse_as_docker_does() -> None:
    parsed = Filters.parse(["node=pve1", "node=pve2", "status=running", "annotation=team=blue",
                            "annotation=tier"])
    assert parsed == Filters(frozenset({"pve1", "pve2"}), frozenset({"running"}),
                             (("team", "blue"), ("tier", None)))
    for bad in ("node", "zone=a", "status=sleeping", "node="):
        with pytest.raises(errors.InvalidParameter, match="bad filter"):
            Filters.parse([bad])


def test_an_empty_cache_lists_from_the_cards_without_reading_a_description(fleet: Runtime, memory: MemoryBackend,
                                                                         make_runtime: MakeRuntime,
                                                                         tmp_path: Path) -> None:
    warm = [s.to_json() for s in fleet.list()]
    memory.calls.clear()
    fresh = make_runtime(root=tmp_path / "empty-cache")   # another workstation
    assert [s.to_json() for s in fresh.list()] == warm    # bundle, created, annotations... all there
    assert memory.calls.count("guests") == 1
    assert "config" not in memory.calls


def test_a_container_without_a_card_is_read_from_its_description(fleet: Runtime, memory: MemoryBackend,
                                                                make_runtime: MakeRuntime, tmp_path: Path) -> None:
    warm = [s.to_json() for s in fleet.list()]
    ct = next(c for c in memory.cts.values() if card.PREFIX in str(c.config["tags"]))
    tags = [t for t in str(ct.config["tags"]).split(";") if not t.startswith(card.PREFIX)]
    ct.config["tags"] = ";".join(tags)                       # made before cards
    other = next(c for c in memory.cts.values() if c is not ct)
    forged = str(other.config["tags"]).replace(id_tag(next(s.id for s in fleet.list() if s.vmid == other.vmid)),
                                               id_tag("someone-else"))
    other.config["tags"] = forged                            # a card that is not of the id tag it sits by
    memory.calls.clear()
    listed = [s.to_json() for s in make_runtime(root=tmp_path / "empty-cache").list()]
    assert memory.calls.count("config") == 2
    assert [s for s in listed if s["pveoci"]["vmid"] == ct.vmid] == [s for s in warm if s["pveoci"]["vmid"] == ct.vmid]
