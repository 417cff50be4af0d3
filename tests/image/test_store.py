"""The image store against registries that misbehave (issue 20, item 6): a registry that answers 429 or garbage, a
layer that breaks mid-download or does not match its digest, an image for another architecture, a layer that would
write outside the rootfs. Each is one line (ImageError, exit 32), and nothing half-made stays in the store."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pveoci import errors
from pveoci.image import reference, source
from pveoci.image.imageconfig import Overrides
from pveoci.image.source import ImageRequest
from pveoci.image.store import OWN_ENTRIES, Access, Store
from tests.conftest import need
from tests.image.registry import Registry, build_image, missing_for_registry, push, tagged_manifest

Answer = Callable[[str, str], tuple[int, dict[str, str], bytes] | None]


class FakeRegistry:
    """A registry that is only what a test needs it to be: plain HTTP on loopback, serving one OCI layout's blobs
    (or the test's answer instead), stopped when the test ends."""

    def __init__(self, layout: Path, tag: str, answer: Answer | None = None) -> None:
        self.layout, self.tag, self.answer = layout, tag, answer
        self.seen: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.serve(self, body=True)

            def do_HEAD(self) -> None:
                fake.serve(self, body=False)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    def serve(self, request: http.server.BaseHTTPRequestHandler, *, body: bool) -> None:
        path = request.path
        self.seen.append(f"{request.command} {path}")
        answer = self.answer(request.command, path) if self.answer else None
        if answer is None:
            answer = self.normal(path)
        status, headers, data = answer
        request.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            request.send_header(key, value)
        request.end_headers()
        if body:
            request.wfile.write(data)

    def normal(self, path: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/v2/":
            return 200, {}, b"{}"
        if "/manifests/" in path:
            descriptor = tagged_manifest(self.layout, self.tag)
            return 200, {"Content-Type": descriptor["mediaType"], "Docker-Content-Digest": descriptor["digest"]}, \
                self.blob(descriptor["digest"])
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            return 200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}, self.blob(digest)
        return 404, {}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}'


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(missing_for_registry())
    return build_image(tmp_path_factory.mktemp("store-image"), config={"Cmd": ["true"]})


def plain(store_root: Path) -> Store:
    return Store(store_root, Access(tls_verify=False))


def pull(store: Store, ref: str, arch: str = "amd64") -> None:
    store.pull(reference.parse(ref), arch)


def leftovers(store_root: Path) -> list[str]:
    """What a failed pull left in the store beside complete blobs and the index: partial files, temp dirs."""
    blobs = store_root / "oci" / "blobs" / "sha256"
    out = [p.name for p in (store_root / "oci").iterdir() if p.name not in ("blobs", "index.json", "oci-layout")] \
        if (store_root / "oci").exists() else []
    for blob in blobs.iterdir() if blobs.exists() else []:
        if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            out.append(f"blobs/sha256/{blob.name} (does not match its name)")
    return out + [p.name for p in store_root.iterdir() if p.name not in OWN_ENTRIES]


def listed(store_root: Path) -> list[Any]:
    index = store_root / "oci" / "index.json"
    return json.loads(index.read_text()).get("manifests", []) if index.exists() else []


def test_a_fake_registry_serves_the_image_as_is(layout: Path, tmp_path: Path) -> None:
    """The fake itself: what the refusals below change is all that stands between them and a pull that works."""
    with FakeRegistry(layout, "latest") as fake:
        pull(plain(tmp_path), f"{fake.host}/app:1")
    assert len(listed(tmp_path)) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("answer", "words"), [
    (lambda method, path: (429, {"Retry-After": "0"}, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}')
     if "/manifests/" in path else None, "429"),
    (lambda method, path: (200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, b"\x00garbage{")
     if "/manifests/" in path else None, "image 127.0.0.1"),
    (lambda method, path: (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"") if path != "/v2/" else None, "401"),
    (lambda method, path: (500, {}, b"oops") if "/blobs/" in path else None, "image 127.0.0.1"),
])
def test_a_registry_that_refuses_or_talks_garbage_is_one_line(layout: Path, tmp_path: Path, answer: Answer,
                                                              words: str) -> None:
    with FakeRegistry(layout, "latest", answer) as fake, pytest.raises(errors.ImageError) as caught:
        pull(plain(tmp_path), f"{fake.host}/app:1")
    assert words in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 32
    assert listed(tmp_path) == []
    assert leftovers(tmp_path) == []


def layer_of(layout: Path) -> str:
    manifest = json.loads((layout / "blobs" / "sha256" /
                           tagged_manifest(layout, "latest")["digest"].removeprefix("sha256:")).read_bytes())
    return str(manifest["layers"][-1]["digest"])


def test_a_layer_that_breaks_mid_download_or_lies_about_its_digest(layout: Path, tmp_path: Path) -> None:
    digest = layer_of(layout)
    whole = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    cases: list[Answer] = [
        # cut: the registry says the whole length and sends half of it, then closes
        lambda method, path: (200, {"Content-Length": str(len(whole))}, whole[:len(whole) // 2])
        if digest in path and method == "GET" else None,
        # another blob's bytes under this digest
        lambda method, path: (200, {}, gzip.compress(b"not the layer"))
        if digest in path and method == "GET" else None,
    ]
    for number, (answer, words) in enumerate(zip(cases, ("the download broke off", "does not match its digest"),
                                                                       strict=True)):
        root = tmp_path / f"store{number}"
        with FakeRegistry(layout, "latest", answer) as fake, pytest.raises(errors.ImageError) as caught:
            pull(plain(root), f"{fake.host}/app:1")
        assert words in caught.value.message
        assert "\n" not in caught.value.message
        assert listed(root) == []
        assert leftovers(root) == []


def test_an_image_for_another_architecture_is_refused(registry: Registry, tmp_path: Path) -> None:
    arm = build_image(tmp_path / "arm", config={"Cmd": ["true"]}, arch="arm64")
    push(registry, arm, "latest", "armonly:1")
    store = Store(tmp_path / "store", Access(authfile=str(registry.authfile(tmp_path / "auth.json")),
                                             cert_dir=str(registry.certs_dir())))
    with pytest.raises(errors.ImageError, match="is for arm64, not amd64"):
        pull(store, f"{registry.host}/armonly:1")
    assert store.pull(reference.parse(f"{registry.host}/armonly:1"), "arm64").arch == "arm64"


def with_layer(layout: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """The image tagged latest in `layout` gains a layer holding these members (gzip), as a hostile image would."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    blobs = layout / "blobs" / "sha256"

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    descriptor = tagged_manifest(layout, "latest")
    manifest = json.loads((blobs / descriptor["digest"].removeprefix("sha256:")).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(raw.getvalue()).hexdigest()}")
    config_bytes = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": put(config_bytes), "size": len(config_bytes)}
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer),
                               "size": len(layer)})
    manifest_bytes = json.dumps(manifest).encode()
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry is not None and entry.get("digest") == descriptor["digest"]:
            entry.update(digest=put(manifest_bytes), size=len(manifest_bytes))
    (layout / "index.json").write_text(json.dumps(index))


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x") -> tuple[tarfile.TarInfo,
                                                                                                    bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else b""


@pytest.mark.parametrize(("members", "words"), [
    ([member("../../etc/evil")], "leaves the rootfs"),
    ([member("/etc/evil")], "leaves the rootfs"),
    ([member("evil", tarfile.LNKTYPE, link="../../../etc/shadow")], "leaves the rootfs"),
    ([member("bin/sh2", tarfile.SYMTYPE, link="/"), member("bin/sh2/evil")], "symlink"),
])
def test_a_layer_that_would_write_outside_the_rootfs_is_refused(registry: Registry, tmp_path: Path,
                                                                 members: list[tuple[tarfile.TarInfo, bytes]],
                                                                 words: str) -> None:
    hostile = build_image(tmp_path / "hostile", config={"Cmd": ["true"]})
    with_layer(hostile, members)
    repo = f"hostile-{hashlib.sha256(repr(members).encode()).hexdigest()[:8]}:1"
    push(registry, hostile, "latest", repo)
    request = ImageRequest(f"{registry.host}/{repo}", access=Access(
        authfile=str(registry.authfile(tmp_path / "auth.json")), cert_dir=str(registry.certs_dir())))
    with pytest.raises(errors.ImageError) as caught:
        source.load(request, "amd64", Store(tmp_path / "store", request.access))
    assert words in caught.value.message
    assert "\n" not in caught.value.message
    assert not (tmp_path / "store" / "bundles").exists()   # no config.json written for it


def test_a_digest_reference_in_the_store_asks_nothing(layout: Path, tmp_path: Path) -> None:
    with FakeRegistry(layout, "latest") as fake:
        store = plain(tmp_path)
        image = store.pull(reference.parse(f"{fake.host}/app:1"), "amd64")
        fake.seen.clear()
        again = store.pull(reference.parse(f"{fake.host}/app@{image.digest}"), "amd64")
        assert fake.seen == []
        by_tag = store.pull(reference.parse(f"{fake.host}/app:1"), "amd64")
        assert [s for s in fake.seen if "/blobs/" in s] == []
    assert again.digest == by_tag.digest == image.digest


def test_without_skopeo_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(errors.ImageError, match="apt install skopeo"):
        pull(plain(tmp_path), "127.0.0.1:1/app:1")


def test_a_second_load_of_an_image_reads_no_layer(layout: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What a create asks of the tree (its size, the program along PATH, the user in /etc/passwd) is kept under the
    image's digest: merging reads every layer (seconds for a real image), a second create of it need not."""
    from pveoci.image import layers

    with FakeRegistry(layout, "latest") as fake:
        request = ImageRequest(f"{fake.host}/app:1", access=Access(tls_verify=False))
        store = Store(tmp_path, request.access)
        first, scanned = source.load(request, "amd64", store)
        assert first.image is not None
        assert first.image.find_executable("true", None, "/") == "/bin/true"

        def no_merge(*args: object) -> None:
            raise AssertionError("the layers were merged again")

        monkeypatch.setattr(layers, "merge", no_merge)
        again, rescanned = source.load(request, "amd64", store)
        assert again.image is not None
        assert again.image.find_executable("true", None, "/") == "/bin/true"
        assert rescanned.size == scanned.size > 0
        assert again.spec.process == first.spec.process
        with pytest.raises(AssertionError, match="merged again"):   # a question not asked before merges
            again.image.find_executable("sh", None, "/")


def test_gc_forgets_images_unused_for_long_and_what_only_they_had(layout: Path, tmp_path: Path) -> None:
    """An image store grows with every image pulled: what no create used for long goes (its blobs, lookups and
    generated config.json), never what another image shares or a container's bundle; a killed pull's leftovers
    go once old. Another image used recently stays whole."""
    import os
    import time

    other_layout = build_image(tmp_path / "other", config={"Cmd": ["sh"]})   # the same busybox base layer
    with FakeRegistry(layout, "latest") as old_one, FakeRegistry(other_layout, "latest") as new_one:
        store = plain(tmp_path / "store")
        old_request = ImageRequest(f"{old_one.host}/app:1", access=store.access)
        old, _ = source.load(old_request, "amd64", store)
        kept_bundle, _ = source.load(ImageRequest(f"{old_one.host}/app:1", Overrides(args=["id"]),
                                                  store.access), "amd64", store)
        new, _ = source.load(ImageRequest(f"{new_one.host}/app:1", access=store.access), "amd64", store)
    assert old.image is not None
    assert new.image is not None
    month = time.time() - 31 * 86400
    for used in (store.root / "used" / old.image.image.name, old.path / "config.json",
                 kept_bundle.path / "config.json"):
        os.utime(used, (month, month))
    leftover = store.root / "container_images_storage_123"   # what a killed skopeo leaves in its TMPDIR
    half = store.root / "lookups" / f".{new.image.image.name}.json.4242"   # a killed create's half-written file
    for made in (leftover, half):
        made.write_bytes(b"x" * 100)
        os.utime(made, (month, month))
    shared = {layer.digest for layer in old.image.image.layers} & {layer.digest for layer in new.image.image.layers}
    assert shared   # the base layer: it must survive

    gone, freed = store.prune(30 * 86400, keep={str(kept_bundle.path)})

    assert gone == [old.image.image.name]
    assert freed > 0
    assert [m for m in listed(store.root) if m["annotations"]["org.opencontainers.image.ref.name"]
            == new.image.image.name]
    blobs = {f"sha256:{p.name}" for p in (store.root / "oci" / "blobs" / "sha256").iterdir()}
    assert {layer.digest for layer in new.image.image.layers} <= blobs
    assert shared <= blobs   # the base layer both have stays
    assert old.image.image.stored is not None
    assert not old.image.image.stored.exists()   # its manifest (and config) went
    assert not old.path.exists()
    assert kept_bundle.path.exists()   # a container's bundle stays
    assert not store.lookups(old.image.image.name).exists()
    assert store.lookups(new.image.image.name).exists()
    assert not leftover.exists()
    assert not half.exists()
    assert leftovers(store.root) == []
    # the image that went is pulled again when asked for
    with FakeRegistry(layout, "latest") as again:
        assert store.pull(reference.parse(f"{again.host}/app:1"), "amd64").digest == old.image.image.digest


@pytest.mark.parametrize("where", ["docker", "podman"])
def test_credentials_come_from_dockers_and_podmans_own_files(registry: Registry, images: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """No flag, no variable: `docker login` wrote ~/.docker/config.json, `podman login` wrote
    $XDG_RUNTIME_DIR/containers/auth.json; pveoci's pull finds either, as podman would."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    target = home / ".docker" / "config.json" if where == "docker" else runtime / "containers" / "auth.json"
    target.parent.mkdir(parents=True)
    registry.authfile(target)
    store = Store(tmp_path / "store", Access(cert_dir=str(registry.certs_dir())))
    assert store.pull(reference.parse(images.busybox), "amd64").digest == images.busybox_digest
    target.unlink()
    with pytest.raises(errors.ImageError, match="401"):
        Store(tmp_path / "other", store.access).pull(reference.parse(images.busybox), "amd64")


@pytest.mark.parametrize(("said", "kind"), [
    # skopeo's words after a blob whose digest (hex: "403", "401", "429" and "404" inside) does not match
    ('time="x" level=fatal msg="writing blob: happened during read: Digest did not match, expected '
     'sha256:4011404a, got sha256:3535772b2ac0e3403378ce429"', "does not match its digest"),
    ('time="x" level=fatal msg="reading manifest 1: received unexpected HTTP status: 403 Forbidden"',
     "denied access (403)"),
    ('time="x" level=fatal msg="initializing source: requested access to the resource is denied"',
     "denied access (403)"),
    ('time="x" level=fatal msg="reading manifest 1: unauthorized: authentication required"', "credentials (401)"),
])
def test_a_status_code_counts_as_a_word_not_inside_a_digest(said: str, kind: str) -> None:
    from pveoci.image.store import explain

    assert kind in explain(said)
