"""Upload a template through the Proxmox API (POST .../storage/{s}/upload), streamed, with its checksum.

Proxmox stages the file in /var/tmp of the node it receives it on and checks the sha256
before it moves it into the storage, so an interrupted upload is never visible. The form
fields go before the file part, as Proxmox requires.
"""

from __future__ import annotations

import io
from typing import Any

from pveoci.models import Destination
from pveoci.pve.client import PveClient
from pveoci.template.pack import Packed, Progress


class _CountingReader(io.RawIOBase):
    """The template file as the multipart encoder reads it, reporting progress as it goes. `name` is the file
    part's name, which Proxmox stores the template under (the local file may be called otherwise: a spool)."""

    def __init__(self, path: Any, progress: Progress | None, name: str) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._progress = progress
        self.name = name
        self.sent = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:
        # requests-toolbelt sizes a streamed part with fstat(fileno()).
        return self._fh.fileno()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.sent += len(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def upload(client: PveClient, packed: Packed, dest: Destination, progress: Progress | None = None) -> int:
    """Stream the template to dest through the API and wait for Proxmox to store it; the bytes sent."""
    reader = _CountingReader(packed.path, progress, packed.name)
    try:
        upid = client.post("nodes", dest.node, "storage", dest.storage, "upload", content="vztmpl",
                           checksum=packed.file_sha256, **{"checksum-algorithm": "sha256"}, filename=reader)
    finally:
        reader.close()
    client.wait(upid)
    return reader.sent


class SpooledUpload:
    """TemplateUpload through the API: the bytes go to a local file as they come, then up in one request
    (Proxmox's upload takes a whole file; it checks the checksum and moves it into place itself)."""

    def __init__(self, client: PveClient, dest: Destination, progress: Progress | None) -> None:
        import tempfile

        self.client, self.dest, self.progress = client, dest, progress
        self.sent = 0
        self._file = tempfile.NamedTemporaryFile(prefix="pveoci-upload-", suffix=".tar.zst")  # noqa: SIM115

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def finish(self, packed: Packed, claim: object = None) -> bool:
        from dataclasses import replace
        from pathlib import Path

        try:
            self._file.flush()
            listed = self.client.get("nodes", self.dest.node, "storage", self.dest.storage, "content",
                                     content="vztmpl")
            if any(str(item.get("volid")) == self.dest.volid(packed.name) for item in listed):
                return False
            if not packed.file_sha256:
                raise ValueError("an upload through the API needs the file's SHA-256: pack with file_sha=True")
            self.sent = upload(self.client, replace(packed, path=Path(self._file.name)), self.dest, self.progress)
            return True
        finally:
            self._file.close()

    def abort(self) -> None:
        self._file.close()
