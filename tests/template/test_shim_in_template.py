"""Acceptance: the init shim, unpacked from a real template with GNU tar, starts process.args with exactly the
spec's env, cwd, uid/gid and RLIMIT_NOFILE (read back from /proc inside a chroot with its own PID namespace)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from pveoci.oci.bundle import Bundle
from pveoci.planning import plan_bundle
from pveoci.settings import Profile
from pveoci.template.initshim import shim_extras
from pveoci.template.pack import pack
from tests.conftest import need
from tests.testbed import parts
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

REPORT = ("cat /proc/1/environ > /tmp/environ; pwd > /tmp/cwd; grep -E '^(Uid|Gid|Groups|NoNewPrivs):' "
          "/proc/self/status > /tmp/status; grep 'Max open files' /proc/self/limits > /tmp/limits; "
          "echo $$ > /tmp/pid")


def test_shim_from_the_template_runs_the_process_as_the_spec_says(tmp_path: Path) -> None:
    need(parts.missing_for_busybox() + (["root"] if os.geteuid() != 0 else []))
    bundle_dir = make_busybox_bundle(tmp_path / "bundle", args=["sh", "-c", REPORT],
                                     env=["PATH=/bin:/sbin", "GREETING=hello world", "EMPTY="])
    config = json.loads((bundle_dir / "config.json").read_text())
    config["process"].update(cwd="/srv", user={"uid": 1000, "gid": 1001, "additionalGids": [27]},
                             rlimits=[{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}])
    (bundle_dir / "config.json").write_text(json.dumps(config))
    (bundle_dir / "rootfs" / "srv").mkdir()
    (bundle_dir / "rootfs" / "tmp").chmod(0o1777)
    bundle = Bundle.load(bundle_dir)
    plan = plan_bundle(bundle, Profile(), container_id="shimtest", pve_version=(9, 1))
    packed = pack(bundle.rootfs, tmp_path / "out", extras=shim_extras(plan.process, plan.legacy_init))
    root = tmp_path / "unpacked"
    root.mkdir()
    tar = zstandard.ZstdDecompressor().stream_reader(packed.path.open("rb")).read()
    subprocess.run(["tar", "--numeric-owner", "-xpf", "-", "-C", str(root)], input=tar, check=True)
    assert not (bundle.rootfs / ".pveoci").exists()  # the user's rootfs is never touched
    unshare, chroot = shutil.which("unshare"), shutil.which("chroot")
    assert unshare is not None
    assert chroot is not None
    result = subprocess.run([unshare, "--fork", "--pid", f"--mount-proc={root}/proc", "--", chroot, str(root),
                             "/.pveoci/init"], capture_output=True, text=True, timeout=30, env={"LEAK": "no"},
                            check=False)
    assert result.returncode == 0, result.stderr
    out = root / "tmp"
    assert (out / "environ").read_bytes() == b"PATH=/bin:/sbin\0GREETING=hello world\0EMPTY=\0"
    assert (out / "cwd").read_text() == "/srv\n"
    status = dict(line.split(":", 1) for line in (out / "status").read_text().splitlines())
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1001"] * 4
    assert status["Groups"].split() == ["27"]
    assert (out / "limits").read_text().split()[3:5] == ["321", "654"]
    assert (out / "pid").read_text() == "1\n"  # the process is PID 1, as init
