"""The Session protocol over OpenSSH's `ssh` client: ~/.ssh/config honoured (ProxyJump, certificates, per-host
keys), one multiplexed master connection per node (ControlMaster), host keys strictly checked.

Every command is `ssh [options] HOST -- <one shell line>`, the line built by ssh.command_line from
argv (each word quoted). SFTP is OpenSSH's sftp subsystem (`ssh -s HOST sftp`) spoken by paramiko's
SFTP client over the pipes, so uploads are encrypted by OpenSSH in its own process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import stat
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

from pveoci import errors
from pveoci.settings import SshSettings
from pveoci.ssh import CommandResult, SshTarget, command_line, terminal

CHUNK = 65536
CONTROL_PERSIST = 60    # seconds a master connection stays up after its last command


def control_dir() -> Path:
    """Where the master connections' sockets live: private to this user (XDG_RUNTIME_DIR, else its cache)."""
    from platformdirs import user_cache_path

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "pveoci" if runtime else user_cache_path("pveoci")
    folder = base / "ssh"
    if len(str(folder)) > 80:  # a socket's path must fit in 108 bytes
        import tempfile

        folder = Path(tempfile.gettempdir()) / f"pveoci-{os.getuid()}-ssh"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
        raise errors.ConfigError(f"{folder} belongs to another user: it cannot hold this user's SSH sockets")
    folder.chmod(0o700)
    return folder


def _client() -> str:
    binary = shutil.which("ssh")
    if binary is None:
        raise errors.ConfigError("ssh.transport = openssh needs the OpenSSH client (`ssh`) on PATH")
    return binary


def _options(s: SshSettings, target: SshTarget) -> list[str]:
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={s.known_hosts.expanduser()}",
            "-o", f"ConnectTimeout={max(1, int(s.connect_timeout))}", "-o", "ServerAliveInterval=30",
            "-p", str(target.port), "-l", target.user]
    if s.config_file is not None:
        opts[:0] = ["-F", str(s.config_file.expanduser())]
    if not s.agent:
        opts += ["-o", "IdentityAgent=none"]
    for key in s.key_files:
        opts += ["-i", str(key.expanduser())]
    if s.key_files:
        opts += ["-o", "IdentitiesOnly=yes"]
    return opts


def _control_path(target: SshTarget, options: list[str]) -> str:
    """A master is reused only by a command with the very same target and options (known_hosts, keys, config
    file): one checked under other settings never serves this one."""
    tag = hashlib.sha256("\0".join([str(target), *options]).encode()).hexdigest()[:20]
    return f"ControlPath={control_dir() / tag}"


def client_argv(settings: SshSettings, target: SshTarget, argv: list[str], *, tty: bool = False) -> list[str]:
    """The `ssh` command that runs argv on the target, for a process of its own that outlives pveoci's (the
    stand-in): the profile's keys and known_hosts, a master connection used when one is up, never made
    (a master would be left behind as a child of whoever waits for the stand-in)."""
    options = _options(settings, target)
    # LogLevel=ERROR: ssh's own errors still go to stderr, its notes ("Connection to ... closed.") do not: they
    # would be taken for the process's output.
    return [_client(), *options, "-o", "ControlMaster=no", "-o", _control_path(target, options),
            "-o", "LogLevel=ERROR", target.host, "-tt" if tty else "-T", "--", command_line(argv, sudo=settings.sudo)]


class OpenSshSession:
    def __init__(self, settings: SshSettings, target: SshTarget) -> None:
        binary = _client()
        self.settings, self.target, self.node = settings, target, target.node
        options = _options(settings, target)
        control = ["-o", "ControlMaster=auto", "-o", _control_path(target, options),
                   "-o", f"ControlPersist={CONTROL_PERSIST}"]
        self._base = [binary, *options, *control, target.host]

    def _line(self, argv: list[str]) -> str:
        return command_line(argv, sudo=self.settings.sudo)

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> CommandResult:
        try:
            done = subprocess.run([*self._base, "--", self._line(argv)], input=stdin or b"", capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise errors.OperationTimeout(f"a command on node '{self.node}' ran longer than {timeout:g} s") from None
        self._check(done.returncode, done.stderr)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def _check(self, status: int, stderr: bytes) -> None:
        """ssh's own failures as pveoci's errors. ssh exits 255 for them, but so may the command (pct does):
        only what ssh itself says counts; a command's own status is left to the caller."""
        if status != 255:
            return
        text = stderr.decode(errors="replace")
        where = f"node '{self.node}' ({self.target})"
        if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            raise errors.HostKeyError(f"host key of {where} is unknown or changed; check it and add it to "
                                      f"{self.settings.known_hosts}")
        if "Permission denied (" in text:
            raise errors.SshError(f"SSH login to {where} as {self.target.user} failed: {_last(text)}")
        if any(line.startswith(("ssh:", "kex_exchange_identification:", "Connection closed by"))
               for line in text.splitlines()):
            raise errors.SshError(f"cannot reach {where} over SSH: {_last(text)}")

    def stream(self, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
               stderr: IO[bytes] | None, tty: bool = False) -> int:
        fd = terminal.terminal_fd(stdin) if tty else None
        if fd is not None:  # ssh gets the terminal itself: raw mode, size and resizes are its business
            return subprocess.run([*self._base, "-tt", "--", self._line(argv)], check=False).returncode
        proc = subprocess.Popen([*self._base, *(["-tt"] if tty else ["-T"]), "--", self._line(argv)],
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done = threading.Event()
        if stdin is not None:
            threading.Thread(target=_feed, args=(proc, stdin, done), daemon=True).start()
        err = bytearray()
        copier = threading.Thread(target=_copy, args=(proc.stderr, stderr, err), daemon=True)
        copier.start()
        _copy(proc.stdout, stdout, None)
        copier.join()
        status = proc.wait()
        done.set()
        self._check(status, bytes(err))
        return status

    def sftp(self) -> Any:
        import paramiko

        proc = subprocess.Popen([*self._base, "-s", "--", "sftp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            return paramiko.SFTPClient(PipeSocket(proc))  # type: ignore[arg-type]  # a socket does for a channel
        except (EOFError, paramiko.SSHException, OSError):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            self._check(255, err)
            raise errors.SshError(f"SFTP to node '{self.node}' failed: {_last(err.decode(errors='replace'))}") \
                from None

    def describe(self) -> str:
        return "host key verified by OpenSSH"

    def close(self) -> None:
        """Nothing to do: the master connection outlives this process by CONTROL_PERSIST seconds, so the next
        pveoci command to this node does not log in again (through a jump host, that is most of its time)."""


class PipeSocket:
    """An `ssh -s sftp` process's pipes as the socket paramiko's SFTPClient reads and writes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._proc, self._in, self._out = proc, proc.stdin, proc.stdout
        self._timeout: float | None = None

    def send(self, data: bytes) -> int:
        try:
            return os.write(self._in.fileno(), data)
        except BrokenPipeError:
            return 0

    def recv(self, n: int) -> bytes:
        if self._timeout is not None and not select.select([self._out], [], [], self._timeout)[0]:
            raise TimeoutError("SFTP over ssh: no answer")
        return os.read(self._out.fileno(), n)

    def get_name(self) -> str:  # paramiko's SFTP log lines name their channel
        return "ssh -s sftp"

    def recv_ready(self) -> bool:
        return bool(select.select([self._out], [], [], 0)[0])

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, blocking: bool) -> None:
        self._timeout = None if blocking else 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        with contextlib.suppress(OSError):
            self._out.close()


def _feed(proc: subprocess.Popen[bytes], stdin: IO[bytes], done: threading.Event) -> None:
    from pveoci.ssh.paramiko_session import feed_chunks

    assert proc.stdin is not None
    try:
        for chunk in feed_chunks(stdin, done):
            proc.stdin.write(chunk)
            proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _copy(source: IO[bytes] | None, sink: IO[bytes] | None, keep: bytearray | None) -> None:
    if source is None:
        return
    while chunk := os.read(source.fileno(), CHUNK):
        if keep is not None and len(keep) < CHUNK:
            keep += chunk
        if sink is not None:
            sink.write(chunk)
            sink.flush()


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"
