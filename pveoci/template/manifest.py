"""Knowing a rootfs's template without packing it: a stat walk's fingerprint mapped to what the last pack made.

The fingerprint covers every entry's path, type, mode, owner, size, mtime, ctime, inode and device:
any change to a file's content or metadata changes its ctime, so an equal fingerprint means the
pack would give the same bytes. Any change packs again: never a stale template. What a pack made
(its name, size, frames) is kept in the local cache (Cache.remember), keyed by the fingerprint and
by what else goes into a template (the init's architecture and bytes, the PVE 9.0 layout, the format).
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pveoci import errors
from pveoci.template.frames import FORMAT, LEVEL, Frame
from pveoci.template.pack import Packed

_FIELDS = struct.Struct("<IIIQqqqQQQ")   # mode uid gid size mtime_ns ctime_ns ino dev rdev nlink


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    stack: list[bytes] = [b""]
    lstat, isdir, listdir = os.lstat, stat.S_ISDIR, os.listdir
    while stack:
        rel = stack.pop()
        full = root + b"/" + rel if rel else root
        info = lstat(full)
        yield rel, info
        if isdir(info.st_mode):
            try:
                names = listdir(full)
            except OSError as exc:
                raise errors.BundleError(f"cannot read directory {os.fsdecode(full)}: {exc.strerror}") from None
            prefix = rel + b"/" if rel else b""
            stack.extend(prefix + n for n in names)


@dataclass(frozen=True)
class Scan:
    """One stat walk of a rootfs: its fingerprint, and the bytes of its regular files (each hardlink once)."""

    fingerprint: str
    size: int


def scan(rootfs: Path) -> Scan:
    """A stat walk of rootfs (links not followed): the fingerprint (order-independent within a directory) and
    the size that sizes its root disk and is the total of packing's progress."""
    root = os.fsencode(os.path.realpath(rootfs))
    if not os.path.isdir(root):
        raise errors.BundleError(f"rootfs {rootfs} is not a directory")
    records = []
    pack_fields = _FIELDS.pack
    size = 0
    seen: set[tuple[int, int]] = set()
    for rel, st in _walk(root):
        records.append(rel + b"\0" + pack_fields(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                                  st.st_ctime_ns, st.st_ino, st.st_dev, st.st_rdev, st.st_nlink))
        if stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or (st.st_dev, st.st_ino) not in seen):
            size += st.st_size
            if st.st_nlink > 1:
                seen.add((st.st_dev, st.st_ino))
    records.sort()
    return Scan(hashlib.sha256(b"\n".join(records)).hexdigest(), size)


def key(fingerprint: str, arch: str, init_digest: str, legacy_init: bool) -> str:
    """What names one packing of a rootfs: the tree, and what pveoci adds to it."""
    parts = f"{fingerprint}:{arch}:{init_digest}:{int(legacy_init)}:{FORMAT.decode()}:{LEVEL}"
    return hashlib.sha256(parts.encode()).hexdigest()


def to_json(packed: Packed) -> dict[str, Any]:
    return {"digest": packed.digest, "file_sha256": packed.file_sha256, "size": packed.size,
            "tar_size": packed.tar_size, "entries": packed.entries, "frames": [f.to_json() for f in packed.frames]}


def from_json(data: Any) -> Packed | None:
    """A pack as remembered (no local file); None for anything unreadable."""
    try:
        return Packed(path=None, digest=str(data["digest"]), file_sha256=str(data["file_sha256"]),
                      size=int(data["size"]), tar_size=int(data["tar_size"]), entries=int(data["entries"]),
                      frames=tuple(Frame.from_json(f) for f in data["frames"]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
