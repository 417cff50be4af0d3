"""The bundle pveoci's cassettes were recorded with: the test bed's busybox layout and a fixed config.

Recording packs the host's static busybox (its containers run for real); a replay packs a stand-in
file in its place: a cassette knows a template by the order it was packed in, not by its bytes
(pveoci.testing.normalise), so replays need no busybox.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.testbed.bundle import APPLETS, default_config

ARGS = ["sh", "-c", "echo hello from pveoci; while true; do sleep 1; done"]
ENV = ["PATH=/bin:/sbin", "TERM=xterm"]
OS_RELEASE = 'ID=busybox\nNAME="BusyBox"\n'


def make_cassette_bundle(bundle: Path, busybox: Path | None = None) -> Path:
    """bundle/config.json and bundle/rootfs; with busybox None a stand-in file replaces it (replay only)."""
    rootfs = bundle / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    target = rootfs / "bin" / "busybox"
    if busybox is None:
        target.write_bytes(b"\x7fELF a stand-in for busybox: cassettes are replayed, never run\n")
    else:
        shutil.copyfile(busybox, target)
    target.chmod(0o755)
    for applet in APPLETS:
        link = rootfs / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    if not (rootfs / "sbin" / "init").is_symlink():
        (rootfs / "sbin" / "init").symlink_to("../bin/busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (rootfs / "etc" / "os-release").write_text(OS_RELEASE)
    (bundle / "config.json").write_text(json.dumps(default_config(ARGS, ENV), indent=2) + "\n")
    return bundle
