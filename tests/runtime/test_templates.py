"""Templates as use cases on the in-memory backend: pushed once, listed with their users, kept while used."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from pveoci.template import manifest
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
    rt.delete("web", force=True)   # created, never started
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


def test_bundles_that_share_a_rootfs_share_one_template_whatever_they_run(rt: Runtime, memory: MemoryBackend,
                                                                         bundle: Path, tmp_path: Path) -> None:
    import json

    first = rt.create("one", bundle)
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str(bundle / "rootfs")
    config["process"].update(args=["/bin/app", "--other"], env=["PATH=/bin", "SECRET=changed"], cwd="/tmp",
                             user={"uid": 1000, "gid": 1000}, rlimits=[{"type": "RLIMIT_NOFILE", "soft": 64,
                                                                         "hard": 64}])
    (other / "config.json").write_text(json.dumps(config))
    second = rt.create("two", other)
    assert second.template == first.template
    assert len(memory.uploads) == 1  # the process travels with the container: nothing sent the second time
    assert memory.cts[second.vmid].config["entrypoint"] != memory.cts[first.vmid].config["entrypoint"]


def test_an_architecture_without_an_init_is_refused_before_anything_is_sent(make_runtime: MakeRuntime,
                                                                           bundle: Path) -> None:
    riscv = MemoryBackend(machine="riscv64")
    rt = make_runtime(riscv)
    with pytest.raises(errors.Unsupported, match="node 'pve1' is riscv64"):
        rt.create("web", bundle)
    assert riscv.uploads == []
    assert riscv.cts == {}


def test_arm64_nodes_get_the_arm64_init(make_runtime: MakeRuntime, bundle: Path) -> None:
    arm = MemoryBackend(machine="aarch64")
    rt = make_runtime(arm)
    made = rt.create("web", bundle)
    assert arm.cts[made.vmid].config["arch"] == "arm64"


def _entries(rootfs: Path, tmp_path: Path, legacy: bool, arch: str = "amd64") -> dict[str, tuple[str, str]]:
    """What the template of rootfs holds: {name: (kind, link target or sha256)}."""
    import hashlib
    import tarfile

    from pveoci.runtime.push import template_files
    from pveoci.template.pack import pack

    packed = pack(rootfs, tmp_path / "out", extras=template_files(rootfs, arch, legacy))
    out = {}
    import zstandard

    with packed.path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw, \
            tarfile.open(fileobj=raw, mode="r|") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out[m.name] = ("link", m.linkname) if m.issym() else ("dir", "") if m.isdir() else (
                "file", hashlib.sha256(data).hexdigest())
    return out


def test_a_template_holds_the_init_for_its_architecture_and_its_run_directory(tmp_path: Path, bundle: Path) -> None:
    from pveoci import init

    for arch in init.ARCHES:
        entries = _entries(bundle / "rootfs", tmp_path / arch, legacy=False, arch=arch)
        assert entries["./.pveoci/init"] == ("file", init.digest(arch))
        assert entries["./.pveoci/run"] == ("dir", "")
        assert "./sbin/init" not in entries


@pytest.mark.parametrize("layout", ["own-init-file", "own-init-link", "merged-usr", "no-sbin"])
def test_before_pve_91_sbin_init_is_pveocis_init_whatever_the_rootfs_has(tmp_path: Path, layout: str) -> None:
    """PVE 9.0 starts /sbin/init: exactly one entry answers to it, and it is pveoci's init (no ambiguity)."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(b"busybox")
    if layout == "own-init-file":
        (rootfs / "sbin").mkdir()
        (rootfs / "sbin" / "init").write_bytes(b"systemd, really")
    elif layout == "own-init-link":
        (rootfs / "sbin").mkdir()
        (rootfs / "sbin" / "init").symlink_to("../bin/busybox")
    elif layout == "merged-usr":
        (rootfs / "usr" / "sbin").mkdir(parents=True)
        (rootfs / "usr" / "sbin" / "init").symlink_to("/lib/systemd/systemd")
        (rootfs / "sbin").symlink_to("usr/sbin")
    entries = _entries(rootfs, tmp_path, legacy=True)
    init_entry = "./usr/sbin/init" if layout == "merged-usr" else "./sbin/init"
    assert entries[init_entry] == ("link", "/.pveoci/init")
    assert [name for name in entries if name.endswith("/init") and name != "./.pveoci/init"] == [init_entry]
    if layout == "merged-usr":
        assert entries["./sbin"] == ("link", "usr/sbin")  # the merged /usr layout is kept


def test_a_template_removed_behind_pveocis_back_is_sent_again_by_the_next_create(
        rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    name = rt.create("one", bundle).template.split("/")[1]
    rt.delete("one", force=True)   # created, never started
    del memory.template_files[("pve1", "local")][name]   # another workstation's gc, say
    assert rt.create("two", bundle).template.endswith(name)  # Proxmox said it is missing: sent, tried again
    assert len(memory.uploads) == 2
    assert [s.id for s in rt.list()] == ["two"]


def test_a_create_that_fails_otherwise_is_not_retried(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.templates.push(bundle)
    memory.fail("create", errors.TaskFailed("Proxmox task vzcreate 100 on pve1 failed: unable to create CT 100 - "
                                            "no space left on device", upid="UPID:memory", exitstatus="error",
                                            log_tail=[]))
    with pytest.raises(errors.TaskFailed, match="no space left"):
        rt.create("web", bundle)
    assert len(memory.uploads) == 1
    assert rt.list() == []


def test_a_create_that_gets_its_claim_after_another_finished_sends_and_packs_nothing(make_runtime: MakeRuntime,
                                                                          memory: MemoryBackend, bundle: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim goes once its waiters have read its result: a create that reaches the storage after that takes a
    new claim, and finds the other's pack in the cache they share: it neither sends the template nor packs the
    rootfs again."""
    from pveoci.runtime import push

    other, late = make_runtime(), make_runtime()   # two commands of one user: one cache
    claim, pack = memory.claim_template, push.pack
    packs: list[object] = []

    def claimed_after_the_other_finished(*args: object) -> object:
        monkeypatch.setattr(memory, "claim_template", claim)
        other.templates.push(bundle)   # start to end, while the late one was on its way to its claim
        return claim(*args)            # type: ignore[arg-type]

    def counted(*args: object, **kwargs: object) -> object:
        packs.append(args)
        return pack(*args, **kwargs)   # type: ignore[arg-type]

    monkeypatch.setattr(push, "pack", counted)
    monkeypatch.setattr(memory, "claim_template", claimed_after_the_other_finished)
    pushed = late.templates.push(bundle)
    assert (pushed.uploaded, pushed.bytes_sent) == (False, 0)
    assert len(packs) == 1              # the other's
    assert memory.sent_bytes == pushed.size
    assert len(memory.uploads) == 1


class NewNode(MemoryBackend):
    """A node this workstation has never asked for its architecture (a login, over SSH)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def node_machine(self, node: str) -> str:
        self.asked.set()
        return super().node_machine(node)


def test_push_walks_the_rootfs_while_it_asks_for_the_node(make_runtime: MakeRuntime, bundle: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    backend = NewNode()
    walk = manifest.scan

    def scan_once_the_node_is_asked(rootfs: Path) -> manifest.Scan:
        if not backend.asked.wait(5):
            raise AssertionError("the rootfs was walked before the node was asked anything")
        return walk(rootfs)

    monkeypatch.setattr(manifest, "scan", scan_once_the_node_is_asked)
    pushed = make_runtime(backend).templates.push(bundle, node="pve1")
    assert pushed.uploaded
    assert make_runtime(backend).templates.push(bundle, node="pve1").uploaded is False


def test_what_stops_the_walk_stops_the_push_as_itself(rt: Runtime, bundle: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(walked: object) -> manifest.Scan:
        raise errors.BundleError("cannot read rootfs/etc/shadow: Permission denied")

    monkeypatch.setattr(manifest, "_scanned", unreadable)   # the walk runs in a thread: its error is the push's
    with pytest.raises(errors.BundleError, match="Permission denied"):
        rt.templates.push(bundle, node="pve1")


def test_gc_forgets_the_packs_of_paths_that_are_gone_and_the_image_is_still_known(
        rt: Runtime, memory: MemoryBackend, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from pveoci.runtime import push

    def copy(name: str) -> Path:   # an engine's next container of one image: the same tree at a new path
        subprocess.run(["cp", "-a", str(bundle), str(tmp_path / name)], check=True)
        return tmp_path / name

    kept = rt.create("kept", bundle).template

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("packed again")

    monkeypatch.setattr(push, "pack", refuse)              # from here on, nothing may be packed
    first = copy("overlay-1")
    assert rt.create("one", first).template == kept        # alike: nothing packed or sent
    rt.delete("one", force=True)
    shutil.rmtree(first)
    assert rt.gc().forgotten_packs == 2                    # its pack and its path's latest, not the image's
    assert rt.gc().forgotten_packs == 0
    assert rt.create("two", copy("overlay-2")).template == kept
    assert rt.create("again", bundle).template == kept     # a path that is still there keeps its records
    assert len(memory.uploads) == 1


def test_an_unchanged_push_to_a_named_node_asks_the_cluster_nothing_even_when_the_node_list_is_old(
        rt: Runtime, memory: MemoryBackend, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node list is kept 15 s (placement needs it fresh); a push whose template is known to be on the named node
    need not check that node again: a second push a minute later asks nothing. One that must ask the node checks
    it first, as before."""
    from pveoci.runtime import facts

    first = rt.templates.push(bundle, node="pve1")
    monkeypatch.setattr(facts, "NODES_AGE", 0.0)   # the node list kept is too old from now on
    asked_nothing = {"version"}   # the cluster's version, which the API backend keeps in the cache (memory: asked)
    memory.calls.clear()
    assert rt.templates.push(bundle, node="pve1").volid == first.volid
    assert set(memory.calls) <= asked_nothing
    memory.nodes_online["pve1"] = False   # the storage keeps its template: what the push says still holds
    assert rt.templates.push(bundle, node="pve1").uploaded is False
    assert set(memory.calls) <= asked_nothing
    (bundle / "rootfs" / "new").write_text("a change")   # a new template: the node is asked, and found offline
    memory.calls.clear()
    with pytest.raises(errors.NodeOffline, match="node 'pve1' is offline"):
        rt.templates.push(bundle, node="pve1")
    assert [c for c in memory.calls if c not in asked_nothing] == ["nodes"]
    with pytest.raises(errors.NotFound, match="node 'pve7' is not in the cluster"):   # nothing kept of it
        rt.templates.push(bundle, node="pve7")
