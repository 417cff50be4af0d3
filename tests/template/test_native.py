"""The packer in C makes the bytes the Python packer makes: the same records for a stat walk, the same frames for
a pack, on every kind of entry (long and non-UTF-8 names, xattrs, hard links, devices, numbers tar needs PAX
for), for both architectures; and it is the one used where it runs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pveoci import errors
from pveoci.template import native, packer_build, tree
from pveoci.template.pack import ExtraFile, Packed, pack
from tests.conftest import need
from tests.template.test_pack import make_rootfs

ROOT = Path(__file__).resolve().parents[2]
ROOTFS_ONLY = os.geteuid() == 0   # owners and device nodes need root


@pytest.fixture
def program() -> Path:
    found = native.binary()
    if found is None:
        need([f"the packer for this machine (pveoci/template/bin, {sys.platform} {os.uname().machine})"])
    assert found is not None
    return found


def packed_by(which: str, rootfs: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
              extras: tuple[ExtraFile, ...] = ()) -> tuple[Packed, bytes]:
    monkeypatch.setenv("PVEOCI_PACKER", which)
    done = pack(rootfs, out / which, extras=extras)
    assert done.path is not None
    return done, done.path.read_bytes()


def same_everywhere(rootfs: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
                    extras: tuple[ExtraFile, ...] = ()) -> Packed:
    (ours, data), (ref, ref_data) = (packed_by(w, rootfs, out, monkeypatch, extras) for w in ("native", "python"))
    assert data == ref_data
    assert (ours.digest, ours.frames, ours.entries, ours.tar_size, ours.file_sha256) == \
           (ref.digest, ref.frames, ref.entries, ref.tar_size, ref.file_sha256)
    return ours


def test_the_packer_is_used_where_it_runs(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert program.name == f"packer-{native._ARCHES[os.uname().machine]}"
    monkeypatch.setenv("PVEOCI_PACKER", "python")
    assert native.binary() is None


def test_a_zstandard_with_another_zstd_packs_in_python(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    monkeypatch.setattr(zstandard, "ZSTD_VERSION", (1, 5, 6))
    assert native.binary() is None


def test_every_kind_of_entry_packs_to_the_same_bytes(program: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    packed = same_everywhere(rootfs, tmp_path, monkeypatch)
    assert len(packed.frames) >= 2        # the 3 MiB file has frames of its own


def test_pveocis_own_files_and_a_replaced_sbin_init_pack_alike(program: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / "sbin").mkdir()
    (rootfs / "sbin" / "init").write_bytes(b"the image's own init")
    (rootfs / "sbin" / "init.d").mkdir()          # a neighbour whose name starts alike stays
    extras = (ExtraFile(".pveoci/init", b"\x7fELF" + b"i" * 70_000, 0o755),
              ExtraFile("sbin/init", link="/.pveoci/init"))
    same_everywhere(rootfs, tmp_path, monkeypatch, extras)


def test_a_rootfs_with_pveocis_reserved_directory_is_refused_by_both(program: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / ".pveoci").mkdir()
    for which in ("native", "python"):
        monkeypatch.setenv("PVEOCI_PACKER", which)
        with pytest.raises(errors.BundleError, match="reserves for its own files"):
            pack(rootfs, tmp_path / which, extras=(ExtraFile(".pveoci/init", b"i"),))


def test_a_directory_swapped_for_a_link_after_the_walk_is_not_followed_out_of_the_rootfs(
        program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the walk and the read, etc/ becomes a link to a directory outside the rootfs that has a file of the
    same name and size: the packer refuses rather than packing that file's bytes."""
    from pveoci.template import manifest

    rootfs = make_rootfs(tmp_path / "rootfs")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "empty").write_bytes(b"")
    (outside / "owned").write_text("X")           # rootfs/etc/owned has one byte too
    scanned = manifest.scan(rootfs)
    (rootfs / "etc").rename(tmp_path / "etc-moved")
    (rootfs / "etc").symlink_to(outside)
    monkeypatch.setenv("PVEOCI_PACKER", "native")
    with pytest.raises(errors.BundleError, match="a directory on its path became a symbolic link"):
        pack(rootfs, tmp_path / "out", entries=scanned.entries)


def test_the_stat_walks_give_the_same_records(program: Path, tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    root = os.fsencode(rootfs)
    assert native.scan(program, root) == tree.walk_python(root)


def test_a_directory_that_cannot_be_walked_is_a_bundle_error(program: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.BundleError, match="vanished while it was being read"):
        native.scan(program, os.fsencode(tmp_path / "nothing-here"))


def test_bad_input_to_the_packer_is_one_line_and_exit_2(program: Path, tmp_path: Path) -> None:
    done = subprocess.run([program, "pack", str(tmp_path), "3", "2"], input=b"Fshort", capture_output=True,
                          check=False)
    assert (done.returncode, done.stderr) == (2, b"the entry list ended early\n")
    usage = subprocess.run([program], capture_output=True, check=False)
    assert usage.returncode == 2
    assert usage.stderr.startswith(b"usage: packer scan ROOT")


# Random trees: names of every shape tar has to encode, sizes around the block and frame limits, times and
# owners beyond what ustar holds, xattrs whose values are not UTF-8.
_NAME = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=12),
    st.binary(min_size=1, max_size=6).map(lambda b: b.replace(b"/", b"x").replace(b"\0", b"y")),
    st.integers(90, 160).map(lambda n: "n" * n),
).map(lambda n: n if isinstance(n, bytes) else n.encode()).filter(lambda n: n not in (b".", b".."))
_SIZES = st.sampled_from([0, 1, 511, 512, 513, 70_000, (1 << 20) - 1, 1 << 20, (2 << 20) + 3])
_MTIMES = st.sampled_from([0, 1_700_000_000_999_999_999, -1_500_000_000, (8**11 + 7) * 10**9, 1_234_567_890])
_OWNERS = st.sampled_from([(0, 0), (1000, 1000), (2**21 + 5, 7)])
_KINDS = st.sampled_from(["file", "dir", "link", "hardlink", "fifo"])
_ENTRY = st.tuples(st.lists(_NAME, min_size=1, max_size=3), _KINDS, _SIZES, _MTIMES, _OWNERS,
                   st.one_of(st.none(), st.binary(max_size=8)))


def _make_tree(root: Path, entries: list[tuple[list[bytes], str, int, int, tuple[int, int], bytes | None]]) -> None:
    root.mkdir()
    made: list[bytes] = []
    base = os.fsencode(root)
    for parts, kind, size, mtime, owner, xattr in entries:
        path = base + b"/" + b"/".join(parts)
        if os.path.lexists(path) or len(path) > 3000:
            continue
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            continue
        if kind == "dir":
            os.mkdir(path)
        elif kind == "link":
            os.symlink(b"t" * (size % 300 + 1) if size else b"../" + parts[-1], path)
        elif kind == "hardlink" and any(os.path.isfile(m) and not os.path.islink(m) for m in made):
            os.link(next(m for m in made if os.path.isfile(m) and not os.path.islink(m)), path)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "wb") as fh:
                fh.write(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
        if xattr is not None and kind in ("file", "dir"):   # user.* xattrs: files and directories only
            os.setxattr(path, b"user.t", xattr)
        if ROOTFS_ONLY:
            os.chown(path, *owner, follow_symlinks=False)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
        made.append(path)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(_ENTRY, min_size=1, max_size=14))
def test_random_trees_pack_to_the_same_bytes_and_walk_to_the_same_records(
        program: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        entries: list[tuple[list[bytes], str, int, int, tuple[int, int], bytes | None]]) -> None:
    work = tmp_path_factory.mktemp("tree")
    _make_tree(work / "rootfs", entries)
    assert native.scan(program, os.fsencode(work / "rootfs")) == tree.walk_python(os.fsencode(work / "rootfs"))
    same_everywhere(work / "rootfs", work, monkeypatch)
    shutil.rmtree(work)


@pytest.fixture
def arm64(tmp_path: Path) -> Path:
    """The arm64 packer, run under qemu through a wrapper (the machine need not have binfmt set up)."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        need(["qemu-aarch64-static (Debian package qemu-user-static)"])
    wrapper = tmp_path / "packer-arm64-under-qemu"
    wrapper.write_text(f'#!/bin/sh\nexec {qemu} {packer_build.BIN_DIR / "packer-arm64"} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_the_arm64_packer_makes_the_same_records_and_frames(program: Path, arm64: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    root = os.fsencode(rootfs)
    assert native.scan(arm64, root) == native.scan(program, root)
    monkeypatch.setattr(native, "binary", lambda: arm64)
    on_arm, data = packed_by("native", rootfs, tmp_path / "arm", monkeypatch)
    monkeypatch.undo()
    reference, ref_data = packed_by("python", rootfs, tmp_path / "ref", monkeypatch)
    assert (on_arm.digest, on_arm.frames) == (reference.digest, reference.frames)
    assert data == ref_data


def test_sha256sums_lists_the_packers() -> None:
    import hashlib

    sums = (packer_build.BIN_DIR / packer_build.SUMS).read_text()
    assert sums == "".join(f"{hashlib.sha256((packer_build.BIN_DIR / f'packer-{a}').read_bytes()).hexdigest()}"
                           f"  packer-{a}\n" for a in ("amd64", "arm64"))
    assert stat.S_IMODE((packer_build.BIN_DIR / "packer-amd64").stat().st_mode) == 0o755
    assert "Copyright" in (packer_build.BIN_DIR / packer_build.LICENCE).read_text()


def test_doctor_says_which_packer_makes_templates(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    from pveoci.checks import packer_check

    here = packer_check()
    assert (here.status, here.detail) == ("pass", f"templates packed by {program} (zstd 1.5.7)")
    monkeypatch.setattr(zstandard, "ZSTD_VERSION", (1, 5, 6))
    other = packer_check()
    assert other.status == "warn"
    assert other.detail.startswith(f"templates packed in Python: python-zstandard {zstandard.__version__} bundles "
                                   "zstd 1.5.6, the packer zstd 1.5.7")
