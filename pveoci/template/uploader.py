"""`python -m pveoci.template.uploader`: send stdin to a file on a node over SFTP, in a process of its own.

A streamed upload runs while the template is still being packed; in the packing process the SSH
encryption would compete with packing for Python's GIL, so it runs here instead and the packer
only writes to a pipe. The first line of stdin is a JSON header (where to connect, which file; no
secret: keys are files, the agent is reached through SSH_AUTH_SOCK); the rest is the file's bytes.
One JSON line on stdout says how it went: {"sent": N} or {"error": "..."}; exit 0 or 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

CHUNK = 255 * 1024          # OpenSSH's sftp-server takes requests up to 256 KiB, header included


def header(settings: Any, node: str, address: dict[str, Any], path: str) -> bytes:
    """The first line the uploader reads: SshSettings (as JSON), the node, its address, the remote file."""
    return json.dumps({"ssh": settings.model_dump(mode="json"), "node": node, "address": address,
                       "path": path}).encode() + b"\n"


def _copy(source: BinaryIO, sink: Any) -> int:
    sent = 0
    while chunk := source.read(CHUNK * 4):
        sink.write(chunk)
        sent += len(chunk)
    return sent


class _Counting:
    """stdin as the sudo path reads it, counting."""

    def __init__(self, source: BinaryIO) -> None:
        self.source, self.sent = source, 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.sent += len(data)
        return data

    def fileno(self) -> int:
        raise OSError("not a file descriptor: read through read()")


def _upload(head: dict[str, Any], source: BinaryIO) -> int:
    from pveoci.settings import NodeSsh, SshSettings
    from pveoci.ssh import SshConnector

    settings = SshSettings.model_validate(head["ssh"])
    node, where = str(head["node"]), head["address"]
    settings.nodes[node] = NodeSsh(address=where["host"], port=where["port"], user=where["user"])
    connector = SshConnector(settings, {})
    session = connector.session(node)
    try:
        if settings.sudo:  # SFTP runs as the login user: go through sudo with cat instead
            counted = _Counting(source)
            status = session.stream(["sh", "-c", 'umask 022 && cat > "$1"', "sh", head["path"]],
                                    stdin=counted, stdout=None, stderr=None)  # type: ignore[arg-type]
            if status != 0:
                raise OSError(f"cat through sudo exited {status}")
            return counted.sent
        sftp = session.sftp()
        with sftp.open(head["path"], "wb") as remote:
            remote.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
            remote.set_pipelined(True)
            sent = _copy(source, remote)
        sftp.close()
        return sent
    finally:
        connector.close_all()


def main() -> int:
    source = sys.stdin.buffer
    try:
        head = json.loads(source.readline())
        sent = _upload(head, source)
    except Exception as exc:  # reported to the parent as one line, which turns it into an SshError
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        sys.stdout.write(json.dumps({"error": message}) + "\n")
        return 1
    sys.stdout.write(json.dumps({"sent": sent}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
