"""Merge an OCI image's layers into one deterministic tar stream for a template, without unpacking them.

The layers (tar, tar+gzip, tar+zstd blobs on disk) are applied as the OCI image spec's "Applying Changesets"
says, in two passes over them: `merge` reads every header (data skipped) and builds the final tree in memory;
`Merged.write` reads the layers again and streams that tree's entries into the template's framer, each file's
data copied from its layer in chunks. Nothing is unpacked to disk and nothing needs root.

The output follows the layers' order, members overridden later left out, with one change: a directory is
written just before the first entry below it, with its final metadata even when that comes from a later layer.
Proxmox unpacks templates with `tar --skip-old-files`, which leaves a directory that exists already (made for an
entry below it) as it is: a directory entry after its content would lose its mode and owner.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import zstandard

from pveoci import errors
from pveoci.image import treewalk
from pveoci.template.frames import Framer
from pveoci.template.pack import (
    BLOCK,
    READ_SIZE,
    RESERVED,
    ExtraFile,
    Progress,
    _Batched,
    _header,
    _replaced,
    write_extras,
)


def _optional(name: str) -> Any:
    """A module that may be missing (None then): ISA-L's gzip, see _gunzip."""
    try:
        return importlib.import_module(name)
    except ImportError:  # a platform without its wheels
        return None


_igzip, _isal_zlib = _optional("isal.igzip"), _optional("isal.isal_zlib")
_ISAL_ERRORS: tuple[type[Exception], ...] = (_isal_zlib.error,) if _isal_zlib is not None else ()

#: What reading a layer's bytes may raise (ISA-L's own error where it decompresses).
_READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error, zstandard.ZstdError, *_ISAL_ERRORS)

_FORMATS = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "tar+gzip",
}
_WHITEOUT = ".wh."
_WHITEOUT_META = ".wh..wh."      # aufs' own names; of them only the opaque marker means something here
_OPAQUE = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."
_HEADER_MAX = 64 << 20           # a tar header (PAX records, a long name) larger than this is not believed
_DEVICES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
_KINDS = {tarfile.REGTYPE: tarfile.REGTYPE, tarfile.AREGTYPE: tarfile.REGTYPE, tarfile.CONTTYPE: tarfile.REGTYPE,
          tarfile.DIRTYPE: tarfile.DIRTYPE, tarfile.SYMTYPE: tarfile.SYMTYPE, tarfile.CHRTYPE: tarfile.CHRTYPE,
          tarfile.BLKTYPE: tarfile.BLKTYPE, tarfile.FIFOTYPE: tarfile.FIFOTYPE}
_MODES = {tarfile.REGTYPE: stat.S_IFREG, tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK,
          tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50     # the magic of a skippable frame, its low 4 bits free

Position = tuple[int, int]       # (layer index, member index): where an entry is in the layers
_IMPLIED: Position = (-1, -1)    # an implied directory's: no member has it


@dataclass(frozen=True)
class Layer:
    """One layer blob of an image, on disk (its digest already checked by the store)."""

    path: Path
    media_type: str      # an OCI or Docker layer type: tar, tar+gzip or tar+zstd
    digest: str          # "sha256:<hex>", for messages only


@dataclass(frozen=True, slots=True)
class _Meta:
    """What an entry is, as its header says; a hard link's names share their data member's."""

    type: bytes                  # tarfile's type, regular files as REGTYPE
    mode: int                    # permissions with setuid, setgid and sticky
    uid: int
    gid: int
    mtime: int
    size: int = 0                # a regular file's data
    linkname: str = ""           # a symlink's target: any text, it is resolved inside the container
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()   # the PAX SCHILY.xattr.* records


class _Node:
    """An entry of the merged tree. A directory has children; an implied one (a layer has entries below it but
    none for it) has no metadata and is not written."""

    __slots__ = ("children", "first", "member", "meta", "source")

    def __init__(self, meta: _Meta | None, member: Position, children: dict[str, _Node] | None,
                 source: Position | None = None) -> None:
        self.meta = meta
        self.member = member          # the member that made it what it is
        self.children = children
        self.source = source          # a regular file's: the member holding its data
        self.first: Position | None = None   # where the first entry at or below it is written (see _plan)


@dataclass(frozen=True, slots=True)
class _Change:
    """One member of a layer, as pass 1 applies it."""

    member: int
    name: str                               # as the layer spells it, for messages
    parts: tuple[str, ...]                  # the normalised path, () for the root
    action: str                             # "entry"; "whiteout" removes parts; "opaque" empties it
    meta: _Meta | None = None               # an entry's (None for a hard link)
    target: tuple[str, ...] | None = None   # a hard link's target
    linkname: str = ""                      # the target as spelled


@dataclass
class _Slot:
    """What pass 2 writes when it reaches one member of a layer."""

    dirs: list[tuple[str, _Meta]] = field(default_factory=list)   # directories first, parents before children
    meta: _Meta | None = None               # the member's own entry, if the final tree has it
    names: list[str] = field(default_factory=list)   # its names there: a file's hard links after the first


# ------------------------------------------------------------------ messages


def _short(digest: str) -> str:
    algorithm, _, value = digest.rpartition(":")
    return f"{algorithm}:{value[:12]}" if algorithm else value[:12]


def _error(layer: Layer, text: str) -> errors.ImageError:
    return errors.ImageError(f"layer {_short(layer.digest)}: {text}")


def _show(name: str) -> str:
    """A name quoted for a one-line message, printable whatever bytes it holds."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "'" + "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text) + "'"


# --------------------------------------------------------------- reading layers


class _Unreadable(tarfile.ReadError):
    """The layer's bytes could not be read or decompressed. A tarfile error, so tarfile passes it on as it is,
    and only errors of reading a layer (not of the sink, say) become ImageErrors."""


class _Source(Protocol):
    def read(self, size: int, /) -> bytes: ...


_H = TypeVar("_H", bound="_Header")


class _Header(tarfile.TarInfo):
    """tarfile's header, but a truncated or invalid header after the first is an error, not the archive's end."""

    @classmethod
    def fromtarfile(cls: type[_H], archive: tarfile.TarFile) -> _H:
        try:
            return super().fromtarfile(archive)
        except _BAD_HEADERS as exc:
            raise _Unreadable(str(exc)) from None


# Not in tarfile's __all__ (nor its stubs), but there since Python 3.2: a block cut short, a checksum that fails.
_BAD_HEADERS: tuple[type[Exception], ...] = (vars(tarfile)["TruncatedHeaderError"], vars(tarfile)["InvalidHeaderError"])


class _Tar(tarfile.TarFile):
    """A layer's tar read once, front to back: it keeps no list of its members."""

    tarinfo = _Header
    members: list[tarfile.TarInfo]

    def next(self) -> tarfile.TarInfo | None:
        info = super().next()
        self.members.clear()
        return info


class _Reader:
    """A layer's tar stream as tarfile reads it: forward only (a plain tar seeks, a compressed one reads ahead).
    It notes when the data ran out, which tells a cut-off layer from a corrupt one."""

    def __init__(self, raw: BinaryIO, fmt: str) -> None:
        self._raw = raw
        self._fmt = fmt
        self._source: _Source = raw
        if fmt == "tar+gzip":
            self._source = _gunzip(raw)
        elif fmt == "tar+zstd":
            self._source = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
        self._pos = 0
        self.ended = False

    def check(self) -> None:
        """A zstd layer must be whole frames: zstandard's reader takes a frame cut short for the end of the data."""
        if self._fmt != "tar+zstd":
            return
        try:
            whole = _zstd_whole(self._raw)
            self._raw.seek(0)
        except OSError as exc:
            raise _Unreadable(str(exc)) from None
        if not whole:
            self.ended = True
            raise _Unreadable("its last zstd frame is cut off")

    def read(self, size: int) -> bytes:
        if size > _HEADER_MAX:
            raise _Unreadable(f"a header claims {size} bytes")
        chunks = []
        want = size
        try:
            while want > 0 and (chunk := self._source.read(want)):
                chunks.append(chunk)
                want -= len(chunk)
        except _READ_ERRORS as exc:
            self.ended = isinstance(exc, EOFError)
            raise _Unreadable(str(exc) or type(exc).__name__) from None
        data = b"".join(chunks)
        self._pos += len(data)
        if want > 0:
            self.ended = True
        return data

    def exactly(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise _Unreadable("unexpected end of data")
        return data

    def chunks(self, size: int) -> Iterator[bytes]:
        """A member's data, READ_SIZE at a time."""
        left = size
        while left > 0:
            chunk = self.exactly(min(READ_SIZE, left))
            left -= len(chunk)
            yield chunk

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            raise io.UnsupportedOperation("a layer is read forward only")
        if self._fmt == "tar":
            self._raw.seek(pos)
            self._pos = pos
        while self._pos < pos and self.read(min(READ_SIZE, pos - self._pos)):
            pass
        return self._pos

    def tell(self) -> int:
        return self._pos

    def drain(self) -> None:
        """Read to the end: a compressed layer's checksum is there."""
        if self._fmt != "tar":
            while self.read(READ_SIZE):
                pass

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("a layer is read only")

    def close(self) -> None:
        """The file is closed by whoever opened it (_open)."""


def _gunzip(raw: BinaryIO) -> _Source:
    """A gzip layer's tar: by ISA-L where it is installed (2.6x Python's zlib on a real layer), else by gzip."""
    if _igzip is None:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    reader: _Source = _igzip.IGzipFile(fileobj=raw, mode="rb")
    return reader


def _zstd_whole(raw: BinaryIO) -> bool:
    """Whether the blob is whole zstd frames, walking the frames' and blocks' headers (their data is skipped)."""
    end = os.fstat(raw.fileno()).st_size
    pos = 0
    while pos < end:
        raw.seek(pos)
        head = raw.read(18)            # the largest frame header
        magic = int.from_bytes(head[:4], "little")
        if len(head) >= 8 and magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
            pos += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != _ZSTD_MAGIC:
            return len(head) >= 4      # not zstd at all: the decompressor says so
        try:
            checksum = 4 if zstandard.get_frame_parameters(head).has_checksum else 0
            pos = _zstd_blocks(raw, pos + zstandard.frame_header_size(head), end)
        except zstandard.ZstdError:
            return False
        if pos < 0:
            return False
        pos += checksum
    return pos == end


def _zstd_blocks(raw: BinaryIO, pos: int, end: int) -> int:
    """Where a frame's blocks end (they start at pos), or -1 where the file ends first."""
    while True:
        raw.seek(pos)
        head = raw.read(3)
        if len(head) < 3:
            return -1
        header = int.from_bytes(head, "little")
        kind, size = (header >> 1) & 3, header >> 3
        pos += 3 + (1 if kind == 1 else size)   # an RLE block holds one byte
        if pos > end:
            return -1
        if header & 1:
            return pos


def _format(layer: Layer) -> str:
    fmt = _FORMATS.get(layer.media_type)
    if fmt is None:
        raise _error(layer, f"media type {layer.media_type!r} is not a layer pveoci can read")
    return fmt


@contextmanager
def _open(layer: Layer) -> Iterator[tuple[_Tar, _Reader]]:
    """The layer's tar, read forward; whatever is wrong with its bytes becomes one ImageError naming the layer."""
    fmt = _format(layer)
    try:
        raw = layer.path.open("rb")
    except OSError as exc:
        raise _error(layer, f"cannot read {layer.path}: {exc.strerror or exc}") from None
    with raw:
        reader = _Reader(raw, fmt)
        try:
            reader.check()
            yield _Tar(fileobj=reader, mode="r", encoding="utf-8", errors="surrogateescape"), reader
        except tarfile.TarError as exc:
            if reader.ended:
                raise _error(layer, f"its {fmt} data ends early ({exc})") from None
            raise _error(layer, f"its data is not valid {fmt} ({exc})") from None


def _members(tar: _Tar) -> Iterator[tuple[int, tarfile.TarInfo]]:
    """The layer's members with their indexes, which are their positions in both passes."""
    index = 0
    while (info := tar.next()) is not None:
        yield index, info
        index += 1


# ----------------------------------------------------------- pass 1: headers


class _BadPath(Exception):
    """Why a name cannot be a path inside the rootfs."""


def _normalise(name: str) -> tuple[str, ...]:
    """The path's components: "./" and empty components dropped; nothing that could leave the rootfs."""
    if not name:
        raise _BadPath("is empty")
    if "\0" in name:
        raise _BadPath("has a NUL byte")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or ".." in parts:
        raise _BadPath("leaves the rootfs")
    return parts


def _path(layer: Layer, name: str) -> tuple[str, ...]:
    try:
        return _normalise(name)
    except _BadPath as bad:
        raise _error(layer, f"path {_show(name)} {bad}") from None


def _link_target(layer: Layer, info: tarfile.TarInfo) -> tuple[str, ...]:
    try:
        return _normalise(info.linkname)
    except _BadPath as bad:
        raise _error(layer, f"hard link {_show(info.name)} points to {_show(info.linkname)}, which {bad}") from None


def _meta(layer: Layer, info: tarfile.TarInfo) -> _Meta:
    kind = _KINDS.get(info.type)
    if kind is None:
        raise _error(layer, f"path {_show(info.name)} has the entry type {info.type!r}, which pveoci cannot unpack")
    if "\0" in info.linkname:
        raise _error(layer, f"symlink {_show(info.name)} has a NUL byte in its target")
    return _Meta(kind, info.mode & 0o7777, info.uid, info.gid, int(info.mtime),
                 size=info.size if kind == tarfile.REGTYPE else 0,
                 linkname=info.linkname if kind == tarfile.SYMTYPE else "",
                 devmajor=info.devmajor if kind in _DEVICES else 0,
                 devminor=info.devminor if kind in _DEVICES else 0,
                 xattrs=tuple(sorted((k, v) for k, v in info.pax_headers.items() if k.startswith(_XATTR))))


def _whiteout(layer: Layer, member: int, name: str, parts: tuple[str, ...]) -> _Change | None:
    base = parts[-1]
    if base == _OPAQUE:
        return _Change(member, name, parts[:-1], "opaque")
    if base.startswith(_WHITEOUT_META):
        return None
    hidden = base[len(_WHITEOUT):]
    if hidden in ("", ".", ".."):
        raise _error(layer, f"whiteout {_show(name)} names no entry")
    return _Change(member, name, (*parts[:-1], hidden), "whiteout")


def _change(layer: Layer, member: int, info: tarfile.TarInfo) -> _Change | None:
    """What one member does to the tree; None for what means nothing here (aufs' own files)."""
    parts = _path(layer, info.name)
    if parts[:1] == (RESERVED,):
        raise _error(layer, f"path {_show(info.name)} is inside /{RESERVED}, which pveoci reserves for its own files")
    if parts and parts[-1].startswith(_WHITEOUT):
        return _whiteout(layer, member, info.name, parts)
    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
        raise _error(layer, f"path {_show(info.name)} is a sparse file: sparse files are not supported")
    if info.type == tarfile.LNKTYPE:
        return _Change(member, info.name, parts, "entry", target=_link_target(layer, info), linkname=info.linkname)
    return _Change(member, info.name, parts, "entry", meta=_meta(layer, info))


def _changes(layer: Layer) -> list[_Change]:
    """Pass 1 over one layer: its members' headers, their data skipped."""
    changes = []
    with _open(layer) as (tar, reader):
        for member, info in _members(tar):
            change = _change(layer, member, info)
            if change is not None:
                changes.append(change)
        reader.drain()
    return changes


class _Tree:
    """The merged tree, built layer by layer from the headers."""

    def __init__(self) -> None:
        self._top: dict[str, _Node] = {}
        self.root = _Node(None, _IMPLIED, self._top)

    def apply(self, index: int, layer: Layer, changes: Sequence[_Change]) -> None:
        """One layer: its whiteouts hide what the layers below have (never its own entries, wherever they are in
        the tar), then its entries go in, in the layer's order."""
        for change in changes:
            if change.action == "whiteout":
                parent = self._literal(change.parts[:-1])
                if parent is not None and parent.children is not None:
                    parent.children.pop(change.parts[-1], None)
            elif change.action == "opaque":
                node = self._literal(change.parts)
                if node is not None and node.children is not None:
                    node.children.clear()
        for change in changes:
            if change.action == "entry":
                self._put(layer, (index, change.member), change)

    def _literal(self, parts: Iterable[str]) -> _Node | None:
        """The node at exactly this path (no symlink followed): what a whiteout names."""
        node: _Node | None = self.root
        for name in parts:
            if node is None or node.children is None:
                return None
            node = node.children.get(name)
        return node

    def _put(self, layer: Layer, position: Position, change: _Change) -> None:
        """An entry replaces what is at its path (and all below it), but for a directory over a directory."""
        meta = change.meta
        if meta is not None and not change.parts:
            if meta.type != tarfile.DIRTYPE:
                raise _error(layer, f"path {_show(change.name)} is the root, which must be a directory")
            self.root.meta, self.root.member = meta, position
            return
        if meta is None:
            node = self._linked(layer, position, change)
        else:
            node = _Node(meta, position, {} if meta.type == tarfile.DIRTYPE else None,
                         position if meta.type == tarfile.REGTYPE else None)
        children = self._parent(layer, change)
        old = children.get(change.parts[-1])
        if node.children is not None and old is not None and old.children is not None:
            old.meta, old.member = node.meta, position   # a directory over a directory: its children stay
        else:
            children[change.parts[-1]] = node

    def _parent(self, layer: Layer, change: _Change) -> dict[str, _Node]:
        """The children of the entry's parent directory, implied where missing; never through a symlink."""
        if not change.parts:
            raise _error(layer, f"hard link {_show(change.name)} is the root, which must be a directory")
        children = self._top
        for depth, name in enumerate(change.parts[:-1]):
            node = children.get(name)
            if node is None:
                node = children[name] = _Node(None, _IMPLIED, {})
            if node.children is None:
                what = "a symlink" if node.meta is not None and node.meta.type == tarfile.SYMTYPE else "not a directory"
                above = _show("/".join(change.parts[:depth + 1]))
                raise _error(layer, f"path {_show(change.name)} is under {above}, which is {what}")
            children = node.children
        return children

    def _linked(self, layer: Layer, position: Position, change: _Change) -> _Node:
        """A hard link's node: its target's data and metadata, as they are when the link is made."""
        found = self.walk(change.target or (), follow_last=False)
        target = None if found is None else found[1]
        if target is None or target.meta is None or target.source is None:
            problem = "does not exist" if target is None else "is not a regular file"
            raise _error(layer, f"hard link {_show(change.name)} points to {_show(change.linkname)}, which {problem}")
        return _Node(target.meta, position, None, target.source)

    def walk(self, parts: Iterable[str], follow_last: bool) -> tuple[list[str], _Node] | None:
        """The node at parts and its real path, symlinks resolved inside the tree as in the container (an absolute
        target starts at the root again, ".." stops there); the last one only with follow_last. None when absent,
        under a non-directory, or more than 40 symlinks deep."""
        return treewalk.walk(self.root, parts, follow_last, lambda node: node.children, _linkname)


def _linkname(node: _Node) -> str | None:
    return node.meta.linkname if node.meta is not None and node.meta.type == tarfile.SYMTYPE else None


# --------------------------------------------------------------- the plan


def _preorder(root: _Node) -> list[tuple[str, _Node]]:
    out = []
    todo = [("", root)]
    while todo:
        rel, node = todo.pop()
        out.append((rel, node))
        if node.children:
            todo.extend((f"{rel}/{name}" if rel else name, child) for name, child in reversed(node.children.items()))
    return out


def _first(node: _Node) -> Position | None:
    """Where the first entry at or below node is written: a file's group at its data, a directory before all
    that is below it (and no later than its own member)."""
    if node.children is None:
        return node.source if node.source is not None else node.member
    below = [child.first for child in node.children.values() if child.first is not None]
    if node.meta is not None:
        below.append(node.member)
    return min(below, default=None)


def _plan(root: _Node) -> tuple[dict[int, dict[int, _Slot]], int, int]:
    """What pass 2 writes at which member of which layer; the final tree's entries and bytes of file data."""
    order = _preorder(root)
    for _rel, node in reversed(order):   # children before their parents
        node.first = _first(node)
    slots: dict[int, dict[int, _Slot]] = {}
    groups: dict[Position, list[tuple[Position, str]]] = {}
    metas: dict[Position, _Meta] = {}
    entries = 0
    for rel, node in order:
        if node.meta is None:
            continue
        entries += 1
        if node.children is not None:
            _slot(slots, node.first or node.member).dirs.append((rel, node.meta))
        elif node.source is not None:
            groups.setdefault(node.source, []).append((node.member, rel))
            metas[node.source] = node.meta
        else:
            slot = _slot(slots, node.member)
            slot.meta, slot.names = node.meta, [rel]
    for source, names in groups.items():
        slot = _slot(slots, source)
        slot.meta, slot.names = metas[source], [rel for _member, rel in sorted(names)]
    for by_member in slots.values():
        for slot in by_member.values():
            slot.dirs.sort(key=lambda d: d[0].split("/"))
    return slots, entries, sum(meta.size for meta in metas.values())


def _slot(slots: dict[int, dict[int, _Slot]], position: Position) -> _Slot:
    return slots.setdefault(position[0], {}).setdefault(position[1], _Slot())


# ----------------------------------------------------------- pass 2: output


def _tarinfo(rel: str, meta: _Meta, link_to: str | None = None) -> tarfile.TarInfo:
    """The entry's header as pack.py writes its own: "./rel" (the root "."), numeric owners, xattrs as PAX."""
    info = tarfile.TarInfo("./" + rel if rel else ".")
    info.mode, info.uid, info.gid, info.mtime = meta.mode, meta.uid, meta.gid, meta.mtime
    info.uname = info.gname = ""
    info.devmajor, info.devminor = meta.devmajor, meta.devminor
    info.pax_headers = dict(meta.xattrs)
    if link_to is None:
        info.type, info.size, info.linkname = meta.type, meta.size, meta.linkname
    else:
        info.type, info.linkname = tarfile.LNKTYPE, "./" + link_to
    return info


def _crc(rel: str) -> int:
    return zlib.crc32(rel.encode("utf-8", "surrogateescape"))


class _Output:
    """The sink and what is not written to it (what pveoci's own files replace)."""

    def __init__(self, sink: Framer, replaced: tuple[bytes, ...], progress: _Batched) -> None:
        self.sink = sink
        self._replaced = replaced
        self._progress = progress

    def kept(self, rel: str) -> bool:
        raw = rel.encode("utf-8", "surrogateescape")
        return not any(raw == r or raw.startswith(r + b"/") for r in self._replaced)

    def entry(self, rel: str, meta: _Meta, link_to: str | None = None) -> None:
        """An entry without data: a directory, symlink, device, fifo, or a hard link to link_to."""
        self.sink.begin(0)
        self.sink.write(_header(_tarinfo(rel, meta, link_to)))
        self.sink.end(_crc(rel))

    def file(self, rel: str, meta: _Meta, reader: _Reader) -> None:
        """A regular file with its data, copied from the layer a chunk at a time."""
        header = _header(_tarinfo(rel, meta))
        size = meta.size
        self.sink.begin(size)
        if size < READ_SIZE:
            self.sink.write_file(header, reader.exactly(size), -size % BLOCK)
            self._progress(size)
        else:
            self.sink.write(header)
            for chunk in reader.chunks(size):
                self.sink.write(chunk)
                self._progress(len(chunk))
            if size % BLOCK:
                self.sink.write(b"\0" * (-size % BLOCK))
        self.sink.end(_crc(rel))

    def slot(self, layer: Layer, slot: _Slot, info: tarfile.TarInfo, reader: _Reader) -> int:
        """What is written at this member: directories, then the member's entry; how many entries."""
        dirs = [(rel, meta) for rel, meta in slot.dirs if self.kept(rel)]
        for rel, meta in dirs:
            self.entry(rel, meta)
        if slot.meta is None:
            return len(dirs)
        if _KINDS.get(info.type) != slot.meta.type or (slot.meta.type == tarfile.REGTYPE
                                                       and info.size != slot.meta.size):
            raise _error(layer, f"changed since it was merged: {_show(info.name)} is not what it was")
        names = [rel for rel in slot.names if self.kept(rel)]
        if names and slot.meta.type == tarfile.REGTYPE:
            reader.seek(info.offset_data)
            self.file(names[0], slot.meta, reader)
            for other in names[1:]:
                self.entry(other, slot.meta, link_to=names[0])
        elif names:
            self.entry(names[0], slot.meta)
        return len(dirs) + len(names)


def _write_layer(layer: Layer, slots: dict[int, _Slot], out: _Output) -> int:
    """Pass 2 over one layer, up to its last member the final tree has."""
    last = max(slots)
    count = 0
    with _open(layer) as (tar, reader):
        for member, info in _members(tar):
            slot = slots.get(member)
            if slot is not None:
                count += out.slot(layer, slot, info, reader)
            if member == last:
                return count
    raise _error(layer, "changed since it was merged: it has fewer members")


# ------------------------------------------------------------------ the API


class Merged:
    """An image's final tree, from its layers' headers; `write` streams it as a template's tar.

    `entries`: the final tree's entries (pveoci's extras not counted); `size`: its bytes of regular-file data,
    each hard-linked file once (what `write` tells `progress` in all).
    """

    def __init__(self, layers: Sequence[Layer], tree: _Tree) -> None:
        self._layers = tuple(layers)
        self._tree = tree
        self._slots, self.entries, self.size = _plan(tree.root)

    def write(self, sink: Framer, extras: Sequence[ExtraFile] = (), progress: Progress | None = None) -> int:
        """Pass 2: stream the final tree into sink, then pveoci's extras (one at a tree entry's path replaces it
        and what is below it), the end of the archive, and finish the sink. The entries written, extras included;
        `progress` is told the bytes of file data as they are copied."""
        batched = _Batched(progress)
        out = _Output(sink, _replaced(extras), batched)
        count = 0
        for index, slots in sorted(self._slots.items()):
            count += _write_layer(self._layers[index], slots, out)
        batched.flush()
        count += write_extras(sink, extras)
        sink.write(b"\0" * (2 * BLOCK))   # end of archive
        sink.finish()
        return count

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """The content of a regular file of the final tree ("/etc/passwd"), symlinks followed inside the tree;
        None if it is absent or not a regular file. One larger than limit is an ImageError."""
        found = self._tree.walk(path.split("/"), follow_last=True)
        if found is None or found[1].source is None or found[1].meta is None:
            return None
        (layer_index, member), size = found[1].source, found[1].meta.size
        layer = self._layers[layer_index]
        if size > limit:
            raise _error(layer, f"/{'/'.join(found[0])} is {size} bytes, more than the {limit} pveoci reads")
        with _open(layer) as (tar, reader):
            for index, info in _members(tar):
                if index == member and info.size == size:
                    reader.seek(info.offset_data)
                    return b"".join(reader.chunks(size))
        raise _error(layer, f"changed since it was merged: /{'/'.join(found[0])} is not where it was")

    def kind(self, path: str) -> str | None:
        """"dir", "file" or "other" for the entry at path, symlinks followed inside the tree as read_file does (a
        merged-/usr /sbin is "dir"); None when absent. ("symlink" would be one that cannot be followed, but such a
        path is absent: a dangling link, a loop.)"""
        mode = self.mode(path)
        if mode is None:
            return None
        return {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}.get(stat.S_IFMT(mode), "other")

    def mode(self, path: str) -> int | None:
        """The entry's st_mode (type and permission bits), symlinks followed inside the tree; None when absent. An
        implied directory (no layer has an entry for it) is 0o755, as tar makes it."""
        found = self._tree.walk(path.split("/"), follow_last=True)
        if found is None:
            return None
        meta = found[1].meta
        if meta is None:
            return stat.S_IFDIR | 0o755
        return _MODES[meta.type] | meta.mode

    def resolve(self, path: str) -> str | None:
        """The path with every symlink resolved inside the tree (relative, "" for the root); None when absent."""
        found = self._tree.walk(path.split("/"), follow_last=True)
        return None if found is None else "/".join(found[0])


def merge(layers: Sequence[Layer]) -> Merged:
    """Pass 1: read every layer's headers (their data skipped) and compute the final tree. An ImageError names
    the layer and the path for unsafe or broken content; an unknown media type fails before anything is read."""
    for layer in layers:
        _format(layer)
    tree = _Tree()
    for index, layer in enumerate(layers):
        tree.apply(index, layer, _changes(layer))
    return Merged(layers, tree)
