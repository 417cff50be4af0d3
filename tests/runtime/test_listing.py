"""`list` with filters, on the in-memory cluster: by node, status and annotation, and the filter syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import errors
from pveoci.runtime import Runtime
from pveoci.runtime.listing import Filters
from tests.runtime.conftest import THREE, tiny_bundle
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
