"""Upload a template over SSH: to a hidden temporary name, verified on the node, then renamed into place.

Proxmox lists only names ending in .tar.<compression>, so the `.partial` file is never seen
as a template, and a killed upload leaves nothing Proxmox would use. Writes go out in
255 KiB SFTP requests, pipelined, over AES-GCM (docs/performance.md). With `ssh.sudo`
the file is streamed through `sudo -n` instead of SFTP.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector, run
from pveoci.template.pack import Packed, Progress

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("pveoci.template")

CHUNK = 255 * 1024   # OpenSSH's sftp-server takes requests up to 256 KiB, header included
STREAMS = 2          # parallel SFTP channels over one connection (docs/performance.md)


class SftpUploader:
    name = "sftp"

    def __init__(self, connector: SshConnector) -> None:
        self.connector = connector

    def upload(self, packed: Packed, dest: Destination, progress: Progress | None = None) -> int:
        if packed.path is None:
            raise ValueError("SFTP sends a packed file; this template was only streamed")
        if dest.directory is None:
            raise errors.ConfigError(
                f"storage '{dest.storage}' has no directory pveoci can reach over SSH; "
                "use the API transport (--transport api)"
            )
        final = f"{dest.directory}/{packed.name}"
        partial = f"{dest.directory}/.{packed.name}.{secrets.token_hex(4)}.partial"
        sudo = self.connector.settings.sudo
        client = self.connector.connect(dest.node)
        try:
            try:
                if sudo:
                    self._stream_with_sudo(client, packed, partial, progress)
                else:
                    sftp_put(client, packed.path, partial, progress)
                self._verify(client, packed, partial, dest.node, sudo)
                result = run(client, ["mv", "-f", "--", partial, final], sudo=sudo)
                if result.status != 0:
                    raise errors.SshError(f"cannot move {packed.name} into place on node '{dest.node}': "
                                          f"{result.stderr.decode(errors='replace').strip()}")
            except BaseException:
                with contextlib.suppress(Exception):
                    run(client, ["rm", "-f", "--", partial], sudo=sudo, timeout=30)
                raise
        finally:
            client.close()
        log.info("uploaded %s to %s on %s over SSH", packed.name, dest.directory, dest.node)
        return packed.size

    def _stream_with_sudo(self, client: paramiko.SSHClient, packed: Packed, remote: str,
                          progress: Progress | None) -> None:
        assert packed.path is not None
        from pveoci.ssh import command_line

        line = command_line(["sh", "-c", 'umask 022 && cat > "$1"', "sh", remote], sudo=True)
        stdin, stdout, stderr = client.exec_command(line)
        with packed.path.open("rb") as src:
            while chunk := src.read(CHUNK * 8):
                stdin.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        stdin.channel.shutdown_write()
        status = stdout.channel.recv_exit_status()
        if status != 0:
            raise errors.SshError(f"upload of {packed.name} with sudo failed: "
                                  f"{stderr.read().decode(errors='replace').strip()}")

    def _verify(self, client: paramiko.SSHClient, packed: Packed, remote: str, node: str, sudo: bool) -> None:
        result = run(client, ["sha256sum", "--", remote], sudo=sudo)
        words = result.stdout.split()
        if result.status != 0 or not words:
            raise errors.SshError(f"cannot verify {packed.name} on node '{node}': "
                                  f"{result.stderr.decode(errors='replace').strip()}")
        if words[0].decode() != packed.file_sha256:
            raise errors.SshError(f"upload of {packed.name} to node '{node}' arrived damaged "
                                  "(sha256 differs); nothing was kept")


def sftp_put(client: paramiko.SSHClient, local: Path, remote: str, progress: Progress | None = None,
             streams: int = STREAMS) -> None:
    """Copy a local file to remote over SFTP: large pipelined requests on several channels at once.

    One channel spends much of its time waiting for the server to reopen its 2 MiB window;
    a few channels over the same connection keep the link busy (docs/performance.md).
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
            sftp = client.open_sftp()
            try:
                with local.open("rb") as src, sftp.open(remote, "r+b") as dst:
                    dst.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
                    dst.set_pipelined(True)
                    src.seek(start)
                    dst.seek(start)
                    left = end - start
                    while left > 0:
                        chunk = src.read(min(CHUNK * 8, left))
                        if not chunk:
                            raise OSError(f"{local} shrank while it was being sent")
                        dst.write(chunk)
                        left -= len(chunk)
                        report(len(chunk))
            finally:
                sftp.close()
        except BaseException as exc:
            failures.append(exc)

    try:
        sftp = client.open_sftp()
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
    except (OSError, paramiko.SSHException) as exc:
        raise errors.SshError(f"upload of {local.name} to {remote} failed: {exc}") from None
