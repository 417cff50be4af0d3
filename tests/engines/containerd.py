"""Debian's containerd (1.6, with its io.containerd.runc.v2 shim), driving pveoci as its runc against the bed.

The daemon is the session's own: its root, state, sockets and config under a temporary directory (the CRI
plugin off), started here and stopped by its pid. pveoci is the runc binary the shim runs: `ctr run
--runc-binary LAUNCHER`; the launcher runs this checkout's pveoci with the bed's profile (and records each
call). The image is made here: an OCI archive of a busybox
rootfs, `ctr image import`ed (no registry).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.engines.cli import EngineCli, calls, launcher, stop, wait_up
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

IMAGE = "localhost/pveoci-test/busybox:1"
NAMESPACE = "pveoci-test"
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def missing() -> list[str]:
    return [f"{tool} (Debian package containerd)" for tool in TOOLS if shutil.which(tool) is None]


def oci_archive(rootfs: Path, out: Path) -> Path:
    """An OCI image layout as a tar: one gzip layer of the rootfs, its config and manifest, named IMAGE."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    diff_id = "sha256:" + hashlib.sha256(layer_tar.getvalue()).hexdigest()
    layer = gzip.compress(layer_tar.getvalue(), mtime=0)
    config = json.dumps({"architecture": ARCH, "os": "linux", "config": {"Env": ["PATH=/bin:/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": blob(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")]}).encode()
    index = {"schemaVersion": 2, "manifests": [{**blob(manifest, "application/vnd.oci.image.manifest.v1+json"),
                                                "annotations": {"io.containerd.image.name": IMAGE,
                                                                "org.opencontainers.image.ref.name": "1"}}]}
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(),
             **{f"blobs/sha256/{d}": data for d, data in blobs.items()}}
    with tarfile.open(out, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@dataclass
class Containerd(EngineCli):
    root: Path
    daemon: subprocess.Popen[bytes]
    launcher: Path

    def calls(self) -> list[str]:
        """The runtime calls that reached pveoci (the launcher's record), in order."""
        return calls(self.root)

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]

    def clean(self) -> None:
        """Every task killed and deleted, every container deleted (what a test left)."""
        for line in self.ok("task", "ls", "-q").split():
            self("task", "kill", "-a", "-s", "KILL", line)
            self("task", "delete", "-f", line)
        for line in self.ok("container", "ls", "-q").split():
            self("container", "delete", line)

    def close(self) -> None:
        self.clean()
        stop(self.daemon)


def start(bed: Testbed, root: Path) -> Containerd:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{root / "root"}"\n'
        f'state = "{root / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{root / "containerd.sock"}"\n'
        f'[ttrpc]\n  address = "{root / "containerd.sock.ttrpc"}"\n'
        f'[debug]\n  address = "{root / "debug.sock"}"\n')
    made_launcher = launcher(bed, root)
    env = bed.env()
    del env["PVEOCI_STAND_IN"]
    with (root / "containerd.log").open("wb") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log, env=env)
    made = Containerd(env, root, daemon, made_launcher)
    wait_up(made, daemon, root / "containerd.log", 30, made.close)
    rootfs = make_busybox_bundle(root / "image") / "rootfs"
    made.ok("image", "import", str(oci_archive(rootfs, root / "image.tar")))
    return made
