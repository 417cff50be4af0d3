"""Merging an image's layers into a template's tar stream: the OCI changeset rules (whiteouts, opaque directories,
replacements, hard links), every kind of entry kept, deterministic bytes, and one clear ImageError for a layer that
is unsafe or broken."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pveoci import errors
from pveoci.image.layers import Layer, Merged, merge
from pveoci.template.frames import Framer
from pveoci.template.pack import ExtraFile

OCI = "application/vnd.oci.image.layer.v1."
MEDIA = {"tar": OCI + "tar", "gzip": OCI + "tar+gzip", "zstd": OCI + "tar+zstd",
         "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
_count = itertools.count()
Member = tuple[tarfile.TarInfo, bytes]   # a layer's member: its header and its data


# ------------------------------------------------------------ making layers


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: object) -> Member:
    """A member as a layer would have it (tarfile's TarInfo fields set from `fields`)."""
    info = tarfile.TarInfo(name)
    info.type, info.mtime = kind, 1_700_000_000
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def file(name: str, data: bytes = b"", **fields: object) -> Member:
    return member(name, tarfile.REGTYPE, data, **fields)


def folder(name: str, **fields: object) -> Member:
    return member(name, tarfile.DIRTYPE, b"", **fields)


def symlink(name: str, target: str) -> Member:
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Member:
    return member(name, tarfile.LNKTYPE, linkname=target)


def tar_bytes(members: Sequence[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how in ("gzip", "docker"):
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


def blob(folder_: Path, data: bytes, how: str = "gzip") -> Layer:
    """A layer holding these bytes as they are (for broken layers)."""
    path = folder_ / f"layer{next(_count)}"
    path.write_bytes(data)
    return Layer(path, MEDIA[how], "sha256:" + hashlib.sha256(data).hexdigest())


def layer(folder_: Path, *members: Member, how: str = "gzip") -> Layer:
    return blob(folder_, compress(tar_bytes(members), how), how)


# ----------------------------------------------------------- reading output


@dataclass(frozen=True)
class Out:
    raw: bytes                                   # the framer's compressed output
    members: list[Member]
    count: int                                   # what write returned

    @property
    def names(self) -> list[str]:
        return [info.name for info, _ in self.members]

    def get(self, rel: str) -> tarfile.TarInfo:
        return next(info for info, _ in self.members if info.name.removeprefix("./") == rel)

    def data(self, rel: str) -> bytes:
        """A file's content, through a hard link to where its data is."""
        info = self.get(rel)
        if info.islnk():
            return self.data(info.linkname.removeprefix("./"))
        return next(data for i, data in self.members if i is info)

    def tree(self) -> dict[str, object]:
        """rel -> ("dir", mode) or a file's content: what the property test compares."""
        out: dict[str, object] = {}
        for info, _ in self.members:
            rel = info.name.removeprefix("./").rstrip("/")
            if rel != ".":
                out[rel] = ("dir", info.mode) if info.isdir() else self.data(rel)
        return out


def decompress(raw: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
    return b"".join(iter(lambda: reader.read(1 << 20), b""))


def write(merged: Merged, extras: Sequence[ExtraFile] = (), progress: Callable[[int], None] | None = None) -> Out:
    buffer = io.BytesIO()
    count = merged.write(Framer([buffer.write], level=1, workers=2, file_sha=False), extras, progress)
    members = []
    with tarfile.open(fileobj=io.BytesIO(decompress(buffer.getvalue())), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info in tar:
            extracted = tar.extractfile(info) if info.isreg() else None
            members.append((info, extracted.read() if extracted else b""))
    out = Out(buffer.getvalue(), members, count)
    assert_unpackable_in_order(out)
    return out


def assert_unpackable_in_order(out: Out) -> None:
    """Each name once; a directory before everything below it and a hard link after its target (tar
    --skip-old-files, as Proxmox unpacks, keeps a directory made earlier as it is); names as pack.py writes them."""
    seen: set[str] = set()
    for info, _ in out.members:
        rel = info.name.removeprefix("./")
        assert info.name == "." or info.name.startswith("./"), info.name
        assert rel not in seen, f"{rel} twice"
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            assert parent in seen or all(i.name.removeprefix("./") != parent for i, _ in out.members), \
                f"{parent} after {rel}"
        if info.islnk():
            assert info.linkname.removeprefix("./") in seen, f"hard link {rel} before its target"
        seen.add(rel)


def run(*layers: Layer, extras: Sequence[ExtraFile] = ()) -> Out:
    return write(merge(layers), extras)


# ------------------------------------------------------------------- rules


def test_a_whiteout_removes_a_lower_file_and_a_lower_directory_with_all_below_it(tmp_path: Path) -> None:
    base = layer(tmp_path, folder("etc"), file("etc/gone", b"x"), file("etc/kept", b"k"),
                 folder("opt"), folder("opt/app"), file("opt/app/bin", b"b"))
    upper = layer(tmp_path, file("etc/.wh.gone"), file(".wh.opt"), file("etc/.wh.never-there"))
    out = run(base, upper)
    assert out.names == ["./etc", "./etc/kept"]
    assert out.count == 2


def test_a_whiteout_hides_only_lower_layers_never_its_own(tmp_path: Path) -> None:
    base = layer(tmp_path, file("a", b"lower"))
    upper = layer(tmp_path, file("a", b"upper"), file(".wh.a"))   # the same name again in the same layer
    assert run(base, upper).data("a") == b"upper"


def test_an_opaque_directory_hides_lower_children_and_keeps_its_own_layers_wherever_the_marker_is(
        tmp_path: Path) -> None:
    base = layer(tmp_path, folder("d"), file("d/old", b"o"), folder("d/sub"), file("d/sub/deep", b"d"),
                 file("other", b"x"))
    upper = layer(tmp_path, folder("d", mode=0o700), file("d/new", b"n"), folder("d/sub"),
                  file("d/.wh..wh..opq"), file("d/after", b"a"))
    out = run(base, upper)
    assert sorted(out.names) == ["./d", "./d/after", "./d/new", "./d/sub", "./other"]
    assert out.get("d").mode == 0o700


def test_a_file_replaces_a_directory_and_everything_below_it(tmp_path: Path) -> None:
    base = layer(tmp_path, folder("x"), folder("x/y"), file("x/y/z", b"z"), file("f", b"was a file"))
    upper = layer(tmp_path, file("x", b"now a file"), folder("f"), file("f/inside", b"i"), how="zstd")
    out = run(base, upper)
    assert sorted(out.names) == ["./f", "./f/inside", "./x"]
    assert out.data("x") == b"now a file"
    assert out.get("f").isdir()


def test_an_upper_directory_takes_new_metadata_and_keeps_its_children_before_them_in_the_stream(
        tmp_path: Path) -> None:
    base = layer(tmp_path, folder("home"), folder("home/app", mode=0o755, uid=0), file("home/app/.profile", b"p"),
                 how="tar")
    upper = layer(tmp_path, folder("home/app", mode=0o700, uid=1000, gid=1000, mtime=5),
                  file("home/app/.history", b"h"))
    out = run(base, upper)
    app = out.get("home/app")
    assert (app.mode, app.uid, app.gid, app.mtime) == (0o700, 1000, 1000, 5)
    assert out.names == ["./home", "./home/app", "./home/app/.profile", "./home/app/.history"]
    assert out.data("home/app/.profile") == b"p"


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_proxmox_s_tar_keeps_the_metadata_of_a_directory_an_upper_layer_changed(tmp_path: Path) -> None:
    base = layer(tmp_path, folder("srv"), file("srv/data", b"d"))
    upper = layer(tmp_path, folder("srv", mode=0o710), file("srv/more", b"m"))
    out = run(base, upper)
    dest = tmp_path / "rootfs"
    dest.mkdir()
    subprocess.run(["tar", "xpf", "-", "--skip-old-files", "--anchored", "--no-same-owner", "-C", str(dest)],
                   input=decompress(out.raw), check=True)
    assert stat.S_IMODE((dest / "srv").stat().st_mode) == 0o710
    assert (dest / "srv" / "data").read_bytes() == b"d"


def test_a_hard_link_within_a_layer_is_one_file_and_a_link(tmp_path: Path) -> None:
    out = run(layer(tmp_path, folder("bin"), file("bin/busybox", b"BB", mode=0o4755), hardlink("bin/sh",
                                                                                              "bin/busybox")))
    assert out.get("bin/busybox").isreg()
    assert out.get("bin/sh").islnk()
    assert out.get("bin/sh").linkname == "./bin/busybox"
    assert out.data("bin/sh") == b"BB"
    assert out.get("bin/sh").mode == 0o4755


def test_a_hard_link_to_a_lower_layers_file_gets_its_content(tmp_path: Path) -> None:
    base = layer(tmp_path, file("lib.so.1", b"library"))
    upper = layer(tmp_path, hardlink("lib.so", "./lib.so.1"))
    out = run(base, upper)
    assert out.data("lib.so") == out.data("lib.so.1") == b"library"
    assert out.get("lib.so.1").isreg()


def test_a_hard_link_keeps_the_content_its_target_had_when_the_link_was_made(tmp_path: Path) -> None:
    base = layer(tmp_path, file("a", b"old"))
    link = layer(tmp_path, hardlink("b", "a"))
    replace = layer(tmp_path, file("a", b"new"))
    out = run(base, link, replace)
    assert out.data("b") == b"old"
    assert out.data("a") == b"new"
    assert out.get("b").isreg()   # the one name the old content has now


def test_a_hard_link_whose_data_member_is_gone_from_the_tree_is_still_written(tmp_path: Path) -> None:
    base = layer(tmp_path, folder("d"), file("d/a", b"data"), hardlink("d/b", "d/a"), hardlink("d/c", "d/a"))
    upper = layer(tmp_path, file("d/.wh.a"))
    merged = merge([base, upper])
    out = write(merged)
    assert out.names == ["./d", "./d/b", "./d/c"]
    assert out.get("d/b").isreg()
    assert out.get("d/c").islnk()
    assert out.data("d/c") == b"data"
    assert (merged.entries, merged.size) == (3, 4)


def test_every_kind_of_entry_and_its_metadata_is_kept(tmp_path: Path) -> None:
    long_name = "d" * 120 + "/ünïcødé-" + "名前" * 60
    cap = "\x01\x00\x00\x02" + "\x00" * 16
    out = run(layer(
        tmp_path, folder(".", mode=0o755), folder("tmp", mode=0o1777),
        file("usr/bin/sudo", b"s", mode=0o4755, uid=0, gid=0),
        file("usr/bin/wall", b"w", mode=0o2755, gid=5),
        file("owned", b"o", uid=1234, gid=5678, uname="someone", gname="group", mtime=1234567890.75),
        file("caps", b"c", pax_headers={"SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.k": "v",
                                         "atime": "1.5", "ctime": "2.5"}),
        symlink("link", "../../../outside/is/fine"), member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3,
                                                           mode=0o666),
        member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), member("pipe", tarfile.FIFOTYPE, mode=0o600),
        file(long_name, b"long"), file("latin1-\udce9", b"not utf-8"),
    ))
    assert out.names[0] == "."
    assert decompress(out.raw)[:100].rstrip(b"\0") == b"./"   # the root as pack.py writes it
    assert b"./tmp/\0" in decompress(out.raw)                   # a directory: its name ends in "/"
    assert out.get("tmp").mode == 0o1777
    assert out.get("usr/bin/sudo").mode == 0o4755
    assert (out.get("usr/bin/wall").mode, out.get("usr/bin/wall").gid) == (0o2755, 5)
    owned = out.get("owned")
    assert (owned.uid, owned.gid, owned.uname, owned.gname, owned.mtime) == (1234, 5678, "", "", 1234567890)
    assert out.get("caps").pax_headers == {"SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.k": "v"}
    assert out.get("link").issym()
    assert out.get("link").linkname == "../../../outside/is/fine"
    assert (out.get("dev/null").ischr(), out.get("dev/null").devmajor, out.get("dev/null").devminor) == (True, 1, 3)
    assert out.get("dev/sda").isblk()
    assert out.get("dev/sda").devmajor == 8
    assert out.get("pipe").isfifo()
    assert out.get("pipe").mode == 0o600
    assert out.data(long_name) == b"long"
    assert out.data("latin1-\udce9") == b"not utf-8"


def test_a_big_file_is_copied_in_chunks_and_progress_counts_every_byte(tmp_path: Path) -> None:
    big = bytes(range(256)) * (12 << 10) + b"tail"   # 3 MiB and a bit: several chunks, frames of its own
    merged = merge([layer(tmp_path, file("big", big), file("small", b"s"), hardlink("again", "big"), how="zstd")])
    told: list[int] = []
    out = write(merged, progress=told.append)
    assert out.data("big") == big
    assert out.data("again") == big
    assert sum(told) == merged.size == len(big) + 1


def test_the_same_layers_give_the_same_bytes(tmp_path: Path) -> None:
    layers = [layer(tmp_path, folder("a"), file("a/1", b"1" * 5000), hardlink("a/2", "a/1"), symlink("s", "a")),
              layer(tmp_path, folder("a", mode=0o700), file("a/.wh.1"), file("b", b"b"), how="zstd"),
              layer(tmp_path, file("a/3", b"3"), how="tar")]
    merged = merge(layers)
    first = write(merged)
    assert write(merged).raw == first.raw
    assert write(merge(layers)).raw == first.raw
    assert first.count == merged.entries == 5


def test_media_types_of_docker_and_nondistributable_layers_are_read(tmp_path: Path) -> None:
    docker = layer(tmp_path, file("a", b"docker"), how="docker")
    foreign = Layer(layer(tmp_path, file("b", b"nd"), how="zstd").path, OCI.replace("layer.", "layer.nondistributable.")
                    + "tar+zstd", "sha256:00")
    assert run(docker, foreign).tree() == {"a": b"docker", "b": b"nd"}


# ----------------------------------------------------------------- extras


def test_an_extra_file_replaces_the_tree_entry_at_its_path_and_all_below_it(tmp_path: Path) -> None:
    merged = merge([layer(tmp_path, folder("sbin"), folder("sbin/init"), file("sbin/init/x", b"x"),
                          file("sbin/keep", b"k"))])
    out = write(merged, [ExtraFile("sbin/init", b"pveoci init", mode=0o755), ExtraFile(".pveoci/config", b"{}")])
    assert out.names == ["./sbin", "./sbin/keep", "./.pveoci", "./.pveoci/config", "./sbin/init"]
    assert out.data("sbin/init") == b"pveoci init"
    assert out.count == 5


# ----------------------------------------------------------- broken layers


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x55 for b in data[middle:middle + 16]) + data[middle + 16:]


def _sparse() -> bytes:
    info = tarfile.TarInfo("holes")
    info.type = tarfile.GNUTYPE_SPARSE
    return info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024


def _zstd_cut_in_its_last_frame() -> bytes:
    """The members in one frame, the end-of-archive blocks in a second one cut short: the tar alone looks whole."""
    data = tar_bytes(_BIG)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + -(-last.size // 512) * 512
    compressor = zstandard.ZstdCompressor(level=1)
    return compressor.compress(data[:end]) + compressor.compress(data[end:])[:-3]


_BIG = [file("etc/passwd", bytes(range(256)) * 200), file("etc/group", b"g" * 3000)]
BROKEN: dict[str, tuple[Callable[[Path], list[Layer]], str]] = {
    "dot-dot": (lambda p: [layer(p, file("a/../../x"))], r"layer sha256:[0-9a-f]{12}: path 'a/../../x' leaves the "
                r"rootfs$"),
    "absolute": (lambda p: [layer(p, file("/etc/shadow"))], r": path '/etc/shadow' leaves the rootfs$"),
    "under a symlink": (lambda p: [layer(p, symlink("lib", "/usr/lib")), layer(p, file("lib/evil.so"))],
                        r": path 'lib/evil.so' is under 'lib', which is a symlink$"),
    "under a file": (lambda p: [layer(p, file("f"), file("f/x"))],
                     r": path 'f/x' is under 'f', which is not a directory$"),
    "hard link to nothing": (lambda p: [layer(p, file("a"), hardlink("b", "missing"))],
                             r": hard link 'b' points to 'missing', which does not exist$"),
    "hard link out of root": (lambda p: [layer(p, hardlink("x", "../../etc/shadow"))],
                              r": hard link 'x' points to '../../etc/shadow', which leaves the rootfs$"),
    "hard link to a directory": (lambda p: [layer(p, folder("d"), hardlink("x", "d"))],
                                 r": hard link 'x' points to 'd', which is not a regular file$"),
    "corrupt gzip": (lambda p: [blob(p, _flip(compress(tar_bytes(_BIG), "gzip")))],
                     r": its data is not valid tar\+gzip \(.+\)$"),
    "truncated gzip": (lambda p: [blob(p, _cut(compress(tar_bytes(_BIG), "gzip")))],
                       r": its tar\+gzip data ends early \(.+\)$"),
    "truncated zstd": (lambda p: [blob(p, compress(tar_bytes(_BIG), "zstd")[:-7], "zstd")],
                       r": its tar\+zstd data ends early \(.+\)$"),
    "zstd cut in its last frame": (lambda p: [blob(p, _zstd_cut_in_its_last_frame(), "zstd")],
                                   r": its tar\+zstd data ends early \(its last zstd frame is cut off\)$"),
    "gzip without its trailer": (lambda p: [blob(p, compress(tar_bytes(_BIG), "gzip")[:-4])],
                                 r": its tar\+gzip data ends early \(.+\)$"),
    "truncated tar": (lambda p: [blob(p, tar_bytes(_BIG)[:51300], "tar")], r": its tar data ends early \(.+\)$"),
    "tar cut inside a header": (lambda p: [blob(p, tar_bytes(_BIG)[:52000], "tar")],
                                r": its tar data ends early \(.+\)$"),
    "not a tar": (lambda p: [blob(p, b"PK\x03\x04 a zip file" * 40, "tar")], r": its data is not valid tar \(.+\)$"),
    "garbage after the first member": (lambda p: [blob(p, tar_bytes(_BIG)[:51712] + b"x" * 1024, "tar")],
                                       r": its data is not valid tar \(.+\)$"),
    "unknown media type": (lambda p: [Layer(layer(p, file("a")).path, "application/vnd.oci.image.layer.v1.tar+bz2",
                                            "sha256:" + "ab" * 32)],
                           r"^layer sha256:abababababab: media type 'application/vnd.oci.image.layer.v1.tar\+bz2' is "
                           r"not a layer pveoci can read$"),
    "sparse file": (lambda p: [blob(p, _sparse(), "tar")],
                    r": path 'holes' is a sparse file: sparse files are not supported$"),
    "reserved directory": (lambda p: [layer(p, folder(".pveoci"), file(".pveoci/init"))],
                           r": path '.pveoci' is inside /.pveoci, which pveoci reserves for its own files$"),
    "missing blob": (lambda p: [Layer(p / "absent", MEDIA["gzip"], "sha256:" + "cd" * 32)],
                     r"^layer sha256:cdcdcdcdcdcd: cannot read .*absent: No such file or directory$"),
}


@pytest.fixture(params=["isa-l", "zlib"])
def gunzip(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """gzip layers read by ISA-L (where its wheel is installed, as pveoci's dependencies have it) and by Python's
    zlib (where it is not): both must tell a broken layer the same way."""
    from pveoci.image import layers as module

    if request.param == "isa-l":
        assert module._igzip is not None, "isal is one of pveoci's dependencies on this platform"
    else:
        monkeypatch.setattr(module, "_igzip", None)
    return str(request.param)


@pytest.mark.parametrize("case", list(BROKEN))
def test_an_unsafe_or_broken_layer_is_one_image_error_naming_it(tmp_path: Path, case: str, gunzip: str) -> None:
    make, said = BROKEN[case]
    layers = make(tmp_path)
    with pytest.raises(errors.ImageError, match=said) as caught:
        merge(layers)
    assert f"layer {layers[-1].digest[:19]}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_layer_cut_short_between_the_passes_fails_the_write(tmp_path: Path) -> None:
    data = tar_bytes([file("a", b"x" * 4000), file("b", b"y" * 4000)])
    broken = blob(tmp_path, data, "tar")
    merged = merge([broken])
    broken.path.write_bytes(data[:2048])
    with pytest.raises(errors.ImageError, match=r": its tar data ends early \(unexpected end of data\)$"):
        merged.write(Framer([io.BytesIO().write], level=1, workers=2, file_sha=False))


def test_a_name_is_shown_printable_in_a_message(tmp_path: Path) -> None:
    with pytest.raises(errors.ImageError, match=r"path '\.\./\\n\\xe9' leaves the rootfs$"):
        merge([layer(tmp_path, file("../\n\udce9"))])


# ------------------------------------------------------ looking at the tree


@pytest.fixture
def image(tmp_path: Path) -> Merged:
    return merge([
        layer(tmp_path, folder("private"), folder("private/etc"), file("private/etc/passwd", b"root:x:0:0\n"),
              folder("usr"), folder("usr/sbin"), file("usr/sbin/init", b"I", mode=0o755), file("big", b"b" * 100)),
        layer(tmp_path, symlink("etc", "private/etc"), symlink("usr/abs", "/private/etc/passwd"),
              symlink("sbin", "usr/sbin"), symlink("loop", "loop"), symlink("up", "../../../private"),
              symlink("dangling", "nowhere"), member("fifo", tarfile.FIFOTYPE), file("implied/x", b"")),
    ])


@pytest.mark.timeout(10)   # a symlink loop must end
def test_read_file_follows_symlinks_inside_the_tree(image: Merged) -> None:
    assert image.read_file("/etc/passwd") == b"root:x:0:0\n"        # a relative link above it
    assert image.read_file("/usr/abs") == b"root:x:0:0\n"           # an absolute link to it
    assert image.read_file("up/etc/passwd") == b"root:x:0:0\n"      # ".." stops at the root
    assert image.read_file("/etc/../etc/./passwd") == b"root:x:0:0\n"
    assert image.read_file("/etc") is None                          # a directory
    assert image.read_file("/loop") is None
    assert image.read_file("/dangling") is None
    assert image.read_file("/etc/shadow") is None
    with pytest.raises(errors.ImageError, match=r": /big is 100 bytes, more than the 10 pveoci reads$"):
        image.read_file("/big", limit=10)


@pytest.mark.timeout(10)
def test_kind_mode_and_resolve_see_the_tree_through_its_symlinks(image: Merged) -> None:
    assert image.kind("/sbin") == "dir"
    assert image.resolve("/sbin") == "usr/sbin"
    assert image.kind("/sbin/init") == "file"
    assert image.mode("/sbin/init") == stat.S_IFREG | 0o755
    assert image.kind("/fifo") == "other"
    assert image.kind("/implied") == "dir"
    assert image.mode("implied") == stat.S_IFDIR | 0o755
    assert image.resolve("/") == ""
    assert image.kind("/") == "dir"
    assert image.resolve("/up/etc/passwd") == "private/etc/passwd"
    assert image.kind("/nothing") is None
    assert image.resolve("/nothing") is None
    assert image.kind("/loop") is None
    assert image.resolve("/dangling") is None


# ------------------------------------------------------- against a model

PATHS = ["a", "b", "a/x", "a/y", "a/x/z", "b/x"]
OPAQUE_DIRS = ["", "a", "b", "a/x"]
ops = st.one_of(
    st.tuples(st.just("file"), st.sampled_from(PATHS), st.sampled_from([b"", b"1", b"22"])),
    st.tuples(st.just("dir"), st.sampled_from(PATHS), st.sampled_from([0o755, 0o700])),
    st.tuples(st.just("wh"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("opq"), st.sampled_from(OPAQUE_DIRS), st.none()),
)
images = st.lists(st.tuples(st.lists(ops, max_size=6), st.sampled_from(["tar", "gzip", "zstd"])),
                  min_size=1, max_size=4)


def model(layers: list[list[tuple[str, str, object]]]) -> dict[str, object] | None:
    """The spec applied naively to a dict of path -> content; None where a layer writes under a non-directory."""
    tree: dict[str, object] = {}

    def drop_below(path: str) -> None:
        for key in [k for k in tree if k.startswith(path + "/") or not path]:
            del tree[key]

    for ops_ in layers:
        for kind, path, _ in ops_:          # whiteouts hide the lower layers only
            if kind == "wh":
                tree.pop(path, None)
                drop_below(path)
            elif kind == "opq":
                drop_below(path)
        for kind, path, value in ops_:
            parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            if kind not in ("file", "dir"):
                continue
            if any(p in tree and not isinstance(tree[p], tuple) for p in parents):
                return None
            if kind == "file" or not isinstance(tree.get(path, ("dir",)), tuple):
                drop_below(path)
            tree[path] = ("dir", value) if kind == "dir" else value
    return tree


def members_of(ops_: list[tuple[str, str, object]]) -> list[Member]:
    out = []
    for kind, path, value in ops_:
        head, _, base = path.rpartition("/")
        if kind == "file":
            assert isinstance(value, bytes)
            out.append(file(path, value))
        elif kind == "dir":
            out.append(folder(path, mode=value))
        elif kind == "wh":
            out.append(file(f"{head}/.wh.{base}" if head else f".wh.{base}"))
        else:
            out.append(file(f"{path}/.wh..wh..opq" if path else ".wh..wh..opq"))
    return out


@settings(max_examples=60, deadline=None)
@given(images)
def test_merging_gives_what_applying_the_layers_one_by_one_gives(spec: list[tuple[list[tuple[str, str, object]],
                                                                                   str]]) -> None:
    expected = model([ops_ for ops_, _how in spec])
    with tempfile.TemporaryDirectory() as folder_:
        layers = [layer(Path(folder_), *members_of(ops_), how=how) for ops_, how in spec]
        if expected is None:
            with pytest.raises(errors.ImageError, match="which is not a directory"):
                merge(layers)
            return
        out = write(merge(layers))
    assert out.tree() == expected
