"""Templates as use cases on the in-memory backend: pushed once, listed with their users, kept while used."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from tests.runtime.conftest import MakeRuntime, tiny_bundle


def test_push_sends_a_template_once(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    first = rt.templates.push(bundle)
    assert first.uploaded
    assert first.bytes_sent == first.size
    again = rt.templates.push(bundle)
    assert not again.uploaded
    assert again.bytes_sent == 0
    assert again.volid == first.volid
    assert len(memory.uploads) == 1


def test_create_uses_the_template_push_made(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    pushed = rt.templates.push(bundle)
    assert rt.create("web", bundle).template == pushed.volid
    assert len(memory.uploads) == 1


def test_ls_names_the_containers_made_from_each_template(rt: Runtime, bundle: Path, tmp_path: Path) -> None:
    used = rt.create("web", bundle).template
    spare = rt.templates.push(tiny_bundle(tmp_path / "other", ["/bin/app", "x"]), node="pve2")
    listed = {(t.node, t.volid): t.used_by for t in rt.templates.list()}
    assert listed[("pve1", used)] == ("web",)
    assert listed[("pve2", spare.volid)] == ()


def test_a_template_in_use_is_kept_by_rm_and_gc(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    name = rt.create("web", bundle).template.split("/")[1]
    with pytest.raises(errors.InUse, match="is used by web") as refused:
        rt.templates.remove(name, node="pve1")
    assert refused.value.users == ["web"]
    assert rt.templates.gc() == []
    assert name in memory.template_files[("pve1", "local")]
    rt.delete("web")
    assert [t.name for t in rt.templates.gc(dry_run=True)] == [name]
    assert name in memory.template_files[("pve1", "local")]
    assert [t.name for t in rt.templates.gc()] == [name]
    assert memory.template_files[("pve1", "local")] == {}


def test_force_removes_a_template_in_use(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    name = rt.create("web", bundle).template.split("/")[1]
    assert rt.templates.remove(name, node="pve1", force=True).used_by == ("web",)
    assert memory.template_files[("pve1", "local")] == {}


def test_a_node_local_template_is_used_only_by_containers_on_its_node(rt: Runtime, memory: MemoryBackend,
                                                                       bundle: Path) -> None:
    """local:vztmpl/x on pve2 is another file than local:vztmpl/x on pve1."""
    rt.create("web", bundle, node="pve1")
    pushed = rt.templates.push(bundle, node="pve2")
    assert not pushed.uploaded or pushed.node == "pve2"
    users = {t.node: t.used_by for t in rt.templates.list()}
    assert users == {"pve1": ("web",), "pve2": ()}
    assert [t.node for t in rt.templates.gc()] == ["pve2"]


def test_shared_storage_holds_one_copy_for_every_node(make_runtime: MakeRuntime, bundle: Path) -> None:
    shared = MemoryBackend(nodes=("pve1", "pve2"), shared_templates=True)
    rt = make_runtime(shared)
    rt.create("a", bundle, node="pve1")
    rt.create("b", bundle, node="pve2")
    assert len(shared.uploads) == 1
    (only,) = rt.templates.list()
    assert only.used_by == ("a", "b")


def test_rm_of_something_that_is_no_template_says_so(rt: Runtime) -> None:
    with pytest.raises(errors.NotFound, match="is not a pveoci template name"):
        rt.templates.remove("debian-12.tar.zst")
    with pytest.raises(errors.NotFound, match="does not exist"):
        rt.templates.remove("pveoci-0123456789abcdef.tar.zst")
