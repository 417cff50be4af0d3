"""Upload a packed template file over SSH: to a hidden name, checked by SHA-256 on the node, then linked into place.

Proxmox lists only names ending in .tar.<compression>, so the hidden file is never seen as a
template, and a killed upload leaves nothing Proxmox would use. Writes go out in 255 KiB SFTP
requests, pipelined, on two SFTP sessions at once (docs/performance.md). With `ssh.sudo` the file
is streamed through `sudo -n` instead of SFTP.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import IO, Any, cast

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.ssh.session import Session
from pveoci.template import scripts
from pveoci.template.node_dir import RemoteDir
from pveoci.template.pack import Packed, Progress

log = logging.getLogger("pveoci.template")

CHUNK = 255 * 1024   # OpenSSH's sftp-server takes requests up to 256 KiB, header included
STREAMS = 2          # parallel SFTP sessions (docs/performance.md)


def upload(connector: SshConnector, packed: Packed, dest: Destination, progress: Progress | None = None) -> int:
    """Put a packed template file on dest, verified and linked into place; the bytes sent."""
    if packed.path is None:
        raise ValueError("this template was only streamed: there is no file to send")
    remote = RemoteDir(connector, dest)
    partial = remote.hidden("upload")
    try:
        if remote.sudo:
            with packed.path.open("rb") as src:
                status = remote.session.stream(["sh", "-c", scripts.CAT, "sh", partial],
                                               stdin=cast(IO[bytes], _Reporting(src, progress)), stdout=None,
                                               stderr=None)
            if status != 0:
                raise errors.SshError(f"upload of {packed.name} with sudo failed (exit {status})")
        else:
            sftp_put(remote.session, packed.path, partial, progress)
        remote.verify(partial, packed)
        remote.place(partial, packed.name)
    except BaseException:
        remote.run(["rm", "-f", "--", partial], timeout=30)
        raise
    log.info("uploaded %s to %s on %s over SSH", packed.name, dest.directory, dest.node)
    return packed.size


class _Reporting:
    def __init__(self, source: IO[bytes], progress: Progress | None) -> None:
        self.source, self.progress = source, progress

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if self.progress is not None and data:
            self.progress(len(data))
        return data

    def fileno(self) -> int:
        raise OSError("read through read()")


def sftp_put(session: Session, local: Path, remote: str, progress: Progress | None = None,
             streams: int = STREAMS) -> None:
    """Copy a local file to remote over SFTP: large pipelined requests on several sessions at once.

    One session spends much of its time waiting for the server to reopen its 2 MiB window;
    a few over the same connection keep the link busy (docs/performance.md).
    """
    import paramiko

    size = local.stat().st_size
    streams = max(1, min(streams, size // (CHUNK * 8) or 1))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def report(n: int) -> None:
        if progress is not None:
            with lock:
                progress(n)

    def send(start: int, end: int) -> None:
        try:
            sftp = session.sftp()
            try:
                with local.open("rb") as src, sftp.open(remote, "r+b") as dst:
                    _copy_range(src, dst, start, end, report)
            finally:
                sftp.close()
        except BaseException as exc:
            failures.append(exc)

    try:
        sftp = session.sftp()
        try:
            sftp.open(remote, "wb").close()
        finally:
            sftp.close()
        bounds = [size * i // streams for i in range(streams + 1)]
        workers = [threading.Thread(target=send, args=(bounds[i], bounds[i + 1]), daemon=True)
                   for i in range(streams)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if failures:
            raise failures[0]
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise errors.SshError(f"upload of {local.name} to {remote} failed: {exc}") from None


def _copy_range(src: IO[bytes], dst: Any, start: int, end: int, report: Progress) -> None:
    dst.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
    dst.set_pipelined(True)
    src.seek(start)
    dst.seek(start)
    left = end - start
    while left > 0:
        chunk = src.read(min(CHUNK * 8, left))
        if not chunk:
            raise OSError(f"{src.name} shrank while it was being sent")
        dst.write(chunk)
        left -= len(chunk)
        report(len(chunk))
