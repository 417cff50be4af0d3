"""Packing: deterministic, content-addressed, and every kind of entry survives a GNU tar round trip."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from pveoci import errors
from pveoci.template import manifest
from pveoci.template.pack import ExtraFile, pack, rootfs_size, template_name
from tests.conftest import need


@pytest.fixture(autouse=True, params=["native", "python"])
def packer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with the packer in C (where it runs: test_native.py shows it makes the same bytes) and in
    Python."""
    from pveoci.template import native

    monkeypatch.setenv("PVEOCI_PACKER", request.param)
    if request.param == "native" and native.binary() is None:
        need([f"the packer for this machine (pveoci/template/bin, {os.uname().machine})"])
    return str(request.param)


def make_rootfs(root: Path) -> Path:
    """A rootfs with every kind of entry pveoci must keep."""
    (root / "bin").mkdir(parents=True)
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "app").chmod(0o755)
    (root / "bin" / "suid").write_bytes(b"x")
    (root / "bin" / "suid").chmod(0o4755)
    (root / "bin" / "sgid").write_bytes(b"y")
    (root / "bin" / "sgid").chmod(0o2711)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "big").write_bytes(os.urandom(3 << 20) + b"tail")
    (root / "etc" / "empty").write_bytes(b"")
    os.link(root / "bin" / "app", root / "bin" / "app-hardlink")
    (root / "bin" / "sh").symlink_to("app")
    (root / "etc" / "escape").symlink_to("../../../../etc/passwd")   # must stay a link, never followed
    (root / "etc" / "dangling").symlink_to("/nonexistent")
    long_name = "d" * 120 + "/" + "f" * 150
    (root / "etc" / long_name).parent.mkdir()
    (root / "etc" / long_name).write_text("long")
    (root / "etc" / "ünïcødé-名前").write_text("utf8")
    (root / os.fsdecode(b"etc/latin1-\xe9")).write_text("not utf-8")
    os.mkfifo(root / "etc" / "fifo")
    owned = root / "etc" / "owned"
    owned.write_text("o")
    if os.geteuid() == 0:
        os.mknod(root / "etc" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "etc" / "sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
        os.chown(owned, 1234, 5678, follow_symlinks=False)
        os.chown(root / "bin" / "sh", 42, 43, follow_symlinks=False)
    os.setxattr(root / "etc" / "big", "user.pveoci", b"hello")
    if os.geteuid() == 0:
        os.setxattr(root / "bin" / "app", "security.capability",
                    bytes.fromhex("0100000200040000000000000000000000000000"))
        os.setxattr(root / "etc" / "deep", "trusted.opaque", b"\xff\x00y")
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (1_700_000_000, 1_700_000_000 + len(path.name)), follow_symlinks=False)
    return root


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Entry by entry: type, mode, owner, size, content digest, link target, device numbers, xattrs."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = os.fsdecode(os.path.relpath(os.fsencode(path), os.fsencode(root)))
        kind = stat.S_IFMT(st.st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
            st.st_mode) else None
        try:
            xattrs = {n: os.getxattr(path, n, follow_symlinks=False)
                      for n in sorted(os.listxattr(path, follow_symlinks=False))}
        except OSError:
            xattrs = {}
        mtime = int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else None
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    st.st_size if stat.S_ISREG(st.st_mode) else None, digest, link, dev, tuple(xattrs.items()),
                    mtime, st.st_nlink if stat.S_ISREG(st.st_mode) else None)
    return out


def extract_with_gnu_tar(template: Path, dest: Path) -> None:
    dest.mkdir()
    data = zstandard.ZstdDecompressor().stream_reader(template.open("rb")).read()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", str(dest)],
                   input=data, check=True)


def test_every_kind_of_entry_round_trips_through_gnu_tar(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    packed = pack(rootfs, tmp_path / "out")
    extracted = tmp_path / "extracted"
    extract_with_gnu_tar(packed.path, extracted)
    assert describe(extracted) == describe(rootfs)


def test_same_rootfs_packs_to_the_same_digest_and_name(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    first = pack(rootfs, tmp_path / "a")
    second = pack(rootfs, tmp_path / "b", threads=0)
    assert first.digest == second.digest
    assert first.name == second.name == template_name(first.digest)
    assert first.name.startswith("pveoci-")
    assert first.name.endswith(".tar.zst")
    assert first.path.name == first.name
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.file_sha256
    assert first.size == first.path.stat().st_size


def test_a_pack_that_reuses_the_scans_walk_makes_the_same_bytes(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    walked = pack(rootfs, tmp_path / "a")
    reused = pack(rootfs, tmp_path / "b", entries=manifest.scan(rootfs).entries)
    assert reused.digest == walked.digest
    assert reused.path.read_bytes() == walked.path.read_bytes()


@pytest.mark.parametrize(("change", "said"), [
    (lambda f: f.write_bytes(f.read_bytes() + b"more"), "grew while it was being packed"),
    (lambda f: f.write_bytes(b"#"), "shrank while it was being packed"),
    (lambda f: f.unlink(), "vanished while it was being packed"),
])
def test_a_file_changed_after_the_scan_fails_the_pack_and_leaves_no_file(tmp_path: Path, change: Any,
                                                                         said: str) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    scanned = manifest.scan(rootfs)
    change(rootfs / "bin" / "app")
    with pytest.raises(errors.BundleError, match=said):
        pack(rootfs, tmp_path / "out", entries=scanned.entries)
    assert list((tmp_path / "out").iterdir()) == []


def test_digest_changes_with_content_mode_owner_and_mtime(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    digests = {pack(rootfs, tmp_path / "o").digest}
    (rootfs / "etc" / "empty").write_bytes(b"changed")
    digests.add(pack(rootfs, tmp_path / "o").digest)
    (rootfs / "etc" / "empty").chmod(0o600)
    digests.add(pack(rootfs, tmp_path / "o").digest)
    os.utime(rootfs / "etc" / "empty", (1, 1))
    digests.add(pack(rootfs, tmp_path / "o").digest)
    assert len(digests) == 4


def test_the_file_is_its_frames_one_after_the_other_and_they_name_it(tmp_path: Path) -> None:
    from pveoci.template.frames import digest_of

    rootfs = make_rootfs(tmp_path / "rootfs")
    for i in range(40):  # enough data for several frames
        (rootfs / f"blob{i:02d}").write_bytes(os.urandom(150_000))
    packed = pack(rootfs, tmp_path / "out")
    data = packed.path.read_bytes()
    assert len(packed.frames) > 1
    assert hashlib.sha256(data).hexdigest() == packed.file_sha256
    tar = b""
    for frame in packed.frames:
        piece = data[frame.offset:frame.offset + frame.size]
        assert hashlib.sha256(piece).hexdigest() == frame.sha256
        tar += zstandard.ZstdDecompressor().decompress(piece)  # each frame stands alone
    assert sum(f.size for f in packed.frames) == len(data) == packed.size
    assert len(tar) == packed.tar_size
    assert tar == zstandard.ZstdDecompressor().stream_reader(packed.path.open("rb"), read_across_frames=True).read()
    assert packed.digest == digest_of(list(packed.frames))


def test_a_small_change_leaves_most_frames_as_they_were(tmp_path: Path) -> None:
    from pveoci.template import delta

    rootfs = make_rootfs(tmp_path / "rootfs")
    for i in range(300):
        (rootfs / f"f{i:03d}").write_bytes(os.urandom(20_000))
    (rootfs / "big").write_bytes(os.urandom(9 << 20))
    before = pack(rootfs, tmp_path / "a")
    (rootfs / "f150").write_bytes(os.urandom(4096))  # one file, smaller now: everything after it shifts
    after = pack(rootfs, tmp_path / "b")
    change = delta.plan(after.frames, before.frames)
    assert after.digest != before.digest
    assert change.new_bytes < 0.2 * after.size
    assert delta.worth_it(change, after.size)


def test_entries_are_sorted_with_numeric_owners(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    packed = pack(rootfs, tmp_path / "out")
    tar = zstandard.ZstdDecompressor().stream_reader(packed.path.open("rb")).read()
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names[0] == "."
    assert all(m.uname == "" and m.gname == "" for m in members)
    hardlink = next(m for m in members if m.name == "./bin/app-hardlink")
    assert hardlink.islnk()
    assert hardlink.linkname == "./bin/app"
    escape = next(m for m in members if m.name == "./etc/escape")
    assert escape.issym()
    assert escape.linkname == "../../../../etc/passwd"
    assert packed.entries == len(members)


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not pack me")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "link").symlink_to(outside)
    packed = pack(rootfs, tmp_path / "out")
    tar = zstandard.ZstdDecompressor().stream_reader(packed.path.open("rb")).read()
    assert b"do not pack me" not in tar


def test_extras_go_into_the_template_not_the_rootfs(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    before = describe(rootfs)
    plain = pack(rootfs, tmp_path / "o")
    with_shim = pack(rootfs, tmp_path / "o", extras=[ExtraFile(".pveoci/init", b"\x7fELF...", 0o755)])
    assert plain.digest != with_shim.digest
    assert describe(rootfs) == before
    extracted = tmp_path / "x"
    extract_with_gnu_tar(with_shim.path, extracted)
    init = extracted / ".pveoci" / "init"
    assert init.read_bytes() == b"\x7fELF..."
    assert stat.S_IMODE(init.stat().st_mode) == 0o755


def test_a_rootfs_that_has_the_reserved_directory_is_refused(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / ".pveoci").mkdir(parents=True)
    with pytest.raises(errors.BundleError, match="reserves"):
        pack(rootfs, tmp_path / "o", extras=[ExtraFile(".pveoci/init", b"x")])
    assert not list((tmp_path / "o").iterdir())  # no partial file left behind


def test_missing_rootfs_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(errors.BundleError, match="is not a directory"):
        pack(tmp_path / "nope", tmp_path / "o")


def test_progress_counts_the_rootfs_bytes_read_up_to_its_size(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    seen: list[int] = []
    pack(rootfs, tmp_path / "o", progress=seen.append)
    assert sum(seen) == rootfs_size(rootfs) > 0  # the total a progress bar is given is the real one


# Plain entries: an ASCII name, any kind, numbers up to past ustar's limits, an ASCII link.
HEADER_CASES = {
    "name": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="/"),
                    min_size=1, max_size=60),
    "kind": st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                             tarfile.BLKTYPE, tarfile.FIFOTYPE]),
    "numbers": st.tuples(st.integers(0, 0o7777), st.integers(0, 8**7 - 1), st.integers(0, 8**7 - 1),
                         st.integers(0, 8**11 - 1), st.integers(0, 2**33), st.integers(0, 4095),
                         st.integers(0, 2**20)),
    "link": st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=99),
}


@given(**HEADER_CASES)
def test_plain_headers_are_the_ones_tarfile_writes(name: str, kind: bytes, numbers: tuple[int, ...], link: str) -> None:
    from pveoci.template.pack import _plain_header

    mode, uid, gid, size, mtime, major, minor = numbers
    size = size if kind == tarfile.REGTYPE else 0
    link = link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    info = tarfile.TarInfo("./" + name + ("/" if kind == tarfile.DIRTYPE else ""))
    info.type, info.mode, info.uid, info.gid, info.size, info.mtime = kind, mode, uid, gid, size, mtime
    info.devmajor, info.devminor, info.linkname, info.uname, info.gname = major, minor, link, "", ""
    ours = _plain_header(info.name.encode(), mode, uid, gid, size, mtime, kind, link.encode(), major, minor)
    if ours is None:  # a number too big for ustar: tarfile's PAX writes it (pack falls back to it)
        assert max(size, mtime) >= 8**11 or max(uid, gid, major, minor) >= 8**7
        return
    assert ours == info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


@given(**HEADER_CASES)
def test_fast_headers_are_the_ones_tarfile_writes(name: str, kind: bytes, numbers: tuple[int, ...], link: str) -> None:
    from pveoci.template.pack import _header

    info = tarfile.TarInfo("./" + name)
    info.type = kind
    info.mode, info.uid, info.gid, size, info.mtime, info.devmajor, info.devminor = numbers
    info.size = size if kind == tarfile.REGTYPE else 0
    info.linkname = link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    info.uname = info.gname = ""
    assert _header(info) == info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
