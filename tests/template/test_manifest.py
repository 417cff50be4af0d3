"""A rootfs's likeness (template/manifest.py): the same wherever the tree lies and whoever copied it with its
times, different for any change a stat walk can see in what a template would hold."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pveoci.template import manifest, native, tree
from tests.testbed.bundle import make_busybox_bundle


def likeness(rootfs: Path) -> str:
    return manifest.likeness(rootfs, manifest.scan(rootfs))


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    made = make_busybox_bundle(tmp_path / "bundle") / "rootfs"
    (made / "etc" / "hostname").write_text("box\n")
    os.link(made / "etc" / "hostname", made / "etc" / "hostname.hard")
    return made


def copied(rootfs: Path, where: Path) -> Path:
    """A copy as `cp -a` makes it: contents, modes, owners, times, links; new inodes, new ctimes."""
    subprocess.run(["cp", "-a", str(rootfs), str(where)], check=True)
    return where


def test_a_copy_elsewhere_is_alike_though_its_fingerprint_differs(rootfs: Path, tmp_path: Path) -> None:
    copy = copied(rootfs, tmp_path / "copy")
    assert manifest.scan(copy).fingerprint != manifest.scan(rootfs).fingerprint
    assert likeness(copy) == likeness(rootfs)


def test_directory_and_link_times_an_engine_touches_do_not_count(rootfs: Path, tmp_path: Path) -> None:
    copy = copied(rootfs, tmp_path / "copy")
    (copy / "etc" / "mtab").symlink_to("/proc/mounts")    # podman, setting a container up
    (rootfs / "etc" / "mtab").symlink_to("/proc/mounts")   # the same, a moment apart
    os.utime(copy, ns=(1, 1))
    os.utime(copy / "bin" / "sh", ns=(2, 2), follow_symlinks=False)
    assert likeness(copy) == likeness(rootfs)


CHANGES: dict[str, Callable[[Path], None]] = {
    "content of another size": lambda r: (r / "etc" / "hostname").write_text("another\n"),
    "mtime": lambda r: os.utime(r / "etc" / "os-release", ns=(5, 5)),
    "mode": lambda r: (r / "etc" / "passwd").chmod(0o600),
    "owner": lambda r: os.chown(r / "etc" / "group", 1000, 1000),
    "directory owner": lambda r: os.chown(r / "tmp", 1000, 0),
    "link target": lambda r: ((r / "sbin" / "init").unlink(), (r / "sbin" / "init").symlink_to("/bin/busybox")),
    "a hard link that is a copy now": lambda r: ((r / "etc" / "hostname.hard").unlink(),
                                                 shutil.copy2(r / "etc" / "hostname", r / "etc" / "hostname.hard")),
    "a new empty file": lambda r: (r / "root" / "new").touch(),
    "a name": lambda r: (r / "etc" / "group").rename(r / "etc" / "groups"),
    "a fifo instead of a file": lambda r: ((r / "etc" / "os-release").unlink(), os.mkfifo(r / "etc" / "os-release")),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_a_stat_walk_sees_in_a_copy_makes_it_unlike(rootfs: Path, tmp_path: Path, change: str) -> None:
    copy = copied(rootfs, tmp_path / "copy")
    mtime = (copy / "etc").stat().st_mtime_ns
    CHANGES[change](copy)
    os.utime(copy / "etc", ns=(mtime, mtime))
    assert likeness(copy) != likeness(rootfs)


def test_the_walk_in_c_and_in_python_give_one_likeness(rootfs: Path) -> None:
    root = os.fsencode(rootfs)
    program = native.scanner()
    assert program is not None, native.why_not()
    in_c = manifest.Scan("c", 0, native.scan(program, root).records)
    in_python = manifest.Scan("py", 0, tree.walk_python(root).records)
    assert manifest.likeness(rootfs, in_c) == manifest.likeness(rootfs, in_python)
