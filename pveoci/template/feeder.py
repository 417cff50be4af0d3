"""The buffer between packing and a streamed upload: bytes written to the node by a thread of their own."""

from __future__ import annotations

import contextlib
from typing import Protocol


class Sink(Protocol):
    """Where a feeder's bytes go: a file on the node, or a pipe to a command there."""

    def write(self, data: bytes) -> object: ...

    def close(self) -> None: ...


class Feeder:
    """Bytes for a sink (its write and close), written by a thread of their own from a buffer of up to BUFFER
    bytes: the caller does not wait for the sink until the buffer is full (a file still being opened, a slow
    link). What the sink raised is kept in `error`."""

    BUFFER = 256 << 20

    def __init__(self, sink: Sink) -> None:
        import collections
        import threading

        self._sink = sink
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._done = False
        self._broken = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pveoci-upload-feed", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._held >= self.BUFFER and not self._broken:
                self._cond.wait()
            if self._broken:
                raise BrokenPipeError("the upload failed")
            self._chunks.append(data)
            self._held += len(data)
            self._cond.notify_all()

    def close(self, abort: bool = False) -> bool:
        """No more bytes: wait until all were written and the sink closed; False if it failed. `abort`: drop
        what is still buffered."""
        with self._cond:
            self._done = True
            if abort:
                self._broken = True
                self._chunks.clear()
            self._cond.notify_all()
        self._thread.join()
        if self._broken:
            with contextlib.suppress(Exception):
                self._sink.close()   # a failed or dropped upload: its channel goes too
        return not self._broken

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._done:
                        self._cond.wait()
                    if not self._chunks:
                        break
                    data = self._chunks.popleft()
                self._sink.write(data)
                with self._cond:
                    self._held -= len(data)
                    self._cond.notify_all()
            if not self._broken:
                self._sink.close()
        except BaseException as exc:  # kept for the caller, who raises it as an SshError
            with self._cond:
                self.error = exc
                self._broken = True
                self._chunks.clear()
                self._cond.notify_all()
