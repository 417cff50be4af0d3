"""The template storage contract: where templates go, how they are listed, sent, claimed and removed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.base import Backend
from pveoci.template.pack import Packed
from tests.contract.conftest import World, packed_again


def test_a_destination_is_checked(backend: Backend) -> None:
    dest = backend.template_destination("pve1", "local")
    assert (dest.node, dest.storage) == ("pve1", "local")
    assert dest.volid("x.tar.zst") == "local:vztmpl/x.tar.zst"
    with pytest.raises(errors.NotFound, match="storage 'nowhere'"):
        backend.template_destination("pve1", "nowhere")
    with pytest.raises(errors.ConfigError, match="does not hold container templates"):
        backend.template_destination("pve1", "local-lvm")


def test_an_uploaded_template_is_listed_made_from_and_removed(world: World, backend: Backend,
                                                              packed: Packed) -> None:
    dest = backend.template_destination("pve1", "local")
    seen: list[int] = []
    assert backend.upload(packed, dest, transport="sftp", progress=seen.append) > 0
    assert sum(seen) > 0
    (listed,) = [t for t in backend.templates(dest) if t.name == packed.name]
    assert (listed.volid, listed.size) == (dest.volid(packed.name), packed.size)
    assert backend.templates(backend.template_destination("pve2", "local")) == []  # each node its own storage
    vmid = backend.next_vmid()
    backend.create("pve1", vmid, {"ostemplate": listed.volid, "hostname": "t", "rootfs": "local-lvm:1"})
    backend.destroy("pve1", vmid)
    backend.remove_template(dest, packed.name)
    assert backend.templates(dest) == []
    with pytest.raises(errors.PveociError):
        backend.remove_template(dest, packed.name)


def test_a_streamed_upload_lands_once(backend: Backend, packed: Packed) -> None:
    dest = backend.template_destination("pve1", "local")
    data = Path(packed.path).read_bytes()
    first = backend.begin_upload(dest, transport="sftp", progress=lambda n: None)
    for at in range(0, len(data), 16384):
        first.write(data[at:at + 16384])
    assert first.finish(packed) is True
    assert first.sent == len(data)
    second = backend.begin_upload(dest, transport="sftp", progress=lambda n: None)
    second.write(data)
    assert second.finish(packed) is False  # the storage had it by then: this copy is dropped
    assert [t.name for t in backend.templates(dest)] == [packed.name]


def test_an_aborted_upload_leaves_nothing(backend: Backend, packed: Packed) -> None:
    dest = backend.template_destination("pve1", "local")
    upload = backend.begin_upload(dest, transport="sftp", progress=lambda n: None)
    upload.write(Path(packed.path).read_bytes()[:1000])
    upload.abort()
    assert backend.templates(dest) == []
    assert backend.sweep_templates(dest) == []


def test_one_claim_holds_and_the_others_wait_for_its_result(backend: Backend, tmp_path: Path) -> None:
    dest = backend.template_destination("pve1", "local")
    key = packed_again(tmp_path).name.removesuffix(".tar.zst")
    first = backend.claim_template(dest, key)
    second = backend.claim_template(dest, key)
    assert (first.ours, second.ours) == (True, False)
    assert second.result() is None
    releaser = threading.Timer(0.2, first.release, args=("pveoci-done.tar.zst",))
    releaser.start()
    try:
        assert second.wait(30) == "pveoci-done.tar.zst"
    finally:
        releaser.join()
    assert second.result() == "pveoci-done.tar.zst"
    again = backend.claim_template(dest, key)
    assert again.ours  # its result read by every waiter, a finished claim leaves nothing
    again.release(None)


def test_a_claim_given_up_goes_and_its_waiter_takes_over(backend: Backend, tmp_path: Path) -> None:
    dest = backend.template_destination("pve1", "local")
    key = packed_again(tmp_path).name.removesuffix(".tar.zst")
    first = backend.claim_template(dest, key)
    waiter = backend.claim_template(dest, key)
    first.release(None)
    assert waiter.wait(30) is None
    assert waiter.take_over()
    late = backend.claim_template(dest, key)
    assert not late.ours
    waiter.release("pveoci-done.tar.zst")
    assert late.wait(30) == "pveoci-done.tar.zst"
    assert backend.claim_template(dest, key).ours


def test_a_delta_needs_its_base(backend: Backend, packed: Packed) -> None:
    from pveoci.template.delta import plan

    dest = backend.template_destination("pve1", "local")
    every_frame_from_the_base = plan(packed.frames, packed.frames)
    with pytest.raises(errors.PveociError):
        backend.upload_delta(packed, "pveoci-absent.tar.zst", every_frame_from_the_base, dest,
                             progress=lambda n: None)
    assert backend.templates(dest) == []
