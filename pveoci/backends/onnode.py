"""What runs on a node over SSH: programs in a container (`pct exec`), signals to a container's init, freezing.

Shared by every backend that reaches nodes over SSH. Every command line is built by
`ssh.command_line` from argv, each word quoted: user data never reaches a shell unquoted.
"""

from __future__ import annotations

import contextlib
import select
import threading
from typing import IO, Any

from pveoci import errors
from pveoci.models import Completed
from pveoci.ssh import SshConnector, command_line, run

CHUNK = 65536


class SshNode:
    """The OnNode protocol (pveoci.backends.base) over SSH connections from one connector."""

    def __init__(self, ssh: SshConnector) -> None:
        self.ssh = ssh

    @property
    def sudo(self) -> bool:
        return self.ssh.settings.sudo

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        """`pct exec VMID -- ARGV` on the node, with these streams; the program's exit status."""
        line = command_line(["pct", "exec", str(vmid), "--", *argv], sudo=self.sudo)
        client = self.ssh.connect(node)
        try:
            transport = client.get_transport()
            if transport is None:
                raise errors.SshError(f"SSH to node '{node}' closed before exec")
            channel = transport.open_session()
            if tty:
                channel.get_pty()
            channel.exec_command(line)
            if stdin is not None:
                threading.Thread(target=_feed, args=(channel, stdin), daemon=True).start()
            else:
                channel.shutdown_write()
            _pump(channel, stdout, stderr)
            return int(channel.recv_exit_status())
        finally:
            client.close()

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        """`pct exec VMID -- ARGV` with its output collected."""
        return self.on_node(node, ["pct", "exec", str(vmid), "--", *argv], stdin=stdin, timeout=120)

    def on_node(self, node: str, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60) -> Completed:
        """argv on the node itself (with sudo when the profile says so)."""
        client = self.ssh.connect(node)
        try:
            result = run(client, argv, sudo=self.sudo, timeout=timeout, stdin=stdin)
        finally:
            client.close()
        return Completed(result.status, result.stdout, result.stderr)

    def _must(self, node: str, argv: list[str], what: str) -> None:
        result = self.on_node(node, argv)
        if result.status != 0:
            raise errors.PveociError(f"cannot {what} on {node}: {result.stderr.decode(errors='replace').strip()}")

    def signal(self, node: str, pid: int, signame: str) -> None:
        self._must(node, ["kill", "-s", signame.removeprefix("SIG"), str(pid)],
                   f"send {signame} to the container's init (pid {pid})")

    # PVE's suspend is a CRIU checkpoint to disk, not runc's pause: freeze the cgroup instead, as LXC does.
    def freeze(self, node: str, vmid: int) -> None:
        self._must(node, ["lxc-freeze", "-n", str(vmid)], f"freeze CT {vmid}")

    def thaw(self, node: str, vmid: int) -> None:
        self._must(node, ["lxc-unfreeze", "-n", str(vmid)], f"thaw CT {vmid}")


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


def _feed(channel: Any, stdin: IO[bytes]) -> None:
    read = getattr(stdin, "read1", stdin.read)
    try:
        while chunk := read(CHUNK):
            channel.sendall(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            channel.shutdown_write()
