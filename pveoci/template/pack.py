"""Pack a rootfs into a deterministic, content-addressed `pveoci-<digest>.tar.zst`, in one streaming pass.

The tar stream is built by hand (tarfile's per-member path is the bottleneck, see
docs/performance.md): entries sorted by name, numeric owners, modes with setuid/setgid/sticky,
integer mtimes, symlinks stored as links and never followed, hardlinks, device nodes, fifos,
xattrs (PAX `SCHILY.xattr.*`), long and non-UTF-8 names (PAX). The stream is hashed (its
SHA-256 names the template) and compressed with zstd on all cores; the compressed file is
hashed too, so the node can verify what it received. Every file is read once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pveoci import errors

log = logging.getLogger("pveoci.template")

BLOCK = 512
READ_SIZE = 1 << 20          # large reads: the per-call cost, not the bytes, dominates small files
FLUSH_SIZE = 1 << 20         # batch headers and small files before hashing and compressing
NAME_PREFIX = "pveoci-"
SUFFIX = ".tar.zst"
DIGEST_CHARS = 16            # 64 bits of the digest in the file name
RESERVED = ".pveoci"         # the top-level directory pveoci adds to every template

Progress = Callable[[int], None]


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
    path: Path           # the local .tar.zst
    digest: str          # sha256 of the tar stream: the template's identity
    file_sha256: str     # sha256 of the compressed file, for verifying an upload
    size: int            # bytes of the compressed file
    tar_size: int
    entries: int

    @property
    def name(self) -> str:
        return template_name(self.digest)


def template_name(digest: str) -> str:
    return f"{NAME_PREFIX}{digest[:DIGEST_CHARS]}{SUFFIX}"


class _Sink:
    """Hashes the tar stream and feeds it to the compressor in large writes."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buf = bytearray()
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= FLUSH_SIZE:
            self.flush()
            self._emit(data)
            return
        self._buf += data
        if len(self._buf) >= FLUSH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = bytearray()

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        self.sha.update(data)
        self._out.write(data)
        self.size += len(data)


class _HashingFile:
    """The compressed output: written to disk and hashed on the way."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._fh.write(data)
        self.size += len(data)
        return len(data)


def _tarname(rel: bytes) -> str:
    name = os.fsdecode(rel)
    return "./" + name if name else "."


def _entries(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """(relative path, lstat) depth-first, each directory's children sorted by byte name, links not followed."""
    stack: list[bytes] = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        info = os.lstat(full)
        yield rel, info
        if stat.S_ISDIR(info.st_mode):
            try:
                names = sorted(os.listdir(full))
            except OSError as exc:
                raise errors.BundleError(f"cannot read directory {os.fsdecode(full)}: {exc.strerror}") from None
            # Reversed onto the stack, so they come off in sorted order.
            stack.extend(os.path.join(rel, n) if rel else n for n in reversed(names))


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


def _base_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _copy_file(path: bytes, size: int, sink: _Sink, progress: Progress | None) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        left = size
        while left > 0:
            chunk = os.read(fd, min(READ_SIZE, left))
            if not chunk:
                raise errors.BundleError(f"{os.fsdecode(path)} shrank while it was being packed")
            sink.write(chunk)
            left -= len(chunk)
            if progress is not None:
                progress(len(chunk))
        if os.read(fd, 1):
            raise errors.BundleError(f"{os.fsdecode(path)} grew while it was being packed")
    finally:
        os.close(fd)
    pad = -size % BLOCK
    if pad:
        sink.write(b"\0" * pad)


def write_tar(rootfs: Path, sink: _Sink, extras: Sequence[ExtraFile] = (), progress: Progress | None = None) -> int:
    """Write the deterministic tar stream of rootfs (plus extras) to sink; returns the entry count.

    `progress` is told the bytes of file data read (their total is the rootfs's size, see rootfs_size).
    A rootfs that is itself a symlink is followed (it names the tree); nothing inside it ever is.
    """
    root = os.fsencode(os.path.realpath(rootfs))
    if not os.path.isdir(root):
        raise errors.BundleError(f"rootfs {rootfs} is not a directory")
    seen_inodes: dict[tuple[int, int], str] = {}
    count = 0
    replaced = tuple(os.fsencode(e.path.strip("/")) for e in extras if not e.path.startswith(RESERVED))
    for rel, st in _entries(root):
        if rel == os.fsencode(RESERVED) and extras:
            raise errors.BundleError(f"rootfs {rootfs} has /{RESERVED}, which pveoci reserves for its own files")
        if any(rel == r or rel.startswith(r + b"/") for r in replaced):
            continue
        full = os.path.join(root, rel) if rel else root
        name = _tarname(rel)
        info = _base_info(name, st)
        mode = st.st_mode
        data_size = 0
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen_inodes:
                info.type, info.linkname = tarfile.LNKTYPE, seen_inodes[key]
            else:
                if st.st_nlink > 1:
                    seen_inodes[key] = name
                info.type, info.size = tarfile.REGTYPE, st.st_size
                data_size = st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(os.readlink(full))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            log.info("skipping %s: sockets cannot be archived", name)
            continue
        info.pax_headers = _xattrs(full)
        sink.write(_header(info))
        if data_size:
            _copy_file(full, data_size, sink, progress)
        count += 1
    for extra in _extra_entries(extras):
        sink.write(_header(extra[0]))
        if extra[1]:
            sink.write(extra[1])
            sink.write(b"\0" * (-len(extra[1]) % BLOCK))
        count += 1
    sink.write(b"\0" * (2 * BLOCK))  # end of archive
    sink.flush()
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
    rootfs: Path,
    out_dir: Path,
    *,
    extras: Sequence[ExtraFile] = (),
    level: int = 3,
    threads: int = -1,
    progress: Progress | None = None,
) -> Packed:
    """Pack rootfs (plus extras) into out_dir/pveoci-<digest>.tar.zst and return what was made.

    `progress` counts the rootfs's file bytes as they are read (see rootfs_size for the total).
    """
    import zstandard

    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{uuid.uuid4().hex}.partial"
    try:
        with partial.open("wb") as raw:
            hashed = _HashingFile(raw)
            cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
            with cctx.stream_writer(hashed, write_size=FLUSH_SIZE,  # type: ignore[arg-type]  # duck-typed
                                    closefd=False) as compressor:
                sink = _Sink(compressor)
                entries = write_tar(rootfs, sink, extras, progress)
        digest = sink.sha.hexdigest()
        final = out_dir / template_name(digest)
        partial.replace(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Packed(path=final, digest=digest, file_sha256=hashed.sha.hexdigest(), size=hashed.size,
                  tar_size=sink.size, entries=entries)


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
