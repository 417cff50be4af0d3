"""Pack a rootfs into a deterministic, content-addressed `pveoci-<digest>.tar.zst`, in one streaming pass.

The tar stream is built by hand (tarfile's per-member path is the bottleneck, see
docs/performance.md): entries sorted by name, numeric owners, modes with setuid/setgid/sticky,
integer mtimes, symlinks stored as links and never followed, hardlinks, device nodes, fifos,
xattrs (PAX `SCHILY.xattr.*`), long and non-UTF-8 names (PAX). It is cut into zstd frames that
are compressed on all cores (template/frames.py); the frames' hashes name the template, and the
compressed file is hashed too, so the node can verify what it received. Every file is read once;
the compressed bytes can go to the node while the rest is still being packed. Where pveoci's packer in
C runs (template/native.py), it does the per-entry work and the compression, making the same bytes;
write_tar here is the reference and the packer everywhere else.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pveoci import errors
from pveoci.template import tree
from pveoci.template.frames import LEVEL, Frame, Framer, digest_of
from pveoci.template.tree import Entry

log = logging.getLogger("pveoci.template")

BLOCK = 512
READ_SIZE = 1 << 20          # large reads: the per-call cost, not the bytes, dominates small files
NAME_PREFIX = "pveoci-"
SUFFIX = ".tar.zst"
DIGEST_CHARS = 16            # 64 bits of the digest in the file name
RESERVED = ".pveoci"         # the top-level directory pveoci adds to every template

Progress = Callable[[int], None]


class TarSource(Protocol):
    """Content that is not a directory (an image's layers, pveoci.image.source): it writes its own entries, then
    the extras, the end of the archive, and finishes the sink, as write_tar does for a directory."""

    def write(self, sink: Framer, extras: Sequence[ExtraFile], progress: Progress | None) -> int: ...


@dataclass(frozen=True)
class ExtraFile:
    """A file pveoci adds to the template (never to the rootfs on disk), e.g. its init.

    One at the path of a rootfs entry replaces that entry (and what is below it).
    """

    path: str            # relative, e.g. ".pveoci/init"
    data: bytes = b""
    mode: int = 0o644
    link: str | None = None   # a symlink to this target instead of a file
    directory: bool = False   # an (empty) directory instead of a file


@dataclass(frozen=True)
class Packed:
    path: Path | None    # the local .tar.zst (None: it was only streamed)
    digest: str          # the template's identity (frames.digest_of: its tar stream, frame by frame)
    file_sha256: str     # sha256 of the compressed file, for verifying a copy of it ("" when only streamed)
    size: int            # bytes of the compressed file
    tar_size: int
    entries: int
    frames: tuple[Frame, ...] = ()
    like: str = ""       # the likeness key of the tree it was packed from (manifest.likeness), if known

    @property
    def name(self) -> str:
        return template_name(self.digest, self.like)


def template_name(digest: str, like: str = "") -> str:
    """pveoci-<digest>-<likeness>.tar.zst: the bytes it holds, then what tree they came from (see
    template/manifest.py); a template named before likenesses (0.2) has the digest alone."""
    tail = f"-{like[:DIGEST_CHARS]}" if like else ""
    return f"{NAME_PREFIX}{digest[:DIGEST_CHARS]}{tail}{SUFFIX}"


def name_parts(name: str) -> tuple[str, str]:
    """(digest, likeness) prefixes of a template's name ("" for a part it lacks)."""
    core = name.removeprefix(NAME_PREFIX).removesuffix(SUFFIX)
    digest, _, like = core.partition("-")
    return digest, like


Entries = bytes
"""A stat walk's records in packing order (template/tree.py): what manifest.scan keeps, so a pack need not walk
the tree again."""


def _xattrs(path: bytes) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return out


def _header(info: tarfile.TarInfo) -> bytes:
    """The entry's header: the common case built directly, anything unusual (long or non-ASCII names, xattrs,
    big numbers) by tarfile as PAX. Both give the ustar header tarfile would write for the common case."""
    if not info.pax_headers and info.type != tarfile.GNUTYPE_SPARSE:
        fast = _ustar(info)
        if fast is not None:
            return fast
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


_OCTAL7 = 8**7
_OCTAL11 = 8**11


def _ustar(info: tarfile.TarInfo) -> bytes | None:
    text = info.name + "/" if info.type == tarfile.DIRTYPE and not info.name.endswith("/") else info.name
    try:
        name = text.encode("ascii")
        link = info.linkname.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(name) > 100 or len(link) > 100:
        return None
    numbers = (info.mode, info.uid, info.gid, info.devmajor, info.devminor)
    if not all(0 <= n < _OCTAL7 for n in numbers) or not (0 <= info.size < _OCTAL11 and 0 <= info.mtime < _OCTAL11):
        return None
    device = (b"%07o\0" % info.devmajor + b"%07o\0" % info.devminor if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
              else b"\0" * 16)
    head = b"".join((
        name.ljust(100, b"\0"), b"%07o\0" % info.mode, b"%07o\0" % info.uid, b"%07o\0" % info.gid,
        b"%011o\0" % info.size, b"%011o\0" % int(info.mtime), b"        ", info.type, link.ljust(100, b"\0"),
        tarfile.POSIX_MAGIC, b"\0" * 64, device, b"\0" * 167,
    ))
    return head[:148] + b"%06o\0" % sum(head) + head[155:]


class _Batched:
    """Reports progress every MiB or so, not once per small file."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._pending = 0

    def __call__(self, n: int) -> None:
        self._pending += n
        if self._pending >= READ_SIZE and self._progress is not None:
            self._progress(self._pending)
            self._pending = 0

    def flush(self) -> None:
        if self._pending and self._progress is not None:
            self._progress(self._pending)
        self._pending = 0


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _copy_file(path: bytes, header: bytes, size: int, sink: Framer, progress: _Batched) -> None:
    """The header, the file's data and the padding: one write for a small file."""
    fd = os.open(path, _READ_FLAGS)
    try:
        if size < READ_SIZE:
            data = os.read(fd, size + 1)   # one read past the end: it shows at once if the file grew meanwhile
            if len(data) != size:
                change = "grew" if len(data) > size else "shrank"
                raise errors.BundleError(f"{os.fsdecode(path)} {change} while it was being packed")
            sink.write_file(header, data, -size % BLOCK)
            progress(size)
            return
        sink.write(header)
        left = size
        while left > 0:
            chunk = os.read(fd, min(READ_SIZE, left))
            if not chunk:
                raise errors.BundleError(f"{os.fsdecode(path)} shrank while it was being packed")
            sink.write(chunk)
            left -= len(chunk)
            progress(len(chunk))
        if os.read(fd, 1):
            raise errors.BundleError(f"{os.fsdecode(path)} grew while it was being packed")
    finally:
        os.close(fd)
    pad = -size % BLOCK
    if pad:
        sink.write(b"\0" * pad)


_TYPES = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE, stat.S_IFLNK: tarfile.SYMTYPE,
          stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}
_FIXED_SUM = 8 * 32 + sum(tarfile.POSIX_MAGIC)   # the checksum field counted as spaces, and the magic
_OWNERS: dict[tuple[int, int, int], bytes] = {}   # mode, uid and gid as their header fields: few kinds in a tree


def _plain_header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
                  link: bytes, devmajor: int, devminor: int) -> bytes | None:
    """The ustar header tarfile writes for a plain entry (ASCII names up to 100 bytes, numbers that fit),
    built straight from bytes; None for anything else (tarfile then writes PAX)."""
    if len(name) > 100 or len(link) > 100 or not name.isascii() or not link.isascii():
        return None
    if not (mode < _OCTAL7 and 0 <= uid < _OCTAL7 and 0 <= gid < _OCTAL7 and size < _OCTAL11
            and 0 <= mtime < _OCTAL11 and devmajor < _OCTAL7 and devminor < _OCTAL7):
        return None
    owner = _OWNERS.get((mode, uid, gid))
    if owner is None:
        owner = _OWNERS[(mode, uid, gid)] = b"%07o\0%07o\0%07o\0" % (mode, uid, gid)
    numbers = owner + b"%011o\0%011o\0" % (size, mtime)
    device = (b"%07o\0%07o\0" % (devmajor, devminor) if typeflag in (tarfile.CHRTYPE, tarfile.BLKTYPE)
              else b"\0" * 16)
    # The checksum counts every byte; the zero padding adds nothing, so only the rest is summed.
    checksum = sum(name) + sum(numbers) + typeflag[0] + sum(link) + sum(device) + _FIXED_SUM
    return b"".join((name, b"\0" * (100 - len(name)), numbers, b"%06o\0 " % checksum, typeflag, link,
                     b"\0" * (100 - len(link)), tarfile.POSIX_MAGIC, b"\0" * 64, device, b"\0" * 167))


def _entry(full: bytes, rel: bytes, st: Entry, seen_inodes: dict[tuple[int, int], bytes]) -> tuple[bytes, int] | None:
    """The entry's header and how many data bytes follow it; None for what tar cannot hold (a socket)."""
    fmt = stat.S_IFMT(st.st_mode)
    typeflag = _TYPES.get(fmt)
    name = b"./" + rel if rel else b"."
    if typeflag is None:
        log.info("skipping %s: sockets cannot be archived", os.fsdecode(name))
        return None
    size, link, major, minor = 0, b"", 0, 0
    if typeflag == tarfile.REGTYPE:
        size = st.st_size
        if st.st_nlink > 1:
            first = seen_inodes.setdefault((st.st_dev, st.st_ino), name)
            if first is not name:
                typeflag, link, size = tarfile.LNKTYPE, first, 0
    elif typeflag == tarfile.SYMTYPE:
        link = os.readlink(full)
    elif typeflag in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    xattrs = _xattrs(full)
    mode, mtime = stat.S_IMODE(st.st_mode), st.mtime
    header = None if xattrs else _plain_header(name + b"/" if typeflag == tarfile.DIRTYPE else name, mode,
                                               st.st_uid, st.st_gid, size, mtime, typeflag, link, major, minor)
    if header is None:  # tarfile's PAX: long or non-ASCII names, xattrs, big numbers
        info = tarfile.TarInfo(os.fsdecode(name))
        info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = mode, st.st_uid, st.st_gid, "", "", mtime
        info.type, info.size, info.linkname = typeflag, size, os.fsdecode(link)
        info.devmajor, info.devminor, info.pax_headers = major, minor, xattrs
        header = _header(info)
    return header, size


def _write_entry(full: bytes, rel: bytes, st: Entry, seen_inodes: dict[tuple[int, int], bytes],
                 sink: Framer, batched: _Batched) -> int:
    """One entry of the rootfs into the stream; 1, or 0 for what tar cannot hold."""
    entry = _entry(full, rel, st, seen_inodes)
    if entry is None:
        return 0
    header, data_size = entry
    sink.begin(data_size)
    if data_size:
        _copy_file(full, header, data_size, sink, batched)
    else:
        sink.write(header)
    sink.end(zlib.crc32(rel))
    return 1


def _rootfs_dir(rootfs: Path) -> bytes:
    root = os.fsencode(os.path.realpath(rootfs))
    if not os.path.isdir(root):
        raise errors.BundleError(f"rootfs {rootfs} is not a directory")
    return root


def _replaced(extras: Sequence[ExtraFile]) -> tuple[bytes, ...]:
    """The rootfs paths pveoci's own files replace (with what is below them)."""
    return tuple(os.fsencode(e.path.strip("/")) for e in extras if not e.path.startswith(RESERVED))


def _records(root: bytes, rootfs: Path, extras: Sequence[ExtraFile], entries: Entries | None) -> Entries:
    """The walk to pack (made now if not given); a rootfs with pveoci's reserved directory is refused."""
    if extras and os.path.lexists(root + b"/" + os.fsencode(RESERVED)):
        raise errors.BundleError(f"rootfs {rootfs} has /{RESERVED}, which pveoci reserves for its own files")
    return walk(root).records if entries is None else entries


def walk(root: bytes) -> tree.Walk:
    """The stat walk of root (a real path, as bytes): by the packer in C where it runs, else in Python."""
    from pveoci.template import native

    program = native.scanner()
    return native.scan(program, root) if program is not None else tree.walk_python(root)


def write_tar(rootfs: Path, sink: Framer, extras: Sequence[ExtraFile] = (), progress: Progress | None = None,
              entries: Entries | None = None) -> int:
    """Write the deterministic tar stream of rootfs (plus extras) to sink, entry by entry; the entry count.

    `progress` is told the bytes of file data read (their total is the rootfs's size, see rootfs_size).
    A rootfs that is itself a symlink is followed (it names the tree); nothing inside it ever is.
    `entries`: the tree's stat walk made just before (manifest.scan), instead of walking it again; a file
    whose size changed since fails the pack, as one that changes while it is read does.
    This is the reference, and the packer where the one in C (template/native.py) is not used.
    """
    root = _rootfs_dir(rootfs)
    seen_inodes: dict[tuple[int, int], bytes] = {}
    count = 0
    batched = _Batched(progress)
    replaced = _replaced(extras)
    for st in tree.entries(_records(root, rootfs, extras, entries)):
        rel = st.rel
        if replaced and any(rel == r or rel.startswith(r + b"/") for r in replaced):
            continue
        full = root + b"/" + rel if rel else root
        try:
            count += _write_entry(full, rel, st, seen_inodes, sink, batched)
        except FileNotFoundError:
            raise errors.BundleError(f"{os.fsdecode(full)} vanished while it was being packed") from None
        except OSError as exc:
            raise errors.BundleError(f"cannot read {os.fsdecode(full)}: {exc.strerror}") from None
    batched.flush()
    count += write_extras(sink, extras)
    sink.write(b"\0" * (2 * BLOCK))  # end of archive
    sink.finish()
    return count


def write_extras(sink: Framer, extras: Sequence[ExtraFile]) -> int:
    """pveoci's own files into the stream, after the rootfs's entries (whatever wrote those); how many."""
    entries = _extra_entries(extras)
    for info, data in entries:
        sink.begin(len(data))
        sink.write(_header(info))
        if data:
            sink.write(data)
            sink.write(b"\0" * (-len(data) % BLOCK))
        sink.end(zlib.crc32(os.fsencode(info.name)))
    return len(entries)


def write_native(program: Path, rootfs: Path, sink: Framer, extras: Sequence[ExtraFile] = (),
                 progress: Progress | None = None, entries: Entries | None = None) -> int:
    """What write_tar does, the same bytes, with the per-entry work done by the packer in C (native.py)."""
    from pveoci.template import native

    root = _rootfs_dir(rootfs)
    records = _records(root, rootfs, extras, entries)
    own = [native.raw_record(zlib.crc32(os.fsencode(info.name)), len(data),
                             [_header(info), data, b"\0" * (-len(data) % BLOCK)] if data else [_header(info)])
           for info, data in _extra_entries(extras)]
    packer = native.Packer(program, root, sink.level, sink.workers, _replaced(extras))
    try:
        packer.feed([records, *own])
        for frame, tar_size, read in packer.frames():
            sink.add(frame, tar_size)
            if progress is not None and read:
                progress(read)
        count = packer.entries   # the rootfs's entries it wrote and ours
    finally:
        packer.close()
    sink.finish()
    return count


def _extra_entries(extras: Sequence[ExtraFile]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Entries for pveoci's own files. Directories get entries only inside /.pveoci: an entry for an
    existing directory such as /sbin would replace a merged-/usr symlink when the template is unpacked."""
    out: list[tuple[tarfile.TarInfo, bytes]] = []
    dirs: set[str] = set()
    for extra in sorted(extras, key=lambda e: e.path):
        parts = extra.path.strip("/").split("/")
        for depth in range(1, len(parts)):
            d = "/".join(parts[:depth])
            if parts[0] == RESERVED and d not in dirs:
                dirs.add(d)
                info = tarfile.TarInfo("./" + d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                out.append((info, b""))
        info = tarfile.TarInfo("./" + "/".join(parts))
        info.mtime = 0
        if extra.link is not None:
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, extra.link, 0o777
            out.append((info, b""))
        elif extra.directory:
            dirs.add("/".join(parts))
            info.type, info.mode = tarfile.DIRTYPE, extra.mode
            out.append((info, b""))
        else:
            info.type, info.mode, info.size = tarfile.REGTYPE, extra.mode, len(extra.data)
            out.append((info, extra.data))
    return out


def pack(
    rootfs: Path | TarSource,
    out_dir: Path | None,
    *,
    extras: Sequence[ExtraFile] = (),
    level: int = LEVEL,
    threads: int | None = None,
    progress: Progress | None = None,
    stream: Callable[[bytes], object] | None = None,
    file_sha: bool | None = None,
    entries: Entries | None = None,
    like: str = "",
) -> Packed:
    """Pack rootfs (plus extras) into out_dir/pveoci-<digest>.tar.zst and return what was made; `rootfs` is a
    directory or a TarSource (an image's layers).

    `stream`, if given, receives the compressed bytes in order as they are made (an upload that runs
    while the rest is packed); with out_dir None they go only there. `file_sha`: whether to hash the whole
    file too (default: when there is a local file). `progress` counts the rootfs's
    file bytes as they are read (see rootfs_size for the total). `entries`: see write_tar. `like`: the tree's
    likeness key, which the name carries.
    """
    partial: Path | None = None
    writers: list[Callable[[bytes], object]] = [] if stream is None else [stream]
    raw: BinaryIO | None = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / f".{uuid.uuid4().hex}.partial"
        raw = partial.open("wb")
        writers.insert(0, raw.write)
    # The whole file's SHA-256 by default only for a local file (a copy of it is checked against it).
    if file_sha is None:
        file_sha = out_dir is not None
    framer = Framer(writers, level=level, workers=threads, file_sha=file_sha)
    try:
        try:
            count = _write(rootfs, framer, extras, progress, entries)
        except BaseException:
            framer.abort()
            raise
        finally:
            if raw is not None:
                raw.close()
        digest = digest_of(framer.frames)
        final = None
        if partial is not None and out_dir is not None:
            final = out_dir / template_name(digest, like)
            partial.replace(final)
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    whole_sha = framer.file_sha.hexdigest() if framer.file_sha is not None else ""
    return Packed(path=final, digest=digest, file_sha256=whole_sha, size=framer.size,
                  tar_size=framer.tar_size, entries=count, frames=tuple(framer.frames), like=like)


def _write(rootfs: Path | TarSource, framer: Framer, extras: Sequence[ExtraFile], progress: Progress | None,
           entries: Entries | None) -> int:
    """The stream of a directory (by the packer in C where it runs) or of a TarSource, into framer."""
    from pveoci.template import native

    if not isinstance(rootfs, (str, os.PathLike)):
        return rootfs.write(framer, extras, progress)
    program = native.binary()
    if program is None:
        return write_tar(rootfs, framer, extras, progress, entries)
    return write_native(program, rootfs, framer, extras, progress, entries)


def rootfs_size(rootfs: Path) -> int:
    """The bytes of the regular files of a rootfs (each hardlinked file once): what packing reads."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for folder, _dirs, files in os.walk(os.path.realpath(rootfs)):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if info.st_nlink > 1:
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total
