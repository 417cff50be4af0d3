"""The workstation's image store: images pulled with skopeo into one OCI layout, found again by manifest digest.

Why skopeo (Debian's, 1.9+): it is the containers project's own client, maintained with podman, and it already
does what a user's registries need: the auth files podman and docker write and docker's credential helpers,
registries.conf's mirrors and blocked registries, certificates per registry, signature policies, retries, every
transport (registries, OCI and docker archives, layouts), the choice of a multi-arch index's manifest. pveoci
calls it without a shell, with every value checked (reference.py), and never with a secret on its command line:
credentials stay in the files skopeo reads.

What a pull costs: a reference with a digest already in the store, nothing; a tag, one request (the manifest,
`skopeo inspect --raw`), then the copy of what the store lacks (skopeo skips the blobs it has), pinned to the
digest that request gave, so a tag moved meanwhile cannot mix two images.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pveoci import errors
from pveoci.image.layers import Layer
from pveoci.image.reference import Reference

SKOPEO = "skopeo"
INSPECT_TIMEOUT = "120s"
MANIFEST_MAX = 4 << 20
CONFIG_MAX = 8 << 20
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
UNUSED_MAX = 30 * 24 * 3600.0     # gc forgets an image no create used for this long
STAGING_MAX_AGE = 3600.0          # what a killed pull left beside the store, once no pull can still be writing it
OWN_ENTRIES = ("oci", "lock", "used", "lookups", "bundles", "described")


@dataclass(frozen=True)
class Access:
    """How to reach registries, beyond skopeo's defaults: podman's `--authfile`, `--cert-dir`, `--tls-verify`."""

    authfile: str | None = None
    cert_dir: str | None = None
    tls_verify: bool = True

    def flags(self, prefix: str = "") -> list[str]:
        """skopeo's options for the source (`--src-` for copy) side."""
        out = []
        if self.authfile:
            out += [f"--{prefix}authfile", self.authfile]
        if self.cert_dir:
            out += [f"--{prefix}cert-dir", self.cert_dir]
        if not self.tls_verify:
            out.append(f"--{prefix}tls-verify=false")
        return out


@dataclass(frozen=True)
class Image:
    """An image in the store, for one architecture: its manifest (by digest), config and layers."""

    reference: Reference
    digest: str                     # the manifest's digest where it came from (the registry's), what names it
    arch: str
    config: dict[str, Any] = field(repr=False)
    layers: tuple[Layer, ...] = field(repr=False)
    compressed: int = 0             # bytes of its layers as stored
    stored: Path | None = None      # its manifest's blob in the store (what it is kept under)
    name: str = ""                  # its name in the store's index.json
    config_digest: str = ""         # its config blob's digest, where known (what a node's pull is checked by)

    @property
    def process(self) -> dict[str, Any]:
        """The image config's `config` object (Entrypoint, Cmd, Env, ...), {} when it has none."""
        value = self.config.get("config")
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Stored:
    """One image of the store, as `pveoci images` lists it."""

    reference: str      # as the user named it when it was last pulled or used
    digest: str         # the manifest's, where it came from
    arch: str
    size: int           # bytes of its layers and config, as stored (compressed)
    used: float         # when a create or pull last used it (seconds since the epoch)

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "architecture": self.arch, "size": self.size,
                "used": self.used}


def default_root() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("pveoci") / "images"


class Store:
    """One OCI layout (blobs shared by every image) under `root`; each image named in its index.json by the
    digest and architecture it was pulled for."""

    def __init__(self, root: Path | None = None, access: Access | None = None) -> None:
        self.root = root or default_root()
        self.layout = self.root / "oci"
        self.access = access or Access()
        self._resolved: dict[tuple[str, str], str] = {}   # what tags named when this store asked

    # ------------------------------------------------------------------ pulling

    def pull(self, ref: Reference, arch: str, note: Callable[[str], None] | None = None) -> Image:
        """The image `ref` names for `arch` (amd64, arm64), from the store or copied into it; `note` is told what
        is fetched (a progress display's note)."""
        _need_skopeo()
        digest = ref.digest
        if ref.remote and not digest:
            digest = self._resolve(ref, arch)
        if digest:
            found = self.find(ref, digest, arch)
            if found is not None:
                self._used(_name(digest, arch), ref)
                return found
        name = _name(digest, arch) if digest else _local_name(ref, arch)
        source = ref.skopeo(digest if ref.remote else "")
        if note is not None:
            note(f"pulling image {ref} ({arch}) into {self.root}")
        with self._locked():
            self._skopeo(["--override-arch", arch, "--override-os", "linux", "copy", "--quiet", "--retry-times", "2",
                          *self.access.flags("src-"), source, f"oci:{self.layout}:{name}"], ref)
        image = self._read(ref, name, arch, digest)
        if image is None:
            raise errors.ImageError(f"image {ref}: skopeo copied it but the store does not list it")
        self._used(name, ref)
        return image

    def describe(self, ref: Reference, arch: str) -> Image:
        """The image `ref` names for `arch` without its layers (a node pulls them: `--pull node`): its digest and
        config, from the registry (a tag: one request, the manifest or index; then, the first time, the manifest
        and the config), kept here by digest."""
        _need_skopeo()
        digest = ref.digest or self._resolve(ref, arch)
        kept = self.description(_name(digest, arch))
        try:
            known = _json(kept.read_bytes(), "a kept description")
        except (OSError, errors.ImageError):
            known = self._described(ref, digest, arch)
            with contextlib.suppress(OSError):
                kept.parent.mkdir(parents=True, exist_ok=True)
                _write_json(kept, known)
        self._used(_name(digest, arch), ref)
        digest = str(known.get("digest") or digest)
        return Image(ref, digest, arch, known["config"], (), int(known.get("compressed", 0)), None,
                     _name(digest, arch), str(known.get("config_digest", "")))

    def _described(self, ref: Reference, digest: str, arch: str) -> dict[str, Any]:
        """The manifest `digest` names (an index's for `arch`) and its config, each checked against its digest."""
        manifest: dict[str, Any] = {}
        for _ in range(2):
            raw = self._inspect(ref, digest, ["--raw"], MANIFEST_MAX)
            manifest = _checked(raw, digest, f"image {ref}: the registry's manifest")
            if manifest.get("mediaType") not in INDEX_TYPES and "manifests" not in manifest:
                break
            digest = _pick(manifest, arch, ref)
        config_ref = manifest.get("config")
        if not isinstance(config_ref, dict):
            raise errors.ImageError(f"image {ref}: its manifest has no config")
        config = _checked(self._inspect(ref, digest, ["--config", "--raw"], CONFIG_MAX), config_ref.get("digest"),
                          f"image {ref}: its config")
        found = config.get("architecture")
        if found != arch:
            raise errors.ImageError(f"image {ref} is for {found or 'an unnamed architecture'}, not {arch} (the "
                                    "node's): pull one built for it, or name a multi-arch image")
        layers = [item for item in manifest.get("layers", []) if isinstance(item, dict)]
        return {"digest": digest, "config": config, "config_digest": config_ref.get("digest"),
                "compressed": sum(int(i.get("size", 0) or 0) for i in layers)}

    def _inspect(self, ref: Reference, digest: str, flags: list[str], limit: int) -> bytes:
        raw = self._skopeo(["--command-timeout", INSPECT_TIMEOUT, "inspect", *flags, "--retry-times", "1",
                            *self.access.flags(), ref.skopeo(digest)], ref, capture=True)
        if len(raw) > limit:
            raise errors.ImageError(f"image {ref}: the registry sent more than {limit} bytes for a manifest or config")
        return raw

    def find(self, ref: Reference, digest: str, arch: str) -> Image | None:
        """The stored image pulled as `digest` for `arch`, if its blobs are all there."""
        with self._locked():
            return self._read(ref, _name(digest, arch), arch, digest)

    def prune(self, unused_for: float, keep: Collection[str] = ()) -> tuple[list[str], int]:
        """Forget the images no create used for `unused_for` seconds, and every blob, lookup and generated bundle
        only they had; what skopeo left of a killed pull goes too. Bundles in `keep` (a container's) stay. The
        names of the images that went, and the bytes freed."""
        cutoff = time.time() - unused_for
        with self._locked():
            index_path = self.layout / "index.json"
            try:
                index = _json(index_path.read_bytes(), "the image store's index.json")
            except FileNotFoundError:
                index = {"schemaVersion": 2, "manifests": []}
            entries = [m for m in index.get("manifests", []) if isinstance(m, dict)]
            gone = [m for m in entries if self._last_use(_ref_name(m)) < cutoff]
            kept = [m for m in entries if m not in gone]
            if gone:
                _write_json(index_path, {**index, "manifests": kept})
            freed = self._sweep_blobs(kept) + self._sweep_files(cutoff, keep, {_ref_name(m) for m in gone})
        return [_ref_name(m) for m in gone], freed

    def lookups(self, name: str) -> Path:
        """Where what creates ask of the image stored as `name` is kept (lookups.py)."""
        return self.root / "lookups" / f"{name}.json"

    def description(self, name: str) -> Path:
        """Where describe() keeps the digest and config of the image stored as `name` (a node pulls its layers)."""
        return self.root / "described" / f"{name}.json"

    def tree(self, name: str) -> Path:
        """Where what a node reported of the image's tree is kept, when a node pulled it (nodetree.py)."""
        return self.root / "lookups" / f"{name}.tree"

    def _last_use(self, name: str) -> float:
        try:
            return (self.root / "used" / name).stat().st_mtime
        except OSError:
            return 0.0

    def _used(self, name: str, ref: Reference) -> None:
        """Mark the image as used now (what prune() goes by), and by what name (what images() shows)."""
        with contextlib.suppress(OSError):
            (self.root / "used").mkdir(parents=True, exist_ok=True)
            (self.root / "used" / name).write_text(str(ref))

    def images(self) -> list[Stored]:
        """The store's images, the most recently used first."""
        try:
            index = _json((self.layout / "index.json").read_bytes(), "the image store's index.json")
        except FileNotFoundError:
            return []
        out = []
        for entry in index.get("manifests", []):
            name = _ref_name(entry) if isinstance(entry, dict) else ""
            if not name:
                continue
            head, _, arch = name.rpartition(".")
            digest = head.replace("-", ":", 1) if head.startswith("sha256-") else str(entry.get("digest", ""))
            try:
                reference = (self.root / "used" / name).read_text()
                manifest = _json(self._blob(entry.get("digest"), MANIFEST_MAX), "a manifest")
            except (OSError, errors.ImageError):
                continue
            parts = [manifest.get("config", {}), *manifest.get("layers", [])]
            size = sum(int(p.get("size", 0) or 0) for p in parts if isinstance(p, dict))
            out.append(Stored(reference, digest, arch, size, self._last_use(name)))
        return sorted(out, key=lambda s: -s.used)

    def _sweep_blobs(self, kept: list[dict[str, Any]]) -> int:
        """Every blob no kept manifest names (the layout is locked: no pull is writing one)."""
        wanted = set()
        for entry in kept:
            digest = str(entry.get("digest", ""))
            wanted.add(digest)
            with contextlib.suppress(errors.ImageError):
                manifest = _json(self._blob(digest, MANIFEST_MAX), "a manifest")
                wanted.add(str(manifest.get("config", {}).get("digest", "")))
                wanted.update(str(layer.get("digest", "")) for layer in manifest.get("layers", [])
                              if isinstance(layer, dict))
        freed = 0
        blobs = self.layout / "blobs" / "sha256"
        for blob in blobs.iterdir() if blobs.is_dir() else []:
            if f"sha256:{blob.name}" not in wanted:
                freed += _remove(blob)
        return freed

    def _sweep_files(self, cutoff: float, keep: Collection[str], gone: set[str]) -> int:
        """Lookups of images that went, generated bundles unused since the cutoff (unless a container's), and
        what a killed skopeo left beside the store."""
        freed = 0
        for name in gone:
            freed += _remove(self.lookups(name))
            freed += _remove(self.tree(name))
            freed += _remove(self.root / "used" / name)
        bundles = self.root / "bundles"
        for folder in bundles.iterdir() if bundles.is_dir() else []:
            if str(folder) not in keep and _mtime(folder / "config.json") < cutoff:
                freed += _remove(folder)
        for kept in (self.root / "described").glob("*.json"):   # images a node pulled: no layers here
            name = kept.name.removesuffix(".json")
            if self._last_use(name) < cutoff:
                freed += sum(_remove(p) for p in (self.description(name), self.lookups(name), self.tree(name),
                                                  self.root / "used" / name))
        stale = time.time() - STAGING_MAX_AGE
        for entry in self.root.iterdir() if self.root.is_dir() else []:
            if entry.name not in OWN_ENTRIES and _mtime(entry) < stale:
                freed += _remove(entry)
        # a killed writer's half-written file (".name.PID", renamed into place once whole)
        for partial in [*self.root.glob("lookups/.*"), *self.root.glob("bundles/*/.*"), *self.layout.glob(".*")]:
            if _mtime(partial) < stale:
                freed += _remove(partial)
        return freed

    def _resolve(self, ref: Reference, arch: str) -> str:
        """The digest of the manifest a tag names now for `arch`: one request (the manifest or index), once per
        Store (a create that loads the image again, planned for its node, gets the same image)."""
        key = (str(ref), arch)
        if key not in self._resolved:
            self._resolved[key] = self._ask_digest(ref, arch)
        return self._resolved[key]

    def _ask_digest(self, ref: Reference, arch: str) -> str:
        raw = self._skopeo(["--command-timeout", INSPECT_TIMEOUT, "inspect", "--raw", "--retry-times", "1",
                            *self.access.flags(), ref.skopeo()], ref, capture=True)
        document = _json(raw, f"image {ref}: the registry's manifest")
        media = document.get("mediaType", "")
        if media in INDEX_TYPES or (not media and "manifests" in document):
            return _pick(document, arch, ref)
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    # ------------------------------------------------------------------ reading the layout

    def _read(self, ref: Reference, name: str, arch: str, digest: str) -> Image | None:
        try:
            index = _json((self.layout / "index.json").read_bytes(), "the image store's index.json")
        except FileNotFoundError:
            return None
        entry = next((m for m in index.get("manifests", []) if isinstance(m, dict)
                      and m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name), None)
        if entry is None:
            return None
        manifest = _json(self._blob(entry.get("digest"), MANIFEST_MAX), f"image {ref}: its manifest")
        config_ref = manifest.get("config")
        if not isinstance(config_ref, dict):
            raise errors.ImageError(f"image {ref}: its manifest has no config")
        config = _json(self._blob(config_ref.get("digest"), CONFIG_MAX), f"image {ref}: its config")
        layers = []
        compressed = 0
        for item in manifest.get("layers", []):
            if not isinstance(item, dict):
                raise errors.ImageError(f"image {ref}: its manifest lists a layer that is not an object")
            path = self._blob_path(item.get("digest"))
            if not path.exists():
                return None   # pruned: pulled again
            layers.append(Layer(path=path, media_type=str(item.get("mediaType", "")), digest=str(item["digest"])))
            compressed += int(item.get("size", 0) or 0)
        found = config.get("architecture")
        if found != arch:
            raise errors.ImageError(f"image {ref} is for {found or 'an unnamed architecture'}, not {arch} (the "
                                    "node's): pull one built for it, or name a multi-arch image")
        return Image(ref, digest or str(entry.get("digest")), arch, config, tuple(layers), compressed,
                     self._blob_path(entry.get("digest")), name)

    def _blob_path(self, digest: object) -> Path:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise errors.ImageError(f"the image store names a blob {digest!r} that is no sha256 digest")
        return self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _blob(self, digest: object, limit: int) -> bytes:
        path = self._blob_path(digest)
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except OSError as exc:
            raise errors.ImageError(f"cannot read blob {digest} of the image store: {exc.strerror}") from None
        if len(data) > limit:
            raise errors.ImageError(f"blob {digest} is larger than {limit} bytes: not a manifest or config")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise errors.ImageError(f"blob {digest} of the image store does not match its digest")
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of the layout's index.json at a time (two pulls at once), on this machine."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ skopeo

    def _skopeo(self, args: list[str], ref: Reference, *, capture: bool = False) -> bytes:
        env = dict(os.environ)
        env.setdefault("TMPDIR", str(self.root))   # the layers it stages, beside the store, not in a small /tmp
        try:
            done = subprocess.run([SKOPEO, *args], stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                  check=False)
        except OSError as exc:
            raise errors.ImageError(f"cannot run skopeo: {exc.strerror}") from None
        if done.returncode != 0:
            raise errors.ImageError(f"image {ref}: {explain(done.stderr.decode('utf-8', 'replace'))}")
        return done.stdout if capture else b""


def _need_skopeo() -> None:
    if shutil.which(SKOPEO) is None:
        raise errors.ImageError("skopeo is not installed on this machine: pveoci reaches registries with it "
                                "(Debian/Ubuntu: apt install skopeo)")


def _ref_name(entry: dict[str, Any]) -> str:
    annotations = entry.get("annotations")
    return str(annotations.get("org.opencontainers.image.ref.name", "")) if isinstance(annotations, dict) else ""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> int:
    """Remove a file or a tree; the bytes it held (0 when it was not there)."""
    if path.is_dir() and not path.is_symlink():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
        return size
    try:
        size = path.lstat().st_size
        path.unlink()
    except OSError:
        return 0
    return size


def _write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


def _name(digest: str, arch: str) -> str:
    return f"{digest.replace(':', '-')}.{arch}"


def _local_name(ref: Reference, arch: str) -> str:
    return "local-" + hashlib.sha256(str(ref).encode()).hexdigest()[:32] + f".{arch}"


def _pick(index: dict[str, Any], arch: str, ref: Reference) -> str:
    """The manifest of an index for linux/arch (arm64's variant v8 or none), as containerd's platform matcher."""
    offered = []
    for item in index.get("manifests", []):
        if not isinstance(item, dict):
            continue
        platform = item.get("platform") if isinstance(item.get("platform"), dict) else {}
        assert isinstance(platform, dict)
        offered.append(f"{platform.get('os', '?')}/{platform.get('architecture', '?')}")
        if platform.get("os") == "linux" and platform.get("architecture") == arch \
                and platform.get("variant") in (None, "", "v8" if arch == "arm64" else None):
            digest = item.get("digest")
            if isinstance(digest, str) and _DIGEST.match(digest):
                return digest
    raise errors.ImageError(f"image {ref} has no linux/{arch} manifest (the node's architecture); it offers "
                            f"{', '.join(offered) or 'none'}")


def _checked(raw: bytes, digest: object, what: str) -> dict[str, Any]:
    """A manifest or config the registry sent, as JSON, once its bytes are the digest they were asked by."""
    if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise errors.ImageError(f"{what} does not match its digest {digest}")
    return _json(raw, what)


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.ImageError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise errors.ImageError(f"{what} is not a JSON object")
    return value


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_KINDS = (
    (("unauthorized", "authentication required", "401"),
     "the registry refused the credentials (401): log in with `podman login` or `docker login`, or name an "
     "auth file with --authfile"),
    (("denied", "403"), "the registry denied access (403)"),
    (("toomanyrequests", "too many requests", "429"), "the registry asks to slow down (429 too many requests): "
     "try again later"),
    (("manifest unknown", "name unknown", "not found", "404"), "no such image in the registry"),
    (("x509", "certificate"), "the registry's TLS certificate is not trusted: add its CA to the system, or name "
     "a directory holding ca.crt with --cert-dir"),
    (("server gave http response to https client",), "the registry speaks plain HTTP: pass --tls-verify=false "
     "only if you trust the network"),
    (("connection refused", "no such host", "i/o timeout", "network is unreachable", "context deadline"),
     "cannot reach the registry"),
    (("digest did not match",), "what the registry sent does not match its digest"),
    (("unexpected eof", "connection reset"), "the download broke off"),
)
_NOISE = re.compile(r'^Error parsing image name "[^"]*": ')


def explain(stderr: str) -> str:
    """skopeo's error as one line: what kind it is, then skopeo's own words (their last part). A status code counts
    as a word only: the digests skopeo quotes are hex, and "403" inside one is no refusal."""
    messages = [bytes(m, "utf-8").decode("unicode_escape", "replace") for m in _MSG.findall(stderr)]
    text = (messages[-1] if messages else stderr.strip().splitlines()[-1] if stderr.strip() else
            "skopeo failed without a message")
    text = _NOISE.sub("", " ".join(text.split()))
    lowered = text.lower()
    for needles, meaning in _KINDS:
        if any(re.search(rf"\b{n}\b", lowered) if n.isdigit() else n in lowered for n in needles):
            return f"{meaning} ({_tail(text)})"
    return _tail(text)


def _tail(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]
