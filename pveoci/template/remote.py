"""A node's template directory over SSH: streamed uploads, deltas, claims, and sweeping what killed uploads left.

Everything goes to hidden names first (`.pveoci-...`, which Proxmox never lists: it lists only
`*.tar.<compression>`), is checked by SHA-256 on the node, and is then linked into place under its
content-addressed name (`ln` fails if the name exists: one copy wins, atomically). A claim is a
directory made with `mkdir` (atomic); its holder touches it while it works and writes the template's
name into it when done; waiters read that, or take over a claim gone quiet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time

from pveoci import errors
from pveoci.models import Completed, Destination
from pveoci.ssh import SshConnector, command_line, run
from pveoci.template.delta import Delta
from pveoci.template.pack import Packed, Progress

log = logging.getLogger("pveoci.template")

CHUNK = 255 * 1024          # OpenSSH's sftp-server takes requests up to 256 KiB, header included
QUIET = 60.0                # a claim not touched for this long is taken over
HEARTBEAT = 5.0
POLL = 0.5
PARTIAL_AGE = 3600.0        # another host's partial file this old is abandoned


class RemoteDir:
    """One SSH connection to a node, at its template directory."""

    def __init__(self, connector: SshConnector, dest: Destination) -> None:
        if dest.directory is None:
            raise errors.ConfigError(f"storage '{dest.storage}' has no directory pveoci can reach over SSH; "
                                     "use the API transport (--transport api)")
        self.dest = dest
        self.directory = dest.directory
        self.sudo = connector.settings.sudo
        self.client = connector.connect(dest.node)

    def close(self) -> None:
        self.client.close()

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> Completed:
        result = run(self.client, argv, sudo=self.sudo, timeout=timeout, stdin=stdin)
        return Completed(result.status, result.stdout, result.stderr)

    def must(self, argv: list[str], what: str, timeout: float = 600) -> Completed:
        done = self.run(argv, timeout=timeout)
        if done.status != 0:
            raise errors.SshError(f"cannot {what} on node '{self.dest.node}': "
                                  f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")
        return done

    def hidden(self, what: str, suffix: str = "partial") -> str:
        """A name no Proxmox listing shows, that says which host and process made it (for sweeping)."""
        return f"{self.directory}/.pveoci-{what}.{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}"

    def verify(self, path: str, packed: Packed) -> None:
        words = self.must(["sha256sum", "--", path], f"verify {packed.name}").stdout.split()
        if not words or words[0].decode() != packed.file_sha256:
            raise errors.SshError(f"upload of {packed.name} to node '{self.dest.node}' arrived damaged "
                                  "(sha256 differs); nothing was kept")

    def place(self, partial: str, name: str) -> bool:
        """Link partial into place as name and remove it; False if name was there already (partial dropped)."""
        final = f"{self.directory}/{name}"
        linked = self.run(["ln", "--", partial, final])
        self.run(["rm", "-f", "--", partial])
        if linked.status == 0:
            return True
        if self.run(["test", "-e", final]).status == 0:
            return False
        raise errors.SshError(f"cannot move {name} into place on node '{self.dest.node}': "
                              f"{linked.stderr.decode(errors='replace').strip()}")


class SftpStream:
    """TemplateUpload over SSH: bytes written to a hidden file as they come (SFTP, or `cat` through sudo)."""

    def __init__(self, connector: SshConnector, dest: Destination, progress: Progress | None) -> None:
        self.remote = RemoteDir(connector, dest)
        self.partial = self.remote.hidden("upload")
        self.progress = progress
        self.sent = 0
        self._open()

    def _open(self) -> None:
        if self.remote.sudo:
            line = command_line(["sh", "-c", 'umask 022 && cat > "$1"', "sh", self.partial], sudo=True)
            self._stdin, self._stdout, self._stderr = self.remote.client.exec_command(line)
            return
        self._sftp = self.remote.client.open_sftp()
        self._file = self._sftp.open(self.partial, "wb")
        self._file.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
        self._file.set_pipelined(True)

    def write(self, data: bytes) -> int:
        try:
            (self._stdin if self.remote.sudo else self._file).write(data)
        except (OSError, EOFError) as exc:
            raise errors.SshError(f"upload to node '{self.remote.dest.node}' failed: {exc}") from None
        self.sent += len(data)
        if self.progress is not None:
            self.progress(len(data))
        return len(data)

    def _close(self) -> None:
        if self.remote.sudo:
            self._stdin.channel.shutdown_write()
            if self._stdout.channel.recv_exit_status() != 0:
                raise errors.SshError(f"upload with sudo failed: {self._stderr.read().decode(errors='replace')}")
        else:
            self._file.close()
            self._sftp.close()

    def finish(self, packed: Packed) -> bool:
        try:
            self._close()
            self.remote.verify(self.partial, packed)
            return self.remote.place(self.partial, packed.name)
        except BaseException:
            self.abort()
            raise
        finally:
            self.remote.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(Exception):
            self.remote.run(["rm", "-f", "--", self.partial], timeout=30)
        self.remote.close()


class RemoteClaim:
    """Claim over SSH: a directory in the template directory (see the module's docstring)."""

    def __init__(self, connector: SshConnector, dest: Destination, key: str) -> None:
        self.remote = RemoteDir(connector, dest)
        self.path = f"{self.remote.directory}/.pveoci-claim-{key[:32]}"
        self._touched = 0.0
        self.ours = self._take()

    def _take(self) -> bool:
        if self.remote.run(["mkdir", "--", self.path]).status == 0:
            # Who holds it, so a sweep on this host knows a holder that was killed.
            self.remote.run(["sh", "-c", 'printf "%s %s" "$2" "$3" > "$1/holder"', "sh", self.path, host_tag(),
                             str(os.getpid())])
            self._touched = time.monotonic()
            return True
        return False

    def result(self) -> str | None:
        done = self.remote.run(["cat", "--", f"{self.path}/result"])
        text = done.stdout.decode(errors="replace").strip()
        return text or None if done.status == 0 else None

    def _gone_quiet(self) -> bool:
        done = self.remote.run(["sh", "-c", 'stat -c %Y -- "$1" && date +%s', "sh", self.path])
        words = done.stdout.split()
        if done.status != 0 or len(words) != 2:
            return True  # it is gone
        return int(words[1]) - int(words[0]) > QUIET

    def wait(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.remote.run(["test", "-e", f"{self.path}/result"]).status == 0:
                return self.result()
            if self._gone_quiet():
                return None
            time.sleep(POLL)
        return None

    def take_over(self) -> bool:
        """The holder went quiet or gave up: remove its claim and try to take it."""
        self.remote.run(["rm", "-rf", "--", self.path])
        self.ours = self._take()
        return self.ours

    def heartbeat(self) -> None:
        if self.ours and time.monotonic() - self._touched > HEARTBEAT:
            self.remote.run(["touch", "--", self.path])
            self._touched = time.monotonic()

    def release(self, name: str | None) -> None:
        """Done: the name for the waiters; gave up (None): the claim goes, and a waiter takes over."""
        try:
            if self.ours and name:
                self.remote.run(["sh", "-c", 'printf %s "$2" > "$1/result"', "sh", self.path, name])
            elif self.ours:
                self.remote.run(["rm", "-rf", "--", self.path])
        finally:
            self.remote.close()


def host_tag() -> str:
    """This machine, as hidden names carry it (its name may hold dots and dashes)."""
    import hashlib

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def sweep(connector: SshConnector, dest: Destination) -> list[str]:
    """Remove hidden uploads of dead processes of this host (or older than PARTIAL_AGE from other hosts),
    and claims done or gone quiet; the names removed."""
    remote = RemoteDir(connector, dest)
    try:
        # One line per hidden entry: name, age in seconds, and "done" for a claim with a result.
        listing = remote.run(["sh", "-c", _LIST, "sh", remote.directory]).stdout.decode(errors="replace")
        doomed = []
        for line in listing.splitlines():
            name, age, done, holder = ([*line.split("\t"), "", "", "", ""])[:4]
            if name and _abandoned(name, float(age or 0), done == "done", holder):
                doomed.append(name)
        for name in doomed:
            remote.run(["rm", "-rf", "--", f"{remote.directory}/{name}"])
        return doomed
    finally:
        remote.close()


_LIST = r"""
cd "$1" || exit 1
now=$(date +%s)
for f in .pveoci-*; do
    [ -e "$f" ] || continue
    done=""
    [ -e "$f/result" ] && done=done
    holder=$(cat -- "$f/holder" 2>/dev/null)
    printf '%s\t%s\t%s\t%s\n' "$f" "$((now - $(stat -c %Y -- "$f")))" "$done" "$holder"
done
"""


def _abandoned(name: str, age: float, done: bool, holder: str) -> bool:
    if name.startswith(".pveoci-claim-"):
        tag, _, pid = holder.partition(" ")
        dead_here = tag == host_tag() and pid.isdigit() and not _alive(int(pid))
        return done or dead_here or age > QUIET
    parts = name.split(".")
    maker = parts[-2].split("-") if len(parts) >= 4 else []
    if len(maker) == 3 and maker[0] == host_tag() and maker[1].isdigit():
        return not _alive(int(maker[1]))
    return age > PARTIAL_AGE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def send_delta(connector: SshConnector, dest: Destination, packed: Packed, base: str, delta: Delta,
               progress: Progress | None) -> int:
    """Send delta's new frames (read from packed's local file) and have the node rebuild packed from them and
    the template `base`; verified, then linked into place. The bytes sent."""
    from pveoci.template.delta import APPLY

    if packed.path is None:
        raise ValueError("a delta is made from a packed file")
    remote = RemoteDir(connector, dest)
    data, out = remote.hidden("delta", "data"), remote.hidden("rebuilt")
    try:
        sent = _send_frames(remote, packed, delta, data, progress)
        remote.must(["sh", "-c", APPLY, "sh", f"{remote.directory}/{base}", data, out, *delta.args()],
                    f"rebuild {packed.name} from {base}")
        remote.verify(out, packed)
        remote.place(out, packed.name)
        return sent
    finally:
        remote.run(["rm", "-f", "--", data, out], timeout=30)
        remote.close()


def _send_frames(remote: RemoteDir, packed: Packed, delta: Delta, data: str, progress: Progress | None) -> int:
    assert packed.path is not None
    stream = SftpStream.__new__(SftpStream)
    stream.remote, stream.partial, stream.progress, stream.sent = remote, data, progress, 0
    stream._open()
    with packed.path.open("rb") as fh:
        for frame in delta.new_frames:
            fh.seek(frame.offset)
            stream.write(fh.read(frame.size))
    stream._close()
    return stream.sent
