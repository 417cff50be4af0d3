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
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.ssh import SshConnector, run
from pveoci.template.pack import Packed
from pveoci.template.store import Destination, Progress

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("pveoci.template")

CHUNK = 255 * 1024   # OpenSSH's sftp-server takes requests up to 256 KiB, header included


class SftpUploader:
    name = "sftp"

    def __init__(self, connector: SshConnector) -> None:
        self.connector = connector

    def upload(self, packed: Packed, dest: Destination, progress: Progress | None) -> int:
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
                    self._sftp_put(client, packed, partial, progress)
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

    def _sftp_put(self, client: paramiko.SSHClient, packed: Packed, remote: str, progress: Progress | None) -> None:
        import paramiko

        sftp = client.open_sftp()
        try:
            with packed.path.open("rb") as src, sftp.open(remote, "wb") as dst:
                dst.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
                dst.set_pipelined(True)
                while chunk := src.read(CHUNK * 8):
                    dst.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except (OSError, paramiko.SSHException) as exc:
            raise errors.SshError(f"upload of {packed.name} to {remote} failed: {exc}") from None
        finally:
            sftp.close()

    def _stream_with_sudo(self, client: paramiko.SSHClient, packed: Packed, remote: str,
                          progress: Progress | None) -> None:
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
