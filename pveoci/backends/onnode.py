"""What runs on a node over SSH: programs in a container (`pct exec`), signals to a container's init, freezing.

Shared by every backend that reaches nodes over SSH. Every command line is built by
`ssh.command_line` from argv, each word quoted: user data never reaches a shell unquoted.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import IO, Any

from pveoci import errors
from pveoci.backends import terminal
from pveoci.models import Completed
from pveoci.ssh import SshConnector, command_line, run

CHUNK = 65536

# `sh -c` program (arguments: vmid, path) run on the node to read a file of a stopped container: pct pull
# needs a running one. Exit 3: no such file.
_READ_FILE = r"""
where=$(pct mount "$1" | sed -n "s/^mounted CT [0-9]* in '\(.*\)'$/\1/p") || exit 1
[ -n "$where" ] || { echo "pct mount $1 did not say where it mounted the container" >&2; exit 1; }
if [ -f "$where$2" ]; then cat -- "$where$2"; status=$?; else status=3; fi
pct unmount "$1" || status=1
exit $status
"""


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
        client = self.ssh.shared(node)
        transport = client.get_transport()
        if transport is None:
            raise errors.SshError(f"SSH to node '{node}' closed before exec")
        channel = transport.open_session()
        done = threading.Event()
        try:
            fd = terminal.terminal_fd(stdin) if tty else None
            if tty:
                columns, rows = terminal.size(fd)
                channel.get_pty(term=os.environ.get("TERM") or "xterm", width=columns, height=rows)
            channel.exec_command(line)
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

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        """`pct exec VMID -- ARGV` with its output collected."""
        return self.on_node(node, ["pct", "exec", str(vmid), "--", *argv], stdin=stdin, timeout=120)

    def on_node(self, node: str, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60) -> Completed:
        """argv on the node itself (with sudo when the profile says so)."""
        result = run(self.ssh.shared(node), argv, sudo=self.sudo, timeout=timeout, stdin=stdin)
        return Completed(result.status, result.stdout, result.stderr)

    def _must(self, node: str, argv: list[str], what: str) -> None:
        result = self.on_node(node, argv)
        if result.status != 0:
            raise errors.PveociError(f"cannot {what} on {node}: {result.stderr.decode(errors='replace').strip()}")

    def signal(self, node: str, pid: int, signame: str, *, children: bool = False) -> None:
        name = signame.removeprefix("SIG")
        if children:
            result = self.on_node(node, ["pkill", f"-{name}", "-P", str(pid)])
            if result.status not in (0, 1):  # 1: no child (it has just ended)
                raise errors.PveociError(f"cannot send {signame} to the process of the container's init "
                                         f"(pid {pid}) on {node}: {result.stderr.decode(errors='replace').strip()}")
            return
        self._must(node, ["kill", "-s", name, str(pid)], f"send {signame} to the container's init (pid {pid})")

    def read_file(self, node: str, vmid: int, path: str) -> bytes | None:
        """A file of a stopped container's root filesystem (`pct mount`, read, `pct unmount`)."""
        result = self.on_node(node, ["sh", "-c", _READ_FILE, "sh", str(vmid), path], timeout=120)
        if result.status == 3:
            return None
        if result.status != 0:
            raise errors.PveociError(f"cannot read {path} of CT {vmid} on {node}: "
                                     f"{result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def machine(self, node: str) -> str:
        result = self.on_node(node, ["uname", "-m"])
        if result.status != 0:
            raise errors.PveociError(f"cannot ask node {node} for its machine: {result.stderr.decode().strip()}")
        return result.stdout.decode().strip()

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
