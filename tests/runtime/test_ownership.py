"""The ownership marker through the runtime: a workstation with an empty cache sees a container whatever its
annotations, and one whose marker cannot be read is reported, never taken for "not pveoci's"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from tests.runtime.conftest import MakeRuntime, tiny_bundle
from tests.testbed.bundle import with_annotations

NASTY = {"note": "} -->", "html": "<!-- x --> <b>", "lines": "a\nb\r\n", "utf8": "é中😀", "} -->": "key"}


def elsewhere(make_runtime: MakeRuntime, tmp_path: Path) -> Runtime:
    """Another workstation: the same cluster, an empty cache."""
    return make_runtime(root=tmp_path / "other-cache")


def test_a_container_with_any_annotation_is_seen_and_deleted_from_an_empty_cache(
        rt: Runtime, make_runtime: MakeRuntime, memory: MemoryBackend, tmp_path: Path) -> None:
    bundle = with_annotations(tiny_bundle(tmp_path / "b"), **NASTY)
    rt.create("web", bundle)
    other = elsewhere(make_runtime, tmp_path)
    listed = other.list()
    assert [(s.id, s.annotations) for s in listed] == [("web", NASTY)]
    assert other.state("web").annotations == NASTY
    other.delete("web", force=True)
    assert memory.cts == {}


@pytest.fixture
def broken(rt: Runtime, memory: MemoryBackend, bundle: Path) -> int:
    """A container whose notes someone edited: the pveoci block is there, but cut short."""
    vmid = rt.create("web", bundle).vmid
    memory.cts[vmid].config["description"] = memory.cts[vmid].config["description"][:-40]
    return vmid


def test_an_unreadable_marker_is_listed_as_a_warning_not_passed_over(
        broken: int, make_runtime: MakeRuntime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = elsewhere(make_runtime, tmp_path)
    with caplog.at_level(logging.WARNING, "pveoci.runtime"):
        assert other.list() == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"CT {broken} on pve1 carries pveoci's tags but its ownership marker cannot be read "
                              "(its JSON is not valid")


def test_state_says_the_marker_is_unreadable_not_that_the_container_does_not_exist(
        broken: int, make_runtime: MakeRuntime, tmp_path: Path) -> None:
    with pytest.raises(errors.MarkerUnreadable) as caught:
        elsewhere(make_runtime, tmp_path).state("web")
    assert caught.value.message.startswith(f"container web (CT {broken} on pve1) carries pveoci's tags but its "
                                           "ownership marker cannot be read")
    assert (caught.value.node, caught.value.vmid, caught.value.exit_code) == ("pve1", broken, 31)


def test_a_forced_delete_does_not_report_success_while_the_container_stays(
        broken: int, make_runtime: MakeRuntime, memory: MemoryBackend, tmp_path: Path) -> None:
    with pytest.raises(errors.MarkerUnreadable):
        elsewhere(make_runtime, tmp_path).delete("web", force=True)
    assert list(memory.cts) == [broken]


def test_a_create_of_its_id_is_refused_rather_than_making_a_second_one(
        broken: int, make_runtime: MakeRuntime, memory: MemoryBackend, tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(errors.MarkerUnreadable):
        elsewhere(make_runtime, tmp_path).create("web", bundle)
    assert list(memory.cts) == [broken]


def test_notes_emptied_in_proxmox_are_an_unreadable_marker_too(
        rt: Runtime, make_runtime: MakeRuntime, memory: MemoryBackend, bundle: Path, tmp_path: Path) -> None:
    vmid = rt.create("web", bundle).vmid
    del memory.cts[vmid].config["description"]
    with pytest.raises(errors.MarkerUnreadable, match=r"\(its notes hold no pveoci block\)"):
        elsewhere(make_runtime, tmp_path).state("web")


def test_a_workstation_that_knows_the_container_still_acts_on_it(broken: int, rt: Runtime,
                                                                  memory: MemoryBackend) -> None:
    # Its cache knows the container by the id's tag: the marker is not read again.
    assert rt.state("web").vmid == broken
    rt.delete("web", force=True)
    assert memory.cts == {}


@pytest.mark.parametrize("cid", ["web\n", "web\r\n", "we\nb"])
def test_an_id_with_a_line_break_is_refused_as_runc_refuses_it(rt: Runtime, memory: MemoryBackend, bundle: Path,
                                                                cid: str) -> None:
    with pytest.raises(errors.InvalidParameter, match="invalid container ID format"):
        rt.create(cid, bundle)
    assert memory.cts == {}
