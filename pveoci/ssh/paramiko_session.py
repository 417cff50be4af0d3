"""The Session protocol over paramiko: one SSHClient per node, many channels on it."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from pveoci import errors
from pveoci.ssh import CommandResult, command_line, run, terminal

if TYPE_CHECKING:
    import paramiko

CHUNK = 65536
DRAIN_QUIET = 1.0   # seconds of silence after the exit status that end the output when no EOF comes


class ParamikoSession:
    def __init__(self, client: paramiko.SSHClient, node: str, sudo: bool) -> None:
        self.client, self.node, self.sudo = client, node, sudo

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> CommandResult:
        return run(self.client, argv, sudo=self.sudo, timeout=timeout, stdin=stdin)

    def stream(self, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        transport = self.client.get_transport()
        if transport is None:
            raise errors.SshError(f"SSH to node '{self.node}' closed before the command could run")
        channel = transport.open_session()
        done = threading.Event()
        try:
            fd = terminal.terminal_fd(stdin) if tty else None
            if tty:
                columns, rows = terminal.size(fd)
                channel.get_pty(term=os.environ.get("TERM") or "xterm", width=columns, height=rows)
            channel.exec_command(command_line(argv, sudo=self.sudo))
            if stdin is not None:
                threading.Thread(target=_feed, args=(channel, stdin, done), daemon=True).start()
            else:
                channel.shutdown_write()
            with terminal.raw(fd, channel.resize_pty):
                _pump(channel, stdout, stderr)
            return int(channel.recv_exit_status())
        finally:
            done.set()
            channel.close()  # the connection is shared: its sessions are not (sshd allows 10 at once)

    def sftp(self) -> Any:
        return self.client.open_sftp()

    def describe(self) -> str:
        transport = self.client.get_transport()
        key = transport.get_remote_server_key() if transport else None
        return f"host key verified ({key.get_name()} {key.fingerprint})" if key is not None else "host key verified"

    def close(self) -> None:
        return None  # shared: the connector closes it


def _pump(channel: Any, stdout: IO[bytes] | None, stderr: IO[bytes] | None,
          clock: Callable[[], float] = time.monotonic) -> None:
    """Copy the channel's stdout and stderr to the streams (or drop them) until the program's output ends.

    sshd may send the exit status before the last of the output: once the status is in, the output is read on
    to its end (EOF), or, where a process the program left behind holds the output open (no EOF comes), until
    it has been quiet for DRAIN_QUIET seconds."""
    quiet_since: float | None = None
    while True:
        # The channel's fileno() becomes readable when stdout or stderr data (or the end) arrives.
        select.select([channel], [], [], 0.1 if quiet_since is not None else 1.0)
        got = False
        while channel.recv_ready():
            _write(stdout, channel.recv(CHUNK))
            got = True
        while channel.recv_stderr_ready():
            _write(stderr, channel.recv_stderr(CHUNK))
            got = True
        if not channel.exit_status_ready():
            continue
        if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
            return
        now = clock()
        if got or quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= DRAIN_QUIET:
            return


def _write(stream: IO[bytes] | None, data: bytes) -> None:
    if stream is not None and data:
        stream.write(data)
        stream.flush()


def _feed(channel: Any, stdin: IO[bytes], done: threading.Event) -> None:
    """Send stdin to the program as it comes (a terminal's keys one by one), until its end or the program's."""
    for chunk in feed_chunks(stdin, done):
        channel.sendall(chunk)
    with contextlib.suppress(OSError):
        channel.shutdown_write()


def feed_chunks(stdin: IO[bytes], done: threading.Event) -> Any:
    """stdin's bytes as they come, until its end or `done`; a file descriptor is polled so `done` is seen."""
    try:
        fd: int | None = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    read = getattr(stdin, "read1", stdin.read)
    try:
        while not done.is_set():
            if fd is not None and not select.select([fd], [], [], 0.2)[0]:
                continue
            chunk = os.read(fd, CHUNK) if fd is not None else read(CHUNK)
            if not chunk:
                return
            yield chunk
    except (OSError, ValueError):
        return
