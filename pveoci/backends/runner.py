"""Where a program runs: on a node of the cluster, by name; over SSH, or right here when pveoci runs on a node.

A Runner runs argv, never a shell string. Two ways: `run` collects what the program prints, `stream`
connects it to the caller's streams (`pveoci exec`). `ENTRY` names the node the cluster is entered
by (the profile's host over SSH; this machine for the local runner) before node names are known.
Implementations: backends.sshrunner.SshRunner (paramiko) and LocalRunner here; another transport
(OpenSSH's client, say) is one more class with these three methods.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO, Protocol

from pveoci import errors
from pveoci.models import Completed

#: The node through which the cluster is entered: the profile's host over SSH, this machine locally.
ENTRY = ""
CHUNK = 65536


class Runner(Protocol):
    def run(self, node: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600.0) -> Completed:
        """Run argv on the node (root's powers: sudo where the settings say so) and collect its output."""

    def stream(self, node: str, argv: Sequence[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        """Run argv on the node with these streams (None: nothing in, output dropped); its exit status."""

    def command(self, node: str, argv: Sequence[str], *, tty: bool = False) -> list[str]:
        """The command for this machine that runs argv on the node with the streams it is given: for a process
        that outlives pveoci's (the stand-in). `tty`: the node's side gets a terminal."""

    def close(self) -> None: ...


def tools_here() -> bool:
    """True where pct and pvesh are on this machine's PATH: pveoci runs on a Proxmox VE node."""
    return all(shutil.which(tool) for tool in ("pct", "pvesh"))


class LocalRunner:
    """Programs for this node run here as subprocesses (through `sudo -n` unless pveoci is root); those for
    other nodes go to `remote` (SSH: a PVE node's root reaches every other node)."""

    def __init__(self, here: Callable[[], str], remote: Runner, *, sudo: bool | None = None) -> None:
        self._here = here          # this node's name, asked when first needed
        self.remote = remote
        self.sudo = os.geteuid() != 0 if sudo is None else sudo

    def local(self, node: str) -> bool:
        return node == ENTRY or node == self._here()

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["sudo", "-n", "--", *argv] if self.sudo else list(argv)

    def run(self, node: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 600.0) -> Completed:
        if not self.local(node):
            return self.remote.run(node, argv, stdin=stdin, timeout=timeout)
        try:
            done = subprocess.run(self._argv(argv), input=stdin or b"", capture_output=True, timeout=timeout,
                                  check=False)
        except FileNotFoundError:
            return Completed(127, b"", f"{argv[0]}: command not found\n".encode())
        except subprocess.TimeoutExpired:
            raise errors.OperationTimeout(f"{argv[0]} on this node did not finish in {timeout:g} s") from None
        return Completed(done.returncode, done.stdout, done.stderr)

    def stream(self, node: str, argv: Sequence[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        """Streams with a file descriptor (a terminal, for `exec -t`) are given to the program as they are; others
        are copied through pipes."""
        if not self.local(node):
            return self.remote.stream(node, argv, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
        ends = [_end(stdin, subprocess.DEVNULL), _end(stdout, subprocess.DEVNULL), _end(stderr, subprocess.DEVNULL)]
        try:
            proc = subprocess.Popen(self._argv(argv), stdin=ends[0], stdout=ends[1], stderr=ends[2])
        except FileNotFoundError:
            _write(stderr, f"{argv[0]}: command not found\n".encode())
            return 127
        if proc.stdin is not None and stdin is not None:
            _copy(stdin, proc.stdin, close=True)  # not waited for: the program may end before its input does
        outputs = [_copy(source, sink) for source, sink in ((proc.stdout, stdout), (proc.stderr, stderr))
                   if source is not None and sink is not None]
        code = proc.wait()
        for thread in outputs:
            thread.join()
        return code

    def command(self, node: str, argv: Sequence[str], *, tty: bool = False) -> list[str]:
        return self._argv(argv) if self.local(node) else self.remote.command(node, argv, tty=tty)

    def close(self) -> None:
        self.remote.close()


def _fileno(stream: IO[bytes] | None) -> int | None:
    try:
        return stream.fileno() if stream is not None else None
    except (AttributeError, OSError, ValueError):
        return None


def _end(stream: IO[bytes] | None, none: int) -> int:
    """What Popen gets for a stream: its own descriptor, a pipe to copy through, or nothing."""
    if stream is None:
        return none
    fd = _fileno(stream)
    return fd if fd is not None else subprocess.PIPE


def _write(stream: IO[bytes] | None, data: bytes) -> None:
    if stream is not None:
        stream.write(data)
        stream.flush()


def _copy(source: IO[bytes], sink: IO[bytes], *, close: bool = False) -> threading.Thread:
    def pump() -> None:
        read = getattr(source, "read1", source.read)
        with contextlib.suppress(OSError, ValueError):
            while chunk := read(CHUNK):
                sink.write(chunk)
                sink.flush()
        if close:
            with contextlib.suppress(OSError):
                sink.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread
