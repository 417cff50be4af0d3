"""The SSH runner: programs on a node by its name, over the connector's sessions (pveoci.ssh: paramiko or
OpenSSH's client, host keys checked either way).

Every command line is built by `ssh.command_line` from argv, each word quoted, so user data never
reaches the node's shell unquoted; with `ssh.sudo` it runs through `sudo -n`. One connection per node
serves every command (the connector keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from pveoci import errors
from pveoci.backends.runner import ENTRY
from pveoci.models import Completed
from pveoci.ssh import SshConnector, SshTarget
from pveoci.ssh.session import Session


class SshRunner:
    def __init__(self, connector: SshConnector, *, entry: str | None = None) -> None:
        """`entry`: the host to reach for ENTRY (the pct backend's way into the cluster)."""
        self.connector = connector
        self.entry = entry
        self.entry_node: str | None = None   # the entry's node name, once known: its commands share the entry's

    @property
    def sudo(self) -> bool:
        return self.connector.settings.sudo

    def target(self, node: str) -> SshTarget:
        if node == ENTRY:
            if not self.entry:
                raise errors.ConfigError("no host to enter the cluster by over SSH: set host (any node of the cluster)")
            return self.connector.host_target(self.entry)
        return self.connector.target(node)

    def session(self, node: str) -> Session:
        """The node's session; the entry's when it is the entry node (once its name is known) or ENTRY."""
        if node == ENTRY or (node and node == self.entry_node):
            return self.connector.session_to(self.target(ENTRY))
        return self.connector.session(node)

    def run(self, node: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600.0) -> Completed:
        try:
            result = self.session(node).run(list(argv), stdin=stdin, timeout=timeout)
        except TimeoutError:
            raise errors.OperationTimeout(f"{argv[0]} on node '{node or self.entry}' did not finish in "
                                          f"{timeout:g} s") from None
        return Completed(result.status, result.stdout, result.stderr)

    def stream(self, node: str, argv: Sequence[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        return self.session(node).stream(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

    def command(self, node: str, argv: Sequence[str], *, tty: bool = False) -> list[str]:
        """OpenSSH's client, whatever the transport: a process of its own, with the profile's keys and known_hosts."""
        from pveoci.ssh.openssh import client_argv

        entry = node == ENTRY or (node and node == self.entry_node)
        return client_argv(self.connector.settings, self.target(ENTRY if entry else node), list(argv), tty=tty)

    def close(self) -> None:
        self.connector.close_all()
