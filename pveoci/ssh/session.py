"""What pveoci does over SSH on a node, whichever client carries it (paramiko, or OpenSSH's `ssh`)."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pveoci.ssh import CommandResult


class Session(Protocol):
    """A logged-in SSH connection to one node (shared: several commands may run on it at once)."""

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> CommandResult:
        """argv on the node (through sudo when the profile says so), to its end: status, stdout, stderr."""

    def stream(self, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        """argv on the node with these streams (None: nothing in, output dropped); `tty`: a terminal (raw mode,
        its size and resizes when stdin is one). Its exit status."""

    def sftp(self) -> Any:
        """An SFTP client (paramiko's SFTPClient interface) on this connection; the caller closes it."""

    def describe(self) -> str:
        """Who the node is, for doctor: its verified host key, or how it was verified."""

    def close(self) -> None: ...
