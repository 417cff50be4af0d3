"""Knowing a rootfs's template without packing it: a stat walk's fingerprint mapped to what the last pack made.

The fingerprint covers every entry's path, type, mode, owner, size, mtime, ctime, inode and device:
any change to a file's content or metadata changes its ctime, so an equal fingerprint means the
pack would give the same bytes. Any change packs again: never a stale template. What a pack made
(its name, size, frames) is kept in the local cache (Cache.remember), keyed by the fingerprint and
by what else goes into a template (the init's architecture and bytes, the PVE 9.0 layout, the format).

A tree at a path never packed before (each engine container's overlay, a copy, another workstation's
copy) has a new fingerprint however alike it is. Its likeness says what it is wherever it lies, as far
as a stat walk can tell: each entry's relative path, type, mode and owner, a regular file's size and
mtime (to the nanosecond), a link's target, a device's numbers, which files are hard links of which;
not directories' or links' own times, which engines touch as they set a container up (podman adds
/etc/mtab). So a tree alike to one packed before is taken to hold the same files, as rsync's quick
check takes them (a file rewritten to the same size with its mtime put back is not told apart), and
its template is that one's; the template's name carries it, so another workstation finds it in the
storage's listing. At a path packed before, only the fingerprint counts (docs/user-guide.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pveoci import errors
from pveoci.template import native, tree

if TYPE_CHECKING:
    from pveoci.template.pack import Entries, Packed


@dataclass(frozen=True)
class Scan:
    """One stat walk of a rootfs: its fingerprint, the bytes of its regular files (each hardlink once), and the
    walk itself in packing order (a pack that follows uses it instead of walking again)."""

    fingerprint: str
    size: int
    entries: Entries = field(default=b"", repr=False, compare=False)


def scan(rootfs: Path) -> Scan:
    """A stat walk of rootfs (links not followed) in packing order: the fingerprint, the size that sizes its
    root disk and is the total of packing's progress, and the walk (for the pack that may follow)."""
    from pveoci.template.pack import walk

    return _scanned(walk(_root(rootfs)))


def _root(rootfs: Path) -> bytes:
    root = os.fsencode(os.path.realpath(rootfs))
    if not os.path.isdir(root):
        raise errors.BundleError(f"rootfs {rootfs} is not a directory")
    return root


def _scanned(walked: tree.Walk) -> Scan:
    return Scan(hashlib.sha256(walked.records).hexdigest(), walked.size, walked.records)


class Scanning:
    """scan(rootfs) under way while the caller does other work: started when made (the packer's process, whose
    records a thread reads when it ends; or the walk in Python, in a thread); result() waits for it and raises
    what it raised; cancel() stops it (the packer's at once, Python's walk once it is over)."""

    def __init__(self, rootfs: Path) -> None:
        self.root = root = _root(rootfs)
        program = native.scanner()
        self._scanner = native.Scanner(program, root) if program is not None else None
        self._scan: Scan | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(root,), name="pveoci-scan", daemon=True)
        self._thread.start()

    def _run(self, root: bytes) -> None:
        try:
            self._scan = _scanned(self._scanner.result() if self._scanner is not None else tree.walk_python(root))
        except BaseException as exc:  # handed to result(), in the caller's thread
            self._error = exc

    def result(self) -> Scan:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._scan is not None
        return self._scan

    def cancel(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
        self._thread.join()


_ahead: dict[bytes, Scanning] = {}


def ahead(walk: Scanning) -> None:
    """A walk started ahead of the command that will want it (pveoci.cli.prefetch): scanning() of the same
    directory (its real path) takes it instead of walking again."""
    _ahead[walk.root] = walk


def stop_ahead() -> None:
    """Stops the walks started ahead that nothing took."""
    while _ahead:
        _ahead.popitem()[1].cancel()


@contextmanager
def scanning(rootfs: Path) -> Iterator[Scanning]:
    """The rootfs's stat walk while the caller does the rest of what it must before the walk's result: the walk
    is over when the block is left, and stopped if the block fails. The walk the command's start began for this
    rootfs (ahead), if any, is this one."""
    walk = _ahead.pop(_root(rootfs), None) or Scanning(rootfs)
    try:
        yield walk
    except BaseException:
        walk.cancel()
        raise
    walk.result()


LIKENESS = b"pveoci-likeness-1"
_ENTRY = struct.Struct("=cIIIIqQQII")   # kind, mode, uid, gid, mtime_ns, size, rdev, len(path), len(extra)


def likeness(rootfs: Path, scanned: Scan) -> str:
    """What the scanned tree is by its content as a stat walk tells it, wherever it lies (see above); its symbolic
    links' targets are read for it (once per tree and fingerprint in a process)."""
    root = _root(rootfs)
    known = _likenesses.get((root, scanned.fingerprint))
    if known is None:
        known = _likenesses[(root, scanned.fingerprint)] = _likeness(root, scanned)
    return known


_likenesses: dict[tuple[bytes, str], str] = {}


def _likeness(root: bytes, scanned: Scan) -> str:
    # The records read in place (tree.entries' layout), not as Entry tuples: this runs over every entry.
    parts: list[bytes] = [LIKENESS]
    keep = parts.append
    first: dict[tuple[int, int], bytes] = {}
    records, unpack, size, at, end = scanned.entries, tree.RECORD.unpack_from, tree.RECORD.size, 0, len(scanned.entries)
    pack, fmt = _ENTRY.pack, stat.S_IFMT
    reg, lnk, chr_, blk = stat.S_IFREG, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK
    while at < end:
        (_, _, name_len, mode, uid, gid, mtime_ns, _, st_size, dev, ino, nlink, rdev) = unpack(records, at)
        at += size
        rel = records[at:at + name_len]
        at += name_len
        kind = fmt(mode)
        mtime = length = device = 0
        extra = b""
        if kind == reg:
            linked = first.setdefault((dev, ino), rel) if nlink > 1 else rel
            if linked != rel:
                kind, extra = 0, linked   # a hard link of an earlier file: what the tar says
            else:
                mtime, length = mtime_ns, st_size
        elif kind == lnk:
            extra = _target(root, rel)
        elif kind in (chr_, blk):
            device = rdev
        keep(pack(b"L", kind, mode & 0o7777, uid, gid, mtime, length, device, len(rel), len(extra)))
        keep(rel)
        keep(extra)
    return hashlib.sha256(b"".join(parts)).hexdigest()


def _target(root: bytes, rel: bytes) -> bytes:
    full = root + b"/" + rel if rel else root
    try:
        return os.readlink(full)
    except OSError as exc:
        raise errors.BundleError(f"cannot read the link {os.fsdecode(full)}: {exc.strerror}") from None


def key(fingerprint: str, arch: str, init_digest: str, legacy_init: bool) -> str:
    """What names one packing of a rootfs: the tree, and what pveoci adds to it."""
    from pveoci.template.frames import FORMAT, LEVEL

    parts = f"{fingerprint}:{arch}:{init_digest}:{int(legacy_init)}:{FORMAT.decode()}:{LEVEL}"
    return hashlib.sha256(parts.encode()).hexdigest()


def to_json(packed: Packed) -> dict[str, Any]:
    return {"digest": packed.digest, "file_sha256": packed.file_sha256, "size": packed.size,
            "tar_size": packed.tar_size, "entries": packed.entries, "frames": [f.to_json() for f in packed.frames],
            "like": packed.like}


def from_json(data: Any) -> Packed | None:
    """A pack as remembered (no local file); None for anything unreadable."""
    from pveoci.template.frames import Frame
    from pveoci.template.pack import Packed

    try:
        return Packed(path=None, digest=str(data["digest"]), file_sha256=str(data["file_sha256"]),
                      size=int(data["size"]), tar_size=int(data["tar_size"]), entries=int(data["entries"]),
                      frames=tuple(Frame.from_json(f) for f in data["frames"]), like=str(data.get("like") or ""))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
