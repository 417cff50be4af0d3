"""Bind mounts of this machine's files and directories on the bed with real LXC (issue 19, item 3): the files are in
the container as they are here (contents, mode, owner) from the moment it is created, however large the rest of its
spec; a directory of this machine is refused before anything is made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def pveoci(bed: Testbed, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args], env=bed.env(),
                          capture_output=True, text=True, check=False, timeout=180)


def with_mounts(bundle: Path, *mounts: dict[str, object]) -> Path:
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] = [*config.get("mounts", []), *mounts]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_files_of_this_machine_are_in_the_created_container(lxc_bed: Testbed, busybox_bundle: Path,
                                                            tmp_path: Path) -> None:
    hosts, secret = tmp_path / "hosts", tmp_path / "token"
    hosts.write_text("127.0.0.1 localhost\n10.1.2.3 db.internal\n")
    secret.write_bytes(b"s3cr\x00t\n")
    secret.chmod(0o400)
    with_mounts(busybox_bundle,
                {"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind", "ro"]},
                {"destination": "/run/secrets/app/token", "type": "bind", "source": str(secret),
                 "options": ["bind"]})
    root = tmp_path / "cache"
    made = pveoci(lxc_bed, root, "create", "-b", str(busybox_bundle), "--node", "pve1", "files")
    assert made.returncode == 0, made.stderr
    # created, not started: the files are there already, as an engine's exec before the start would see them
    shown = pveoci(lxc_bed, root, "exec", "files", "--", "sh", "-c",
                   "cat /etc/hosts; stat -c '%a %u' /run/secrets/app/token; od -c /run/secrets/app/token")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:3] == ["127.0.0.1 localhost", "10.1.2.3 db.internal", "400 0"]
    assert lines[3].split()[1:] == ["s", "3", "c", "r", "\\0", "t", "\\n"]
    assert pveoci(lxc_bed, root, "delete", "-f", "files").returncode == 0


def test_a_directory_of_this_machine_is_refused_before_anything_is_made(lxc_bed: Testbed, busybox_bundle: Path,
                                                                        tmp_path: Path) -> None:
    with_mounts(busybox_bundle, {"destination": "/data", "type": "bind", "source": str(tmp_path),
                                 "options": ["rbind"]})
    before = len(lxc_bed.pve.cts)
    refused = pveoci(lxc_bed, tmp_path / "cache", "run", "-d", "-b", str(busybox_bundle), "dir")
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("pveoci: error: mounts[")
    assert "is a directory of this machine" in last
    assert "node:" in last
    assert len(lxc_bed.pve.cts) == before
