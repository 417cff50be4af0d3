"""Debian's docker.io (dockerd 20.10 with the containerd and runc shim it starts), driving pveoci as a runtime of
its daemon.json (`runtimes`) against the bed.

The daemon is the session's own: its data root, exec root, socket, pid file and daemon.json under a temporary
directory; no bridge, no iptables rules (nothing of the machine's network changed); started here and stopped by
its pid. pveoci is the runtime `pveoci`: a launcher that runs this checkout's pveoci with the bed's profile (and
records each call). The image is made here: a busybox rootfs, `docker import`ed (no registry).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.engines.cli import TIMEOUT, EngineCli, calls, launcher, stop, wait_up
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

IMAGE = "pveoci-test/busybox:1"
#: Debian's client, the daemon's own version (another docker on PATH may be newer than its API).
CLIENT = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def missing() -> list[str]:
    return [f"{tool} (Debian package docker.io)" for tool in ("dockerd", CLIENT) if shutil.which(tool) is None]


@dataclass
class Docker(EngineCli):
    root: Path
    daemon: subprocess.Popen[bytes]

    def calls(self) -> list[str]:
        """The runtime calls that reached pveoci (the launcher's record), in order."""
        return calls(self.root)

    def argv(self, *args: str) -> list[str]:
        return [CLIENT, "--host", f"unix://{self.root / 'docker.sock'}", *args]

    def clean(self) -> None:
        """Every container removed (what a test left)."""
        for cid in self.ok("ps", "-aq").split():
            self("rm", "-f", cid)

    def close(self) -> None:
        self.clean()
        stop(self.daemon, 60)


def _rootfs_tar(rootfs: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    return out.getvalue()


def start(bed: Testbed, root: Path) -> Docker:
    root.mkdir(parents=True, exist_ok=True)
    made_launcher = launcher(bed, root)
    (root / "daemon.json").write_text(json.dumps({"runtimes": {"pveoci": {"path": str(made_launcher)}}}))
    env = bed.env()
    del env["PVEOCI_STAND_IN"]
    argv = ["dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
            "--host", f"unix://{root / 'docker.sock'}", "--bridge", "none", "--iptables=false",
            "--ip6tables=false", "--ip-masq=false"]
    with (root / "dockerd.log").open("wb") as log:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    made = Docker(env, root, daemon)
    wait_up(made, daemon, root / "dockerd.log", 60, made.close)
    rootfs = make_busybox_bundle(root / "image") / "rootfs"
    imported = subprocess.run(made.argv("import", "-", IMAGE), input=_rootfs_tar(rootfs), capture_output=True,
                              env=env, timeout=TIMEOUT, check=False)
    if imported.returncode != 0:
        made.close()
        raise RuntimeError(f"docker import failed: {imported.stderr.decode(errors='replace')}")
    return made
