"""A delta on the node: the new frames sent as one hidden file, the template rebuilt from them and the node's
previous template with `dd` (scripts.APPLY), checked by its SHA-256, then linked into place."""

from __future__ import annotations

import io
from typing import IO, Any, cast

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.delta import Delta
from pveoci.template.node_dir import RemoteDir
from pveoci.template.pack import Packed, Progress
from pveoci.template.sftp import CHUNK


def send_delta(connector: SshConnector, dest: Destination, packed: Packed, base: str, delta: Delta,
               progress: Progress | None) -> int:
    """Send delta's new frames (read from packed's local file) and have the node rebuild packed from them and
    the template `base`; verified, then linked into place. The bytes sent."""
    if packed.path is None:
        raise ValueError("a delta is made from a packed file")
    remote = RemoteDir(connector, dest)
    data, out = remote.hidden("delta", "data"), remote.hidden("rebuilt")
    try:
        sent = _send_frames(remote, packed, delta, data, progress)
        remote.must(["sh", "-c", scripts.APPLY, "sh", f"{remote.directory}/{base}", data, out, *delta.args()],
                    f"rebuild {packed.name} from {base}")
        remote.verify(out, packed)
        remote.place(out, packed.name)
        return sent
    finally:
        remote.run(["rm", "-f", "--", data, out], timeout=30)
        remote.close()


def _send_frames(remote: RemoteDir, packed: Packed, delta: Delta, data: str, progress: Progress | None) -> int:
    """The delta's new frames, read from packed's file, as one hidden file on the node."""
    assert packed.path is not None
    pieces = _DeltaReader(packed.path, delta, progress)
    if remote.sudo:  # SFTP runs as the login user: through sudo with cat
        status = remote.session.stream(["sh", "-c", scripts.CAT, "sh", data],
                                       stdin=cast(IO[bytes], pieces), stdout=None, stderr=None)
        if status != 0:
            raise errors.SshError(f"sending the delta to node '{remote.dest.node}' failed (exit {status})")
        return pieces.sent
    sftp = remote.session.sftp()
    try:
        with sftp.open(data, "wb") as sink:
            sink.MAX_REQUEST_SIZE = CHUNK
            sink.set_pipelined(True)
            while chunk := pieces.read(CHUNK * 4):
                sink.write(chunk)
    finally:
        sftp.close()
    return pieces.sent


class _DeltaReader(io.RawIOBase):
    """The delta's new frames, read from the packed file one after another, as one stream."""

    def __init__(self, path: Any, delta: Delta, progress: Progress | None) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed at the end of the stream
        self._frames = list(delta.new_frames)
        self._left = 0
        self._progress = progress
        self.sent = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._left == 0:
            if not self._frames:
                self._fh.close()
                return b""
            frame = self._frames.pop(0)
            self._fh.seek(frame.offset)
            self._left = frame.size
        data = self._fh.read(min(self._left, size if size > 0 else self._left))
        self._left -= len(data)
        self.sent += len(data)
        if self._progress is not None:
            self._progress(len(data))
        return data
