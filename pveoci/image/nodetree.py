"""An image's tree as a node unpacked it (`--pull node`): what a create asks of it, without its layers here.

When the node pulls an image itself, Proxmox unpacks its layers there, and the workstation never has them. What
a create asks of the tree (the program's mode along PATH, /etc/passwd and /etc/group, its size: lookups.py) is
answered from what the node's script reported of that tree (backends/imagescript.py): every entry's type, mode,
size and symlink target, and the two files. It is kept beside the image store, so a second create of the image
asks the node nothing. Symlinks are followed inside the tree as in the container (and as layers.Merged does): an
absolute target starts at the root again, ".." stops there, 40 hops at most.
"""

from __future__ import annotations

import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pveoci import errors
from pveoci.image import treewalk

#: The files a create reads of an image (user names), sent by the node's script beside the listing.
FILES = ("etc/passwd", "etc/group")
_TYPES = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "c": stat.S_IFCHR, "b": stat.S_IFBLK,
          "p": stat.S_IFIFO, "s": stat.S_IFSOCK}


@dataclass
class _Entry:
    mode: int
    link: str = ""
    children: dict[str, _Entry] | None = field(default=None, repr=False)


class NodeTree:
    """The tree from its listing (`find -printf '%y %m %s %i\\0%P\\0%l\\0'`) and the FILES' contents."""

    def __init__(self, listing: bytes, files: dict[str, bytes]) -> None:
        self.root = _Entry(stat.S_IFDIR | 0o755, children={})
        self.files = dict(files)
        self.size = 0
        seen: set[str] = set()
        fields = listing.split(b"\0")
        if len(fields) % 3 != 1 or fields[-1]:
            raise errors.ImageError("the node's listing of the image's tree is cut short")
        for at in range(0, len(fields) - 1, 3):
            head, path, link = fields[at:at + 3]
            words = head.decode("ascii", "replace").split()
            if len(words) != 4 or words[0] not in _TYPES or not all(w.isdigit() for w in words[1:]):
                raise errors.ImageError(f"the node's listing of the image's tree has a broken entry: {head[:60]!r}")
            kind, perms, size, inode = words
            entry = _Entry(_TYPES[kind] | int(perms, 8), link.decode("utf-8", "surrogateescape"),
                           {} if kind == "d" else None)
            name = path.decode("utf-8", "surrogateescape")
            if kind == "f" and inode not in seen:   # each hard-linked file once, as Merged.size
                seen.add(inode)
                self.size += int(size)
            self._put(name, entry)

    def _put(self, name: str, entry: _Entry) -> None:
        if not name:
            self.root.mode = entry.mode
            return
        parts = name.split("/")
        node = self.root
        for part in parts[:-1]:
            child = node.children.get(part) if node.children is not None else None
            if child is None or child.children is None:
                raise errors.ImageError(f"the node's listing of the image's tree names {name} before its directory")
            node = child
        assert node.children is not None
        old = node.children.get(parts[-1])
        if old is not None and old.children is not None and entry.children is not None:
            entry.children = old.children
        node.children[parts[-1]] = entry

    def _walk(self, path: str) -> tuple[list[str], _Entry] | None:
        return treewalk.walk(self.root, path.split("/"), True, lambda e: e.children,
                             lambda e: e.link if stat.S_ISLNK(e.mode) else None)

    def mode(self, path: str) -> int | None:
        found = self._walk(path)
        return None if found is None else found[1].mode

    def kind(self, path: str) -> str | None:
        mode = self.mode(path)
        if mode is None:
            return None
        return {stat.S_IFDIR: "dir", stat.S_IFREG: "file"}.get(stat.S_IFMT(mode), "other")

    def resolve(self, path: str) -> str | None:
        found = self._walk(path)
        return None if found is None else "/".join(found[0])

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """One of FILES, as the node sent it; None when the tree has no regular file there."""
        real = self.resolve(path)
        if real is None or self.kind(path) != "file":
            return None
        if real not in self.files:
            raise errors.ImageError(f"the image's {path} is {'/' + real} (a symbolic link): pveoci reads it on the "
                                    "node only at its own path; pull the image here (--pull workstation)")
        data = self.files[real]
        if len(data) > limit:
            raise errors.ImageError(f"the image's {path} is more than the {limit} bytes pveoci reads")
        return data


def save(path: Path, listing: bytes, files: dict[str, bytes]) -> None:
    """Keep what the node reported (compressed: a listing is about 60 bytes an entry), atomically."""
    import json
    import os

    body = json.dumps({name: data.decode("latin-1") for name, data in files.items()}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(zlib.compress(len(body).to_bytes(8, "big") + body + listing, 6))
    os.replace(partial, path)


def load(path: Path) -> NodeTree | None:
    """What save() kept, or None when nothing (usable) is there."""
    import json

    try:
        raw = zlib.decompress(path.read_bytes())
        length = int.from_bytes(raw[:8], "big")
        files = {str(k): str(v).encode("latin-1") for k, v in json.loads(raw[8:8 + length]).items()}
        return NodeTree(raw[8 + length:], files)
    except (OSError, ValueError, zlib.error, errors.ImageError):
        return None
