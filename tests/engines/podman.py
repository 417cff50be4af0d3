"""Debian's podman, driving pveoci as its OCI runtime against the bed (tests/engines).

Everything of podman's is this session's own: its storage (--root, --runroot, --tmpdir) and containers.conf
(CONTAINERS_CONF) under a temporary directory, nothing of the machine's used or changed. pveoci is the
runtime `pveoci` (containers.conf [engine.runtimes]): a launcher that runs this checkout's pveoci with the
bed's profile. The image is made here: a busybox rootfs, `podman import`ed (no registry).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.engines.cli import TIMEOUT, EngineCli, launcher
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

IMAGE = "localhost/pveoci-test/busybox:1"
TOOLS = ("podman", "conmon")


def missing() -> list[str]:
    return [f"{tool} (Debian package podman)" for tool in TOOLS if shutil.which(tool) is None]


def containers_conf(runtime: Path) -> str:
    # podman 4.3 asks RLIMIT_NOFILE and RLIMIT_NPROC 1048576 for every container: above the hard limits of
    # a machine that caps them (this CI's), so take the caller's hard limits instead.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    limits = [f"nofile={n}:{n}" for n in [min(nofile, 1048576)]] + [f"nproc={n}:{n}" for n in [min(nproc, 1048576)]]
    return (
        "[containers]\n"
        f"default_ulimits = {limits!r}\n".replace("'", '"') +
        "[engine]\n"
        'runtime = "pveoci"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        # podman gives --log/--log-format json only to runtimes it knows to write JSON logs
        'runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "pveoci"]\n'
        "[engine.runtimes]\n"
        f'pveoci = ["{runtime}"]\n'
    )


@dataclass
class Podman(EngineCli):
    root: Path

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--tmpdir", str(self.root / "tmp"), *args]

    def close(self) -> None:
        subprocess.run(self.argv("rm", "--all", "--force", "--time", "0"), env=self.env, capture_output=True,
                       timeout=TIMEOUT, check=False)
        subprocess.run(self.argv("system", "reset", "--force"), env=self.env, capture_output=True,
                       timeout=TIMEOUT, check=False)


def start(bed: Testbed, root: Path) -> Podman:
    root.mkdir(parents=True, exist_ok=True)
    env = bed.env(XDG_STATE_HOME=str(root / "state"))
    del env["PVEOCI_STAND_IN"]                          # engines get runc's create: a stand-in
    (root / "containers.conf").write_text(containers_conf(launcher(bed, root, root / "state")))
    env["CONTAINERS_CONF"] = str(root / "containers.conf")
    podman = Podman(env, root)
    rootfs = make_busybox_bundle(root / "image") / "rootfs"
    with tarfile.open(root / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    podman.ok("import", str(root / "rootfs.tar"), IMAGE)
    return podman
