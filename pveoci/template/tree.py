"""A rootfs's stat walk as records: what fingerprints it (manifest.py) and what a pack packs (pack.py).

The walk is in tar order (depth first, each directory's children sorted by their bytes, links never
followed). Each entry is one record, in the machine's byte order:

    b"F" crc name_len mode uid gid mtime_ns ctime_ns size dev ino nlink rdev, then the relative path

(crc: CRC-32 of the path, which chooses where frames end). The packer in C (native.py) makes the
same records, much faster; here is the same walk in Python, for where it does not run (pack.walk
chooses).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pveoci import errors

RECORD = struct.Struct("=cIIIIIqqQQQQQ")


class Entry(NamedTuple):
    """One record, read back: the fields pack.py builds a tar header from (named as os.stat_result's)."""

    rel: bytes
    st_mode: int
    st_uid: int
    st_gid: int
    st_mtime_ns: int
    st_size: int
    st_dev: int
    st_ino: int
    st_nlink: int
    st_rdev: int

    @property
    def mtime(self) -> int:
        """Whole seconds, toward zero (as the packer in C computes them)."""
        ns = self.st_mtime_ns
        return ns // 1_000_000_000 if ns >= 0 else -(-ns // 1_000_000_000)


@dataclass(frozen=True)
class Walk:
    records: bytes      # the entries, as above
    size: int           # bytes of the regular files, each hard-linked file once
    count: int


def record(rel: bytes, st: os.stat_result) -> bytes:
    return RECORD.pack(b"F", zlib.crc32(rel), len(rel), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                       st.st_ctime_ns, st.st_size, st.st_dev, st.st_ino, st.st_nlink, st.st_rdev) + rel


def walk_python(root: bytes) -> Walk:
    parts: list[bytes] = []
    keep = parts.append
    size = count = 0
    seen: set[tuple[int, int]] = set()
    for rel, st in stats(root):
        keep(record(rel, st))
        count += 1
        if stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or (st.st_dev, st.st_ino) not in seen):
            size += st.st_size
            if st.st_nlink > 1:
                seen.add((st.st_dev, st.st_ino))
    return Walk(b"".join(parts), size, count)


def stats(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """(relative path, lstat) in tar order."""
    stack: list[bytes] = [b""]
    lstat, isdir, listdir = os.lstat, stat.S_ISDIR, os.listdir
    while stack:
        rel = stack.pop()
        full = root + b"/" + rel if rel else root
        try:
            info = lstat(full)
        except FileNotFoundError:
            raise errors.BundleError(f"{os.fsdecode(full)} vanished while it was being read") from None
        except OSError as exc:
            raise errors.BundleError(f"cannot read {os.fsdecode(full)}: {exc.strerror}") from None
        yield rel, info
        if isdir(info.st_mode):
            try:
                names = sorted(listdir(full))
            except OSError as exc:
                raise errors.BundleError(f"cannot read directory {os.fsdecode(full)}: {exc.strerror}") from None
            # Reversed onto the stack, so they come off in sorted order.
            prefix = rel + b"/" if rel else b""
            stack.extend(prefix + n for n in reversed(names))


def entries(records: bytes) -> Iterator[Entry]:
    """The records read back, in order."""
    unpack, size, at, end = RECORD.unpack_from, RECORD.size, 0, len(records)
    while at < end:
        (_, _, name_len, mode, uid, gid, mtime_ns, _, st_size, dev, ino, nlink, rdev) = unpack(records, at)
        at += size
        yield Entry(records[at:at + name_len], mode, uid, gid, mtime_ns, st_size, dev, ino, nlink, rdev)
        at += name_len
