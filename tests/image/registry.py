"""A real OCI registry (Debian's docker-registry) on loopback, and OCI images built by the tests with umoci and
pushed there with skopeo: no network, no Docker Hub."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.pids import stop
from tests.testbed import parts
from tests.testbed.bundle import make_busybox_bundle

DOCKER_REGISTRY = "/usr/bin/docker-registry"
# Tool -> the Debian package that brings it.
TOOLS = {"skopeo": "skopeo", "umoci": "umoci", DOCKER_REGISTRY: "docker-registry"}

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

# Every file of a built image gets this mtime and its config this creation time: the same inputs give the same
# layer, config and manifest digests on every run.
EPOCH = 946684800  # 2000-01-01T00:00:00Z
CREATED = "2000-01-01T00:00:00Z"

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534::/:/bin/false\n")
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"


def missing_for_registry() -> list[str]:
    """What the registry and the images need: skopeo, umoci, docker-registry, busybox for the rootfs, and root (umoci
    unpacks and repacks without --rootless, and a directory of the image belongs to uid 1000)."""
    out = [] if os.geteuid() == 0 else ["root (to build images with umoci)"]
    out += [f"{tool} (Debian package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    return out + parts.missing_for_busybox()


class RegistryError(RuntimeError):
    """The registry did not start, or a tool that builds or pushes an image failed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _htpasswd_line(user: str, password: str) -> str:
    """One bcrypt entry (docker-registry takes no other kind), made with bcrypt (paramiko's dependency: always there).
    Cost 4, the least bcrypt allows: the registry checks the password on every request, and at the usual cost
    of 10-12 that is 0.1-0.3 s each."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed}\n"


def _q(value: str) -> str:
    """A YAML scalar: a JSON string is a valid double-quoted one."""
    return json.dumps(value)


class Registry:
    """`docker-registry serve` on 127.0.0.1 and a free port, with its own storage, TLS certificate (for 127.0.0.1 and
    localhost), htpasswd user and log, all under workdir; stopped by its pid on exit.

    auth=False: anonymous pull and push. tls=False: plain HTTP (an "insecure registry")."""

    def __init__(self, workdir: Path | None = None, *, auth: bool = True, tls: bool = True, user: str = "pusher",
                 password: str | None = None, timeout: float = 15.0) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="pveoci-registry-")) if workdir is None else workdir
        self.auth = auth
        self.tls = tls
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(16)
        self.timeout = timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """What an image reference names: `127.0.0.1:PORT`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def cafile(self) -> Path:
        """The PEM a client must trust (the registry's self-signed certificate)."""
        if not self.tls:
            raise RegistryError("this registry speaks plain HTTP: it has no certificate")
        return self.workdir / "registry.crt"

    @property
    def keyfile(self) -> Path:
        return self.workdir / "registry.key"

    @property
    def log_file(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.yml"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def authfile(self, path: Path) -> Path:
        """Write a containers-auth.json (skopeo's --authfile, podman's, Docker's config.json shape) for this
        registry's user; returns path."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump({"auths": {self.host: {"auth": token}}}, out)
        return path

    def certs_dir(self) -> Path:
        """A directory as skopeo's --cert-dir (and /etc/containers/certs.d/HOST) wants it: ca.crt, the CA to trust."""
        folder = self.workdir / "certs.d" / self.host
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.cafile, folder / "ca.crt")
        return folder

    def _write_config(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {_q(str(storage))}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {_q(f'127.0.0.1:{self.port}')}",
            f"  secret: {_q(secrets.token_hex(16))}",
        ]
        if self.tls:
            if not self.cafile.exists():
                from fakepve.certs import make_cert  # type: ignore[import-untyped]

                make_cert(str(self.workdir), name="registry", hosts=["127.0.0.1", "localhost"])
            lines += ["  tls:", f"    certificate: {_q(str(self.cafile))}", f"    key: {_q(str(self.keyfile))}"]
        if self.auth:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(_htpasswd_line(self.user, self.password))
            lines += ["auth:", "  htpasswd:", "    realm: pveoci-test-registry", f"    path: {_q(str(htpasswd))}"]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _answers(self) -> bool:
        """True once GET /v2/ gets the answer a ready registry gives (401 with auth, 200 without)."""
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.tls:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(self.cafile))))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(f"{self.url}/v2/", timeout=2) as response:
                return not self.auth and response.status == 200
        except urllib.error.HTTPError as e:
            return self.auth and e.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A free port found now may be taken before the registry binds it: then try another.
        for _attempt in range(3):
            self.port = _free_port()
            self._write_config()
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen([DOCKER_REGISTRY, "serve", str(self.config_file)],
                                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if self._answers():
                    return self
                time.sleep(0.05)
            exited = self.process.poll() is not None
            self.stop()
            if not (exited and "address already in use" in self.log_tail()):
                why = "exited" if exited else f"did not answer GET /v2/ in {self.timeout} s"
                raise RegistryError(f"docker-registry on {self.host} {why}; log {self.log_file}:\n{self.log_tail()}")
        raise RegistryError(f"docker-registry found no free port; log {self.log_file}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the registry by its pid, wait, then kill it if it lingers."""
        if self.process is None:
            return
        stop(self.process)
        self.process = None

    def __enter__(self) -> Registry:
        try:
            return self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def skopeo_options(self, prefix: str = "") -> list[str]:
        """skopeo's options to reach this registry; prefix "src-" or "dest-" for a copy, "" for inspect. Credentials
        go in a file (never on a command line), the CA in a cert dir; plain HTTP turns TLS verification off."""
        options = []
        if self.auth:
            options += [f"--{prefix}authfile", str(self.authfile(self.workdir / "auth.json"))]
        if self.tls:
            options += [f"--{prefix}cert-dir", str(self.certs_dir())]
        else:
            options.append(f"--{prefix}tls-verify=false")
        return options


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run skopeo (its trust policy off: the tests check digests, not signatures); a failure raises with stderr."""
    command = ["skopeo", "--insecure-policy", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RegistryError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _umoci(*args: str) -> None:
    proc = subprocess.run(["umoci", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RegistryError(f"umoci {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


def _settle(tree: Path) -> None:
    """Give every entry under tree (tree too) the fixed mtime: layer digests then depend on contents only."""
    for entry in [tree, *tree.rglob("*")]:
        os.utime(entry, (EPOCH, EPOCH), follow_symlinks=False)


def _base_rootfs(rootfs: Path, working_dir: str | None) -> None:
    """Fill rootfs with the busybox rootfs of make_busybox_bundle, plus a user `app` (1000:1000, home /home/app) and
    a group `extra` (2000) that lists app; the image's working directory, if it names one, exists in it."""
    with tempfile.TemporaryDirectory(prefix="pveoci-busybox-") as tmp:
        shutil.copytree(make_busybox_bundle(Path(tmp)) / "rootfs", rootfs, symlinks=True, dirs_exist_ok=True)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    home = rootfs / "home" / "app"
    home.mkdir(parents=True)
    os.chown(home, 1000, 1000)
    if working_dir:
        (rootfs / working_dir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    _settle(rootfs)


def _apply(rootfs: Path, changes: Mapping[str, bytes | None]) -> None:
    """One layer's changes: a file per path (made executable when it starts with #!), a directory for a path that
    ends in "/", and a deletion (a whiteout in the layer) for None."""
    for name, content in changes.items():
        target = rootfs / name.lstrip("/")
        if content is None:
            if not target.exists() and not target.is_symlink():
                raise ValueError(f"cannot delete {name}: no lower layer has it")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        elif name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o755 if content.startswith(b"#!") else 0o644)
    _settle(rootfs)


# The image config's fields (OCI names) -> umoci config options. A list gives the option once per item.
_CONFIG_OPTIONS = {
    "Entrypoint": "--config.entrypoint", "Cmd": "--config.cmd", "Env": "--config.env",
    "WorkingDir": "--config.workingdir", "User": "--config.user", "StopSignal": "--config.stopsignal",
    "ExposedPorts": "--config.exposedports", "Volumes": "--config.volume", "Labels": "--config.label",
}


def _config_options(config: Mapping[str, Any]) -> list[str]:
    unknown = set(config) - set(_CONFIG_OPTIONS)
    if unknown:
        raise ValueError(f"image config fields umoci cannot set here: {sorted(unknown)}")
    options = []
    for field, value in config.items():
        option = _CONFIG_OPTIONS[field]
        if field == "Labels":
            items = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, str):
            items = [value]
        else:  # a list, or the OCI config's {"8080/tcp": {}} shape for ports and volumes
            items = list(value)
        if field in ("Entrypoint", "Cmd"):
            # umoci appends to what the config has: clear first, so the image has exactly these arguments.
            options += ["--clear", f"config.{field.lower()}"]
        options += [part for item in items for part in (option, item)]
    return options


def build_image(workdir: Path, *, layers: list[dict[str, bytes | None]] | None = None,
                config: dict[str, Any] | None = None, arch: str = "amd64", tag: str = "latest") -> Path:
    """An OCI image layout (workdir/oci, the image tagged `tag`) built with umoci: a busybox rootfs as the first layer
    (see _base_rootfs), then one layer per dict of `layers` (see _apply), then the config: its fields as in an OCI
    image config (Entrypoint, Cmd, Env, WorkingDir, User, StopSignal, ExposedPorts, Volumes, Labels) and `arch`.
    The busybox binary is the host's whatever `arch` says. Returns the layout's directory.

    Fixed mtimes and creation times (of the config and of each layer's history entry): the same arguments give the
    same digests."""
    config = dict(config or {})
    layout = workdir / "oci"
    image = f"{layout}:{tag}"
    bundle = workdir / "bundle"

    def history(layer: int) -> list[str]:
        return ["--history.created", CREATED, "--history.created_by", f"build_image layer {layer}"]

    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", image)
    # Every layer comes from unpack/repack: umoci 0.4.7's `insert` writes a tar without its end-of-archive blocks
    # (umoci#436, fixed in 0.4.8), which GNU tar and Python's tarfile reject. One unpack of the empty image; each
    # repack --refresh-bundle makes the next one diff against the layer just written.
    _umoci("unpack", "--image", image, str(bundle))
    _base_rootfs(bundle / "rootfs", config.get("WorkingDir"))
    for number, changes in enumerate([None, *(layers or [])]):
        if changes is not None:
            _apply(bundle / "rootfs", changes)
        _umoci("repack", *history(number), "--refresh-bundle", "--image", image, str(bundle))
        if len(_manifest(layout, tag)["layers"]) != number + 1:  # umoci adds no layer for an empty diff
            raise ValueError(f"layer {number} of the image changes nothing: {sorted(changes or ())}")
    shutil.rmtree(bundle)
    _umoci("config", "--no-history", "--image", image, "--created", CREATED, "--architecture", arch, "--os", "linux",
           *_config_options(config))
    _umoci("gc", "--layout", str(layout))
    return layout


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def tagged_manifest(layout: Path, tag: str) -> dict[str, Any]:
    """The index.json descriptor of the manifest tagged `tag` in an OCI layout."""
    for descriptor in _read_json(layout / "index.json")["manifests"]:
        if descriptor.get("annotations", {}).get(REF_NAME) == tag:
            return dict(descriptor)
    raise RegistryError(f"{layout} has no image tagged {tag!r}")


def _copy_to(registry: Registry, source: str, repo_tag: str, *extra: str) -> str:
    """skopeo copy source docker://HOST/repo_tag; returns the digest of what was pushed."""
    with tempfile.TemporaryDirectory(prefix="pveoci-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        skopeo("copy", "--quiet", *extra, *registry.skopeo_options("dest-"), "--digestfile", str(digestfile),
               source, f"docker://{registry.host}/{repo_tag}")
        return digestfile.read_text().strip()


def push(registry: Registry, layout: Path, ref_in_layout: str, repo_tag: str) -> str:
    """Push the image tagged ref_in_layout in an OCI layout to registry as repo:tag; returns its manifest digest."""
    return _copy_to(registry, f"oci:{layout}:{ref_in_layout}", repo_tag)


def _manifest(layout: Path, tag: str) -> dict[str, Any]:
    manifest: dict[str, Any] = _read_json(_blob(layout, tagged_manifest(layout, tag)["digest"]))
    return manifest


def _image_platform(layout: Path, descriptor: Mapping[str, Any]) -> dict[str, str]:
    """The platform of an index entry, from the image's config."""
    config = _read_json(_blob(layout, _read_json(_blob(layout, descriptor["digest"]))["config"]["digest"]))
    platform = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    return platform


def combine(layouts: Mapping[str, Path], combined: Path, *, ref_in_layout: str = "latest",
            tag: str = "latest") -> str:
    """An OCI layout at `combined` holding every image of `layouts` (arch -> layout) and an image index over them,
    tagged `tag`; returns the index's digest. skopeo 1.9 cannot make an index, so this writes it."""
    blobs = combined / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (combined / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entries = []
    for arch, layout in layouts.items():
        for blob in (layout / "blobs" / "sha256").iterdir():
            if not (blobs / blob.name).exists():
                shutil.copyfile(blob, blobs / blob.name)
        descriptor = tagged_manifest(layout, ref_in_layout)
        platform = _image_platform(layout, descriptor)
        if platform["architecture"] != arch:
            raise ValueError(f"{layout} is an image for {platform['architecture']}, not {arch}")
        entries.append({"mediaType": descriptor.get("mediaType", OCI_MANIFEST), "digest": descriptor["digest"],
                        "size": descriptor["size"], "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    _blob(combined, digest).write_bytes(index)
    (combined / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": digest, "size": len(index), "annotations": {REF_NAME: tag}}]}))
    return digest


def push_multiarch(registry: Registry, layouts: Mapping[str, Path], repo_tag: str, *,
                   ref_in_layout: str = "latest") -> str:
    """Push one image per architecture (arch -> OCI layout, each image tagged ref_in_layout) under one tag, as an OCI
    image index; returns the index's digest."""
    with tempfile.TemporaryDirectory(prefix="pveoci-index-") as tmp:
        combined = Path(tmp) / "oci"
        digest = combine(layouts, combined, ref_in_layout=ref_in_layout, tag="index")
        pushed = _copy_to(registry, f"oci:{combined}:index", repo_tag, "--all", "--preserve-digests")
    if pushed != digest:
        raise RegistryError(f"skopeo pushed {pushed} for the index {digest}")
    return pushed


def add_raw_layer(layout: Path, members: Mapping[str, bytes], *, tag: str = "latest") -> None:
    """Append to the image tagged `tag` a layer written here, verbatim: a file per path, a directory for a path
    that ends in "/" (modes 0644 and 0755, root's, the fixed mtime). For what umoci's own diffs never write, such as
    an opaque directory's marker (`dir/.wh..wh..opq`)."""
    with tempfile.TemporaryDirectory(prefix="pveoci-layer-") as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, content in members.items():
                info = tarfile.TarInfo(name.rstrip("/"))
                info.mtime = EPOCH
                if name.endswith("/"):
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(content), 0o644
                    tar.addfile(info, io.BytesIO(content))
        _umoci("raw", "add-layer", "--history.created", CREATED, "--history.created_by", "add_raw_layer",
               "--image", f"{layout}:{tag}", str(layer))
    _umoci("gc", "--layout", str(layout))


def oci_archive(layouts: list[Path], out: Path, *, ref_in_layout: str = "latest") -> Path:
    """An OCI archive at `out` (a tar of an OCI layout, entries named as skopeo's oci-archive: names them) whose
    index.json lists, in the order given, the manifest of each layout's image tagged ref_in_layout, with its
    platform: the layout an image index describes when it is stored flat rather than nested. Returns out."""
    with tempfile.TemporaryDirectory(prefix="pveoci-archive-") as tmp:
        combined = Path(tmp)
        blobs = combined / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        entries = []
        for layout in layouts:
            for blob in (layout / "blobs" / "sha256").iterdir():
                if not (blobs / blob.name).exists():
                    shutil.copyfile(blob, blobs / blob.name)
            descriptor = tagged_manifest(layout, ref_in_layout)
            entries.append({"mediaType": descriptor.get("mediaType", OCI_MANIFEST), "digest": descriptor["digest"],
                            "size": descriptor["size"], "platform": _image_platform(layout, descriptor)})
        (combined / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (combined / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
        proc = subprocess.run(["tar", "-cf", str(out), "-C", str(combined), "oci-layout", "index.json", "blobs"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RegistryError(f"tar of the OCI layout failed ({proc.returncode}): {proc.stderr.strip()}")
    return out
