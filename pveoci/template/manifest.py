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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pveoci import errors
from pveoci.template.frames import FORMAT, LEVEL, Frame
from pveoci.template.pack import Entries, Packed, walk


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
    root = os.fsencode(os.path.realpath(rootfs))
    if not os.path.isdir(root):
        raise errors.BundleError(f"rootfs {rootfs} is not a directory")
    walked = walk(root)
    return Scan(hashlib.sha256(walked.records).hexdigest(), walked.size, walked.records)


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
