"""The SSH runner (paramiko): programs on a node by its name, host keys checked by pveoci.ssh's connector.

Every command line is built by `ssh.command_line` from argv, each word quoted, so user data never
reaches the node's shell unquoted; with `ssh.sudo` it runs through `sudo -n`. With `reuse`, one
connection per node serves every command (the pct backend sends many); otherwise each command has
its own (as the API backend always did).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from pveoci import errors
from pveoci.backends import terminal
from pveoci.backends.runner import ENTRY
from pveoci.models import Completed
from pveoci.ssh import SshConnector, SshTarget, command_line, run

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("pveoci.ssh")

CHUNK = 65536


class SshRunner:
    def __init__(self, connector: SshConnector, *, entry: str | None = None, reuse: bool = False) -> None:
        """`entry`: the host to reach for ENTRY (the pct backend's way into the cluster)."""
        self.connector = connector
        self.entry = entry
        self.reuse = reuse
        self.entry_node: str | None = None   # the entry's node name, once known: its commands share the entry's
        self._open: dict[str, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    @property
    def sudo(self) -> bool:
        return self.connector.settings.sudo

    def target(self, node: str) -> SshTarget:
        if node == ENTRY:
            if not self.entry:
                raise errors.ConfigError("no host to enter the cluster by over SSH: set host (any node of the cluster)")
            return self.connector.host_target(self.entry)
        return self.connector.target(node)

    @contextlib.contextmanager
    def client(self, node: str) -> Any:
        """A connection to the node: the kept one (reconnected if it dropped), or a new one closed afterwards."""
        target = self.target(node)  # first: finding an address may run a command at the entry (and name it)
        if node and node == self.entry_node:
            node, target = ENTRY, self.target(ENTRY)
        if not self.reuse:
            client = self.connector.connect_to(target)
            try:
                yield client
            finally:
                client.close()
            return
        with self._lock:
            kept = self._open.get(node)
            transport = kept.get_transport() if kept is not None else None
            if kept is None or transport is None or not transport.is_active():
                kept = self._open[node] = self.connector.connect_to(target)
        yield kept

    def run(self, node: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600.0) -> Completed:
        with self.client(node) as client:
            try:
                result = run(client, argv, sudo=self.sudo, timeout=timeout, stdin=stdin)
            except TimeoutError:
                raise errors.OperationTimeout(f"{argv[0]} on node '{node or self.entry}' did not finish in "
                                              f"{timeout:g} s") from None
        return Completed(result.status, result.stdout, result.stderr)

    def stream(self, node: str, argv: Sequence[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        line = command_line(argv, sudo=self.sudo)
        log.debug("ssh exec: %s", line)
        with self.client(node) as client:
            transport = client.get_transport()
            if transport is None:
                raise errors.SshError(f"SSH to node '{node or self.entry}' closed before exec")
            channel = transport.open_session()
            try:
                return _attached(channel, line, stdin, stdout, stderr, tty)
            finally:
                channel.close()

    def close(self) -> None:
        with self._lock:
            for client in self._open.values():
                client.close()
            self._open.clear()


def _attached(channel: Any, line: str, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
              stderr: IO[bytes] | None, tty: bool) -> int:
    fd = terminal.terminal_fd(stdin) if tty else None
    if tty:
        columns, rows = terminal.size(fd)
        channel.get_pty(term=os.environ.get("TERM") or "xterm", width=columns, height=rows)
    channel.exec_command(line)
    done = threading.Event()
    if stdin is not None:
        threading.Thread(target=_feed, args=(channel, stdin, done), daemon=True).start()
    else:
        channel.shutdown_write()
    with terminal.raw(fd, channel.resize_pty):
        _pump(channel, stdout, stderr)
    done.set()
    return int(channel.recv_exit_status())


def _pump(channel: Any, stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> None:
    """Copy the channel's stdout and stderr to the streams (or drop them) until the program ends."""
    while True:
        # The channel's fileno() becomes readable when stdout or stderr data (or the end) arrives.
        select.select([channel], [], [], 1.0)
        while channel.recv_ready():
            _write(stdout, channel.recv(CHUNK))
        while channel.recv_stderr_ready():
            _write(stderr, channel.recv_stderr(CHUNK))
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            return


def _write(stream: IO[bytes] | None, data: bytes) -> None:
    if stream is not None and data:
        stream.write(data)
        stream.flush()


def _feed(channel: Any, stdin: IO[bytes], done: threading.Event) -> None:
    """Send stdin to the program as it comes (a terminal's keys one by one), until its end or the program's."""
    fd = _fileno(stdin)
    read = getattr(stdin, "read1", stdin.read)
    try:
        while not done.is_set():
            if fd is not None and not select.select([fd], [], [], 0.2)[0]:
                continue
            chunk = os.read(fd, CHUNK) if fd is not None else read(CHUNK)
            if not chunk:
                break
            channel.sendall(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            channel.shutdown_write()


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
