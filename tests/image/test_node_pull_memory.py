"""`--pull node` through the Python API on the in-memory cluster (its nodes' pull and unpack modelled), the image's
config from the real public registry on loopback: who pulls (auto, forced, refused in one line), the fallback to
this machine, the tree planned from the node's report, a template another workstation made, gc of leftovers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend, RegistryImage
from pveoci.image.source import ImageRequest
from pveoci.image.store import Access, Store
from pveoci.runtime import nodeimage
from tests.image.registry import GROUP, PASSWD, Registry
from tests.inmemory import MakeRuntime


def listing_of(root: Path) -> bytes:
    """What the node's script lists of a tree (backends/imagescript.py)."""
    return subprocess.run(["find", ".", "-xdev", "-printf", r"%y %m %s %i\0%P\0%l\0"], cwd=root, check=True,
                          capture_output=True).stdout


@pytest.fixture
def cluster(public: Registry, public_app: str, tmp_path: Path) -> MemoryBackend:
    """Two nodes that can pull the public app image: its tree as Proxmox would unpack it."""
    root = tmp_path / "unpacked"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "sh").write_bytes(b"#!busybox\n")
    (root / "bin" / "sh").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "srv").mkdir()
    described = Store(tmp_path / "describe", Access(cert_dir=str(public.certs_dir()))).describe(
        ImageRequest(public_app).parsed, "amd64")
    backend = MemoryBackend(("pve1", "pve2"))
    backend.registry[public_app] = RegistryImage(described.digest, described.config_digest, listing_of(root),
                                                 {"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode()})
    return backend


def wanted(public: Registry, ref: str, pull: str = "auto", **access: object) -> ImageRequest:
    return ImageRequest(ref, access=Access(cert_dir=str(public.certs_dir()), **access), pull=pull)  # type: ignore[arg-type]


def test_the_node_pulls_and_the_user_is_resolved_in_its_report(make_runtime: MakeRuntime, cluster: MemoryBackend,
                                                               public: Registry, public_app: str) -> None:
    rt = make_runtime(cluster)
    made = rt.create("a", image=wanted(public, public_app), node="pve1")
    assert cluster.pulled == [("pve1", public_app)]
    assert cluster.uploads == []                                    # nothing packed or sent from here
    assert sorted(cluster.cts) == [made.vmid]                       # the temporary container is gone
    assert list(cluster.template_files[("pve1", "local")]) == [made.template.split("/")[1]]   # and the archive
    config = Path(made.bundle, "config.json").read_text()
    assert '"uid": 1000' in config, config                          # `app`, from the node's report
    assert '"additionalGids": [\n        2000' in config, config
    again = rt.create("b", image=wanted(public, public_app), node="pve1")
    assert cluster.pulled == [("pve1", public_app)]                  # its template is there: not pulled again
    assert again.template == made.template


def test_who_pulls(make_runtime: MakeRuntime, cluster: MemoryBackend, public: Registry, public_app: str,
                   tmp_path: Path) -> None:
    ctx = make_runtime(cluster)._ctx
    assert nodeimage.way(ctx, wanted(public, public_app)) == "node"
    assert nodeimage.way(ctx, wanted(public, public_app, "workstation")) == "workstation"
    assert nodeimage.way(ctx, wanted(public, public_app, tls_verify=False)) == "workstation"
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    assert nodeimage.way(ctx, wanted(public, public_app, authfile=str(auth))) == "workstation"
    digest = f"{public_app.rsplit(':', 1)[0]}@sha256:{'0' * 64}"
    assert nodeimage.way(ctx, wanted(public, digest)) == "workstation"
    with pytest.raises(errors.ImageError, match=r"^--pull node: Proxmox pulls by tag only"):
        nodeimage.way(ctx, wanted(public, digest, "node"))
    with pytest.raises(errors.ImageError, match=r"^--pull node: oci-archive:/x is no registry image"):
        nodeimage.way(ctx, wanted(public, "oci-archive:/x", "node"))
    old = make_runtime(MemoryBackend(version=(9, 0)))._ctx
    assert nodeimage.way(old, wanted(public, public_app)) == "workstation"
    with pytest.raises(errors.ImageError, match=r"Proxmox VE 9\.0 cannot pull images \(9\.1 and later can\)"):
        nodeimage.way(old, wanted(public, public_app, "node"))


def test_auto_falls_back_to_this_machine_when_the_node_cannot_pull(make_runtime: MakeRuntime,
                                                                   cluster: MemoryBackend, public: Registry,
                                                                   public_app: str) -> None:
    del cluster.registry[public_app]   # the node cannot get it (its network, the registry, a privilege)
    rt = make_runtime(cluster)
    with pytest.raises(errors.ImageError, match=r"^node pve1 could not pull .*app:1: manifest unknown$"):
        rt.create("a", image=wanted(public, public_app, "node"), node="pve1")
    assert [ct.config.get("tags") for ct in cluster.cts.values()] == []   # no temporary container left
    made = rt.create("b", image=wanted(public, public_app), node="pve1")
    assert cluster.pulled == []
    assert len(cluster.uploads) == 1                                   # pulled here, packed, sent
    assert made.template.split("/")[1] in cluster.template_files[("pve1", "local")]


def test_a_template_another_workstation_made_serves_and_its_tree_is_asked_once(
        make_runtime: MakeRuntime, cluster: MemoryBackend, public: Registry, public_app: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_runtime(cluster).create("a", image=wanted(public, public_app), node="pve1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another"))   # another workstation: nothing known
    other = make_runtime(cluster, root=tmp_path / "another-cache")
    made = other.create("b", image=wanted(public, public_app), node="pve1")
    assert made.template == first.template
    assert cluster.pulled == [("pve1", public_app)]                    # pulled once, by the first
    assert '"uid": 1000' in Path(made.bundle, "config.json").read_text()
    calls = cluster.calls.count("describe_image")
    other.create("c", image=wanted(public, public_app), node="pve1")
    assert cluster.calls.count("describe_image") == calls             # the tree is known here now


def test_gc_removes_what_a_killed_node_pull_left(make_runtime: MakeRuntime, cluster: MemoryBackend) -> None:
    rt = make_runtime(cluster)
    cluster.template_files.setdefault(("pve1", "local"), {})["pveoci-oci-0123.tar"] = 10
    cluster.template_files[("pve1", "local")]["x.tar"] = 10
    cluster.create("pve1", 150, {"ostemplate": "local:vztmpl/x.tar", "tags": nodeimage.UNPACK_TAG,
                                 "description": "pveoci: a temporary container, removed when done: unpacked from "
                                                "local:vztmpl/x.tar at 1000"})
    cluster.create("pve1", 151, {"ostemplate": "local:vztmpl/x.tar", "tags": "other"})
    report = rt.gc()
    assert sorted(report.swept) == ["pve1:CT 150", "pve1:pveoci-oci-0123.tar"]
    assert sorted(cluster.cts) == [151]
    assert sorted(cluster.template_files[("pve1", "local")]) == ["x.tar"]


def test_a_tag_that_moved_while_the_node_pulled_leaves_nothing(make_runtime: MakeRuntime, cluster: MemoryBackend,
                                                               public: Registry, public_app: str) -> None:
    from dataclasses import replace

    cluster.registry[public_app] = replace(cluster.registry[public_app], config_digest="sha256:" + "e" * 64)
    rt = make_runtime(cluster)
    with pytest.raises(errors.PveociError, match=r"the pulled archive holds the image sha256:e{64}, not sha256:"):
        rt.create("a", image=wanted(public, public_app, "node"), node="pve1")
    assert cluster.cts == {}                                  # no temporary container, no container
    assert cluster.template_files[("pve1", "local")] == {}    # no archive (the next create pulls it again)


def test_a_long_make_keeps_its_claim_alive(make_runtime: MakeRuntime, cluster: MemoryBackend, public: Registry,
                                           public_app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Minutes of pull, unpack and pack on the node: the claim beats meanwhile, or another create of the image
    would take it over after a minute of silence and make it a second time."""
    import time

    from pveoci.backends.memory import MemoryClaim

    beats: list[float] = []
    monkeypatch.setattr(MemoryClaim, "heartbeat", lambda self: beats.append(time.monotonic()))
    monkeypatch.setattr(nodeimage, "BEAT", 0.02)
    slow = cluster.describe_image

    def describing(*args: object, **kwargs: object) -> object:
        time.sleep(0.3)
        return slow(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cluster, "describe_image", describing)
    make_runtime(cluster).create("a", image=wanted(public, public_app), node="pve1")
    assert len(beats) >= 5, beats


def test_a_storage_the_node_cannot_write_over_ssh_falls_back(make_runtime: MakeRuntime, cluster: MemoryBackend,
                                                             public: Registry, public_app: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    whole = cluster.template_destination
    monkeypatch.setattr(cluster, "template_destination", lambda node, storage: replace(whole(node, storage),
                                                                                       directory=None))
    rt = make_runtime(cluster)
    with pytest.raises(errors.ImageError, match=r"^storage 'local' on pve1 has no directory pveoci reaches over SSH"):
        rt.create("a", image=wanted(public, public_app, "node"), node="pve1")
    rt.create("b", image=wanted(public, public_app), node="pve1")   # auto: pulled here and sent
    assert cluster.pulled == []
    assert len(cluster.uploads) == 1
