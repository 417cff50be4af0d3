"""The compressed template as a sequence of independent zstd frames, cut where the content says.

A template file is a concatenation of zstd frames (one valid zstd stream, as Proxmox reads it).
Frames are cut at tar entry boundaries chosen by the entries' names (a CRC of the name), between
FRAME_MIN and FRAME_MAX bytes of tar; a file of FRAME_MAX bytes or more starts a frame of its own
and is cut every FRAME_MAX bytes from its header. So a change to one file changes only the frames
around it: the others stay byte-identical, which is what a delta sends (template/delta.py).

Frames are compressed in a pool of threads (zstd releases the GIL), each alone and single-threaded,
so the bytes do not depend on how many threads there were; they come out in order to the writers.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

FRAME_MIN = 512 << 10
FRAME_MAX = 2 << 20
CUT_EVERY = 16            # of the entry boundaries past FRAME_MIN, about one in CUT_EVERY ends a frame
LEVEL = 3
FORMAT = b"pveoci-template-2"   # changes the names when what a template holds changes meaning

Writer = Callable[[bytes], object]


@dataclass(frozen=True)
class Frame:
    """One zstd frame of a template file."""

    offset: int           # where it starts in the compressed file
    size: int             # its compressed bytes
    sha256: str           # of its compressed bytes: equal frames are equal bytes
    tar_size: int         # the tar bytes it holds

    def to_json(self) -> list[Any]:
        return [self.offset, self.size, self.sha256, self.tar_size]

    @classmethod
    def from_json(cls, data: list[Any]) -> Frame:
        return cls(int(data[0]), int(data[1]), str(data[2]), int(data[3]))


_local = threading.local()


def _compress(chunk: bytes | bytearray, level: int) -> tuple[bytes, str]:
    import zstandard

    compressor = getattr(_local, "compressor", None)
    if compressor is None or getattr(_local, "level", None) != level:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                                                   write_content_size=True)
        _local.level = level
    data = compressor.compress(chunk)
    return data, hashlib.sha256(data).hexdigest()


class Framer:
    """Takes the tar stream entry by entry, cuts it into frames, and hands the compressed frames, in order,
    to the writers (the local file, an upload); keeps the frames' list and, with `file_sha`, the whole file's
    SHA-256 (what a node checks a copied file against; a streamed upload is checked by its size)."""

    def __init__(self, writers: list[Writer], *, level: int = LEVEL, workers: int | None = None,
                 file_sha: bool = True) -> None:
        self._writers = writers
        self._level = level
        self._workers = workers or max(2, os.cpu_count() or 2)
        self._pool: ThreadPoolExecutor | None = None     # started by the first frame compressed here
        self._writer: threading.Thread | None = None
        self._buf = bytearray()
        self._big = False
        self._out: queue.Queue[Future[tuple[bytes, str]] | None] = queue.Queue(maxsize=4 * self._workers)
        self._failure: list[BaseException] = []
        self.frames: list[Frame] = []
        self.file_sha = hashlib.sha256() if file_sha else None
        self.size = 0
        self.tar_size = 0

    @property
    def level(self) -> int:
        return self._level

    @property
    def workers(self) -> int:
        return self._workers

    # ------------------------------------------------------------- the stream

    def begin(self, data_size: int) -> None:
        """An entry begins whose data has this size: a big one starts a frame of its own."""
        self._big = data_size >= FRAME_MAX
        if self._big and self._buf:
            self._cut()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        if self._big and len(self._buf) >= FRAME_MAX:
            self._cut()

    def write_file(self, header: bytes, data: bytes, pad: int) -> None:
        """A small file's entry at once: its header, data and padding appended without joining them first."""
        buf = self._buf
        buf += header
        buf += data
        if pad:
            buf += bytes(pad)

    def end(self, name_crc: int) -> None:
        """The entry ended: a frame ends here if it is big enough and the name says so (or it was big)."""
        size = len(self._buf)
        if size and (self._big or size >= FRAME_MAX or (size >= FRAME_MIN and name_crc % CUT_EVERY == 0)):
            self._cut()
        self._big = False

    def add(self, frame: bytes, tar_size: int) -> None:
        """A frame compressed elsewhere (template/native.py), the next in the stream: hashed and written now."""
        if self._failure:
            raise self._failure[0]
        self._deliver(frame, hashlib.sha256(frame).hexdigest(), tar_size)
        if self._failure:
            raise self._failure[0]

    def finish(self) -> None:
        """Compress what is left, wait for every frame to be written; raises what a writer raised."""
        if self._buf:
            self._cut()
        self._stop()
        if self._failure:
            raise self._failure[0]

    def abort(self) -> None:
        self._stop(timeout=30, cancel=True)

    def _stop(self, timeout: float | None = None, cancel: bool = False) -> None:
        if self._writer is not None:
            self._out.put(None)
            self._writer.join(timeout=timeout)
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=cancel)

    # ------------------------------------------------------------------ frames

    def _cut(self) -> None:
        chunk = self._buf    # handed over as it is (zstd reads a bytearray): not copied
        self._buf = bytearray()
        if self._failure:
            raise self._failure[0]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="pveoci-zstd")
            self._writer = threading.Thread(target=self._write_in_order, name="pveoci-frames", daemon=True)
            self._writer.start()
        self._out.put(self._pool.submit(_compress, chunk, self._level))

    def _write_in_order(self) -> None:
        # The queue holds the frames in stream order; the pool compresses the ones behind the first meanwhile.
        while (item := self._out.get()) is not None:
            self._emit(item)

    def _emit(self, future: Future[tuple[bytes, str]]) -> None:
        if self._failure:
            return
        try:
            data, sha = future.result()
        except BaseException as exc:
            self._failure.append(exc)
            return
        self._deliver(data, sha, _content_size(data))

    def _deliver(self, data: bytes, sha: str, tar_size: int) -> None:
        try:
            for write in self._writers:
                write(data)
        except BaseException as exc:
            self._failure.append(exc)
            return
        if self.file_sha is not None:
            self.file_sha.update(data)
        self.frames.append(Frame(self.size, len(data), sha, tar_size))
        self.size += len(data)
        self.tar_size += tar_size


def _content_size(frame: bytes) -> int:
    import zstandard

    size = zstandard.frame_content_size(frame)
    if size < 0:  # written with content size: never unknown here
        raise ValueError("a zstd frame without its content size")
    return int(size)


def digest_of(frames: list[Frame]) -> str:
    """The template's identity: SHA-256 over its frames' SHA-256s, in order.

    The frames are the deterministic tar stream compressed frame by frame at a fixed level, so equal
    rootfs give equal names on every workstation with the same zstd (pveoci pins its range); hashing
    the compressed frames, not the larger tar, keeps the hashing off the packing's critical path.
    """
    outer = hashlib.sha256(FORMAT)
    for frame in frames:
        outer.update(bytes.fromhex(frame.sha256))
    return outer.hexdigest()
