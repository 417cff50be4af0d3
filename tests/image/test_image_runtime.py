"""Images through the Python API on the in-memory cluster, pulled from the real registry on loopback: the node's
architecture picks the manifest of a multi-arch index (an arm64 node from an amd64 workstation: pulled again for
it once the node is known), the same image on two nodes is packed once, pull and plan change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pveoci.backends.memory import MemoryBackend
from pveoci.image.source import ImageRequest
from pveoci.image.store import Access
from tests.image.conftest import PushedImages
from tests.image.registry import Registry
from tests.inmemory import MakeRuntime, tiny_bundle


def request(registry: Registry, ref: str, tmp_path: Path) -> ImageRequest:
    return ImageRequest(ref, access=Access(authfile=str(registry.authfile(tmp_path / "auth.json")),
                                           cert_dir=str(registry.certs_dir())))


def test_an_arm64_node_gets_the_arm64_manifest(make_runtime: MakeRuntime, registry: Registry, images: PushedImages,
                                               tmp_path: Path) -> None:
    arm = MemoryBackend(machine="aarch64")
    rt = make_runtime(arm)
    made = rt.create("m", image=request(registry, images.multi, tmp_path))
    ct = arm.cts[made.vmid]
    assert ct.config["arch"] == "arm64"
    config = json.loads(Path(made.bundle, "config.json").read_text())
    # the arm64 manifest's digest, not the index's
    assert config["annotations"]["io.pveoci.image.digest"] != images.multi_digest
    image = rt.pull(request(registry, images.multi, tmp_path))
    assert (image.arch, image.digest) == ("arm64", config["annotations"]["io.pveoci.image.digest"])
    assert tuple(rt.plan(image=request(registry, images.multi, tmp_path)).process.args) == ("cat", "/arch")


def test_one_image_on_two_nodes_is_packed_once_and_sent_to_each(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                                registry: Registry, images: PushedImages,
                                                                tmp_path: Path) -> None:
    two = MemoryBackend(("pve1", "pve2"))
    rt = make_runtime(two)
    wanted = request(registry, images.layered, tmp_path)
    first = rt.create("a", image=wanted, node="pve1")
    second = rt.create("b", image=wanted, node="pve2")
    third = rt.create("c", image=wanted, node="pve2")
    assert first.template == second.template == third.template
    assert sorted(two.uploads) == [("pve1", first.template.split("/")[1]), ("pve2", first.template.split("/")[1])]


def test_pull_and_plan_make_nothing_on_the_cluster(make_runtime: MakeRuntime, memory: MemoryBackend,
                                                   registry: Registry, images: PushedImages, tmp_path: Path) -> None:
    rt = make_runtime()
    wanted = request(registry, images.busybox, tmp_path)
    pulled = rt.pull(wanted)
    assert (pulled.arch, pulled.digest) == ("amd64", images.busybox_digest)
    plan = rt.plan(image=wanted)
    assert {f.field for f in plan.findings} >= {"image.Volumes[/data]", "image.ExposedPorts[8080/tcp]"}
    assert memory.cts == {}
    assert memory.uploads == []


def test_archives_and_layouts_are_images_too(make_runtime: MakeRuntime, memory: MemoryBackend,
                                             tmp_path: Path) -> None:
    """oci:DIR, oci-archive:FILE and docker-archive:FILE: the same image, the same template, no registry."""
    from tests.conftest import need
    from tests.image.registry import build_image, missing_for_registry, skopeo

    need(missing_for_registry())
    layout = build_image(tmp_path / "img", config={"Cmd": ["echo", "from an archive"], "User": "app"})
    skopeo("copy", "--quiet", f"oci:{layout}:latest", f"oci-archive:{tmp_path / 'app.tar'}")
    skopeo("copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{tmp_path / 'docker.tar'}:app:1")
    rt = make_runtime()
    made = [rt.create(f"c{n}", image=ref) for n, ref in enumerate(
        [f"oci:{layout}:latest", f"oci-archive:{tmp_path / 'app.tar'}", f"docker-archive:{tmp_path / 'docker.tar'}"])]
    configs = [json.loads(Path(m.bundle, "config.json").read_text())["process"] for m in made]
    assert {tuple(c["args"]) for c in configs} == {("echo", "from an archive")}
    assert {c["user"]["uid"] for c in configs} == {1000}
    # the OCI forms are one image, one template; docker's archive holds the same layers (its own config)
    assert made[0].template == made[1].template
    assert len(memory.uploads) == 2   # docker's archive: its own manifest, so a template of its own


def test_pull_needs_no_cluster_and_says_what_it_pulled(tmp_path: Path) -> None:
    """As podman pull: with no cluster configured and no node named, for this machine's architecture."""
    import os
    import subprocess
    import sys

    from tests.conftest import need
    from tests.image.registry import build_image, missing_for_registry, skopeo

    need(missing_for_registry())
    layout = build_image(tmp_path / "img", config={"Cmd": ["true"]})
    skopeo("copy", "--quiet", f"oci:{layout}:latest", f"oci-archive:{tmp_path / 'app.tar'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_CACHE_HOME=str(tmp_path / "c"))
    done = subprocess.run([sys.executable, "-m", "pveoci", "pull", f"oci-archive:{tmp_path / 'app.tar'}", "-o", "json"],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["architecture"], shown["layers"], shown["cmd"]) == ("amd64", 1, ["true"])
    assert shown["digest"].startswith("sha256:")
    assert (tmp_path / "c" / "pveoci" / "images" / "oci" / "index.json").is_file()
    refused = subprocess.run([sys.executable, "-m", "pveoci", "pull", "Not A Ref"], env=env, capture_output=True,
                             text=True, check=False, timeout=60)
    assert (refused.returncode, refused.stdout) == (32, "")
    assert refused.stderr.count("\n") == 1


def test_images_lists_the_store_most_recently_used_first(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import need
    from tests.image.registry import build_image, missing_for_registry, skopeo

    need(missing_for_registry())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_CACHE_HOME=str(tmp_path / "c"))

    def pveoci(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", *args], env=env, capture_output=True, text=True,
                              check=False, timeout=120)

    assert (pveoci("images", "-o", "json").stdout, pveoci("images").returncode) == ("[]\n", 0)
    refs = []
    for name in ("one", "two"):
        layout = build_image(tmp_path / name, config={"Cmd": [name]})
        skopeo("copy", "--quiet", f"oci:{layout}:latest", f"oci-archive:{tmp_path / name}.tar")
        refs.append(f"oci-archive:{tmp_path / name}.tar")
        assert pveoci("pull", refs[-1]).returncode == 0
        time.sleep(0.05)
    listed = json.loads(pveoci("images", "-o", "json").stdout)
    assert [i["reference"] for i in listed] == [refs[1], refs[0]]
    assert {i["architecture"] for i in listed} == {"amd64"}
    assert all(i["digest"].startswith("sha256:") and i["size"] > 0 for i in listed)
    shown = pveoci("images").stdout.splitlines()
    assert shown[0].split() == ["REFERENCE", "DIGEST", "ARCH", "SIZE", "LAST", "USED"]
    assert shown[1].startswith(refs[1])


def test_a_create_says_when_it_pulls_and_only_then(make_runtime: MakeRuntime, registry: Registry,
                                                   images: PushedImages, tmp_path: Path) -> None:
    """A big image takes a while to pull: the progress display says so (and says nothing of it once stored)."""

    class Notes:
        def __init__(self) -> None:
            self.said: list[str] = []

        def note(self, message: str) -> None:
            self.said.append(message)

        def transfer(self, what: str, total: int | None) -> object:
            return lambda n: None

        def done(self, what: str) -> None:
            return None

    rt = make_runtime()
    first, second = Notes(), Notes()
    rt.create("p1", image=request(registry, images.busybox, tmp_path), progress=first)  # type: ignore[arg-type]
    rt.create("p2", image=request(registry, images.busybox, tmp_path), progress=second)  # type: ignore[arg-type]
    store = tmp_path / "xdg-cache" / "pveoci" / "images"
    pulled = [n for n in first.said if n.startswith("pulling")]
    assert pulled == [f"pulling image {images.busybox} (amd64) into {store}"]
    assert not [n for n in second.said if n.startswith("pulling")]


def test_an_update_keeps_config_and_annotations_and_undoes_a_failed_start(
        make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry, images: PushedImages,
        tmp_path: Path) -> None:
    rt = make_runtime()
    bundle = tiny_bundle(tmp_path / "b")
    spec = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps({**spec, "annotations": {"team": "blue"}}))
    made = rt.create("u", bundle, node="pve1")
    rt.start("u")
    ct = memory.cts[made.vmid]
    ct.config["mp0"] = "local:vm-100-disk-1,mp=/srv/data,size=1G"
    ct.config["net0"] = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp"
    own = {k: v for k, v in ct.config.items() if k not in ("description", "tags", "entrypoint")}
    old_template = ct.rootfs_template

    dry = rt.update_image("u", request(registry, images.busybox, tmp_path), dry_run=True)
    assert (dry.dry_run, dry.changed, dry.state) == (True, True, None)
    assert dry.kept["mp0"] == own["mp0"]
    assert dry.process["user"] == "1000:1000"
    assert memory.calls.count("swap_rootfs") == 0
    assert ct.rootfs_template == old_template

    done = rt.update_image("u", request(registry, images.busybox, tmp_path))
    assert done.state is not None
    assert done.state.status == "running"
    assert done.state.vmid == made.vmid
    assert {k: v for k, v in ct.config.items() if k not in ("description", "tags", "entrypoint")} == own
    assert done.state.annotations["team"] == "blue"                        # the container's own
    assert done.state.annotations["io.pveoci.image.digest"] == images.busybox_digest   # the image's
    assert ct.rootfs_template == done.new_template.split("/")[1] != old_template
    assert ct.swap == ("none", "")
    assert rt.state("u").template == done.new_template
    assert "pveoci-started" in ct.tags

    # The next image's container does not start: the old config and tree come back, started again.
    from pveoci import errors

    description = ct.config["description"]
    memory.fail("start", errors.TaskFailed("startup for container failed", upid="UPID:x", exitstatus="failed",
                                                  log_tail=[]))
    with pytest.raises(errors.RolledBack, match=r"did not take .startup for container failed.; it is back on"):
        rt.update_image("u", request(registry, images.layered, tmp_path))
    assert ct.config["description"] == description
    assert ct.rootfs_template == done.new_template.split("/")[1]
    assert ct.swap == ("none", "")
    assert rt.state("u").status == "running"
    assert {k: v for k, v in ct.config.items() if k not in ("description", "tags", "entrypoint")} == own
    with pytest.raises(errors.NotFound):
        rt.update_image("nope", images.busybox)


@pytest.mark.parametrize(("interrupted_at", "finished"), [("swap_rootfs", False), ("set_options", True),
                                                         ("start", True)])
def test_an_interrupted_update_is_settled_by_the_next_command(
        make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry, images: PushedImages,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_at: str, finished: bool) -> None:
    """Killed before its config change, an update is undone; after it, finished; either way the container runs."""
    rt = make_runtime()
    made = rt.create("k", tiny_bundle(tmp_path / "b"), node="pve1")
    rt.start("k")
    ct = memory.cts[made.vmid]
    before = (ct.config["description"], ct.rootfs_template, ct.config["entrypoint"])
    real = getattr(memory, interrupted_at)
    calls = []

    def interrupted(*args: object, **kwargs: object) -> object:
        if interrupted_at == "swap_rootfs" and args[2] != "swap":   # the check before the stop passes by
            return real(*args, **kwargs)
        calls.append(args)
        if len(calls) == 1:
            real(*args, **kwargs)   # done, then the workstation is killed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(memory, interrupted_at, interrupted)
    with pytest.raises(KeyboardInterrupt):
        rt.update_image("k", request(registry, images.busybox, tmp_path))
    assert ct.swap[0] == "swapped"
    assert ct.status == ("running" if interrupted_at == "start" else "stopped")
    assert rt._ctx.cache.pending(rt._ctx.cluster, "k") != []
    state = rt.state("k")     # the next command settles it
    assert state.status == "running"
    assert ct.swap == ("none", "")
    assert rt._ctx.cache.pending(rt._ctx.cluster, "k") == []
    now = (ct.config["description"], ct.rootfs_template, ct.config["entrypoint"])
    if finished:   # the config change was made: the new image, whole
        assert all(a != b for a, b in zip(now, before, strict=True))
        assert state.template.endswith(ct.rootfs_template)
    else:          # undone: the old one, whole
        assert now == before
        assert state.template.endswith(before[1])


def test_a_created_container_stays_created_and_a_paused_one_is_refused(
        make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry, images: PushedImages,
        tmp_path: Path) -> None:
    from pveoci import errors

    rt = make_runtime()
    made = rt.create("c", tiny_bundle(tmp_path / "c"), node="pve1")
    done = rt.update_image("c", request(registry, images.busybox, tmp_path))
    assert done.status == "created"
    assert done.state is not None
    assert done.state.status == "created"       # its init waits for `start`, as before
    assert memory.cts[made.vmid].phase == "waiting"
    assert rt.start("c").status == "running"
    rt.pause("c")
    before = dict(memory.cts[made.vmid].config)
    with pytest.raises(errors.Paused, match="resume it before updating its image"):
        rt.update_image("c", request(registry, images.layered, tmp_path))
    assert memory.cts[made.vmid].config == before


def test_an_update_that_cannot_fit_is_refused_before_the_process_stops(
        make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry, images: PushedImages,
        tmp_path: Path) -> None:
    from pveoci import errors

    rt = make_runtime()
    made = rt.create("f", tiny_bundle(tmp_path / "f"), node="pve1")
    pid = rt.start("f").pid
    ct = memory.cts[made.vmid]
    before = dict(ct.config)
    memory.fail("swap_rootfs", errors.PveociError("cannot check the root filesystem of CT 100 on pve1: the root "
                                                  "disk has 10 MiB free; the new image needs 12 MiB"))
    with pytest.raises(errors.PveociError, match="the root disk has 10 MiB free") as raised:
        rt.update_image("f", request(registry, images.busybox, tmp_path))
    assert not isinstance(raised.value, errors.RolledBack)
    assert memory.calls.count("swap_rootfs") == 1
    assert (ct.status, ct.config, rt.state("f").pid) == ("running", before, pid)   # not even stopped
    assert rt._ctx.cache.pending(rt._ctx.cluster, "f") == []


def test_keep_paths_are_checked_and_shown(make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry,
                                          images: PushedImages, tmp_path: Path) -> None:
    from pveoci import errors

    rt = make_runtime()
    made = rt.create("k", tiny_bundle(tmp_path / "k"), node="pve1")
    memory.cts[made.vmid].config["mp0"] = "/srv/x,mp=/srv/data"
    for bad in ("relative/path", "/a/../b", "/", "/tab\there"):
        with pytest.raises(errors.InvalidParameter, match=r"--keep: .* is not a path an update can keep"):
            rt.update_image("k", request(registry, images.busybox, tmp_path), keep=[bad])
    dry = rt.update_image("k", request(registry, images.busybox, tmp_path), keep=["/var/cache/app/"],
                          dry_run=True)
    # the mount point, --keep, and the image's own volume (busybox:1 declares /data)
    assert dry.keeps == ["/srv/data", "/var/cache/app", "/data"]


def test_an_update_on_proxmox_before_9_1_gives_the_init_its_spec_after_the_start(
        make_runtime: MakeRuntime, registry: Registry, images: PushedImages, tmp_path: Path) -> None:
    """No entrypoint option before 9.1: the template's /sbin/init is pveoci's init, and the new process reaches
    it through `init set-spec` once the CT runs, as at create."""
    old = MemoryBackend(version=(9, 0))
    rt = make_runtime(old)
    made = rt.create("l", tiny_bundle(tmp_path / "l"), node="pve1")
    rt.start("l")
    ct = old.cts[made.vmid]
    assert "entrypoint" not in ct.config
    before = len(old.calls)
    done = rt.update_image("l", request(registry, images.busybox, tmp_path))
    assert done.state is not None
    assert done.state.status == "running"
    assert "entrypoint" not in ct.config
    calls = old.calls[before:]
    assert calls.index("start") < calls.index("exec") < calls.index("signal")   # spec placed, then started


def specs_fed(backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What `init set-spec` is given in the backend's containers from now on, one spec a call."""
    fed: list[bytes] = []
    capture = backend.capture

    def watched(node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> object:
        if argv == ["/.pveoci/init", "set-spec"]:
            fed.append(stdin or b"")
        return capture(node, vmid, argv, stdin=stdin)

    monkeypatch.setattr(backend, "capture", watched)
    return fed


def test_an_interrupted_update_before_9_1_gives_the_new_init_its_spec(
        make_runtime: MakeRuntime, registry: Registry, images: PushedImages, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = MemoryBackend(version=(9, 0))
    rt = make_runtime(old)
    made = rt.create("s", tiny_bundle(tmp_path / "s"), node="pve1")
    rt.start("s")
    real = old.set_options

    def killed_after(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)   # the config change made, then the workstation is killed
        monkeypatch.setattr(old, "set_options", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(old, "set_options", killed_after)
    with pytest.raises(KeyboardInterrupt):
        rt.update_image("s", request(registry, images.busybox, tmp_path))
    fed = specs_fed(old, monkeypatch)
    assert rt.state("s").status == "running"       # finished by the next command
    assert len(fed) == 1
    assert fed[0].startswith(b"PVEOCI-SPEC 1\n")
    assert old.cts[made.vmid].phase == "running"


def test_an_update_to_a_process_too_long_for_the_entrypoint_places_its_spec_after_the_start(
        make_runtime: MakeRuntime, memory: MemoryBackend, registry: Registry, images: PushedImages,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a create does: the init alone on the entrypoint option, the spec through `init set-spec`."""
    from pveoci.image.imageconfig import Overrides
    from pveoci.image.source import ImageRequest

    rt = make_runtime()
    made = rt.create("big", tiny_bundle(tmp_path / "big"), node="pve1")
    rt.start("big")
    fed = specs_fed(memory, monkeypatch)
    plain = request(registry, images.busybox, tmp_path)
    big = ImageRequest(plain.ref, Overrides(env=("BIG=" + "x" * 40000,)), plain.access)
    done = rt.update_image("big", big)
    assert done.state is not None
    assert done.state.status == "running"
    assert memory.cts[made.vmid].config["entrypoint"] == "/.pveoci/init"
    assert len(fed) == 1
    assert b"x" * 40000 in fed[0]
