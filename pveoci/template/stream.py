"""A template streamed to a node's template directory while it is still being packed (SFTP, or `cat` through
sudo), checked by its size and linked into place."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.feeder import Feeder
from pveoci.template.node_claim import RemoteClaim
from pveoci.template.node_dir import RemoteDir
from pveoci.template.pack import Packed, Progress
from pveoci.template.sftp import CHUNK


class SftpStream:
    """TemplateUpload over SSH while the template is being packed: the frames go, as they are made, to a thread
    that writes them over the node's SSH connection (SFTP, or `cat` through sudo), from a buffer, so packing
    does not wait while the file is opened. What arrives is checked by its size (SSH authenticates every
    byte, SFTP acknowledges every write) and linked into place."""

    def __init__(self, connector: SshConnector, dest: Destination, progress: Progress | None) -> None:
        self.remote = RemoteDir(connector, dest)
        self.partial = self.remote.hidden("upload")
        self.progress = progress
        self.sent = 0
        sink = SudoCat(self.remote, self.partial) if self.remote.sudo else SftpFile(self.remote, self.partial)
        self._feeder = Feeder(sink)

    def write(self, data: bytes) -> int:
        try:
            self._feeder.put(data)
        except BrokenPipeError:
            raise self._failed() from None
        self.sent += len(data)
        if self.progress is not None:
            self.progress(len(data))
        return len(data)

    def _failed(self) -> errors.SshError:
        why = self._feeder.error
        message = (getattr(why, "message", None) or str(why) or type(why).__name__) if why is not None \
            else "the upload stopped"
        return errors.SshError(f"upload to node '{self.remote.dest.node}' failed: {message}")

    def finish(self, packed: Packed, claim: object = None) -> bool:
        try:
            if not self._feeder.close():
                raise self._failed()
            if self.sent != packed.size:
                raise errors.SshError(f"upload of {packed.name} to node '{self.remote.dest.node}' arrived "
                                      f"incomplete ({self.sent} of {packed.size} bytes sent); nothing was kept")
            # The size is checked on the node; a claim of this storage gets the name in the same command.
            held = claim if isinstance(claim, RemoteClaim) and claim.ours and claim.remote.dest == self.remote.dest \
                else None
            landed, recorded = self.remote.place_claimed(self.partial, packed.name, packed.size,
                                                         (held.path, held.holder) if held else None)
            if held is not None and recorded:
                held.recorded = packed.name
            return landed
        except BaseException:
            self.abort()
            raise
        finally:
            self.remote.close()

    def abort(self) -> None:
        self._feeder.close(abort=True)
        with contextlib.suppress(Exception):
            self.remote.run(["rm", "-f", "--", self.partial], timeout=30)
        self.remote.close()


class SftpFile:
    """A file on the node written over SFTP: opened at the first write, in the writing thread."""

    def __init__(self, remote: RemoteDir, path: str) -> None:
        self._remote, self._path = remote, path
        self._sftp: Any = None
        self._file: Any = None

    def write(self, data: bytes) -> None:
        if self._file is None:
            self._sftp = self._remote.session.sftp()
            self._file = self._sftp.open(self._path, "wb")
            self._file.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
            self._file.set_pipelined(True)
        self._file.write(data)

    def close(self) -> None:
        if self._file is None:
            self.write(b"")
        try:
            self._file.close()
        finally:
            self._sftp.close()


class SudoCat:
    """A file on the node written by `cat` through sudo (SFTP would run as the login user), fed through a pipe."""

    def __init__(self, remote: RemoteDir, path: str) -> None:
        import threading

        read_end, write_end = os.pipe()
        self._pipe = os.fdopen(write_end, "wb")
        self._status: list[int] = []
        source = os.fdopen(read_end, "rb")

        def run() -> None:
            try:
                self._status.append(remote.session.stream(["sh", "-c", scripts.CAT, "sh", path],
                                                          stdin=source, stdout=None, stderr=None))
            finally:
                source.close()

        self._thread = threading.Thread(target=run, name="pveoci-upload-cat", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._pipe.write(data)

    def close(self) -> None:
        self._pipe.close()
        self._thread.join()
        if self._status != [0]:
            raise OSError(f"cat through sudo exited {self._status[0] if self._status else 'without a status'}")
