"""A node's template directory over SSH: streamed uploads, deltas, claims, and sweeping what killed uploads left.

Everything goes to hidden names first (`.pveoci-...`, which Proxmox never lists: it lists only
`*.tar.<compression>`), is checked by SHA-256 on the node, and is then linked into place under its
content-addressed name (`ln` fails if the name exists: one copy wins, atomically). A claim is a
directory made with `mkdir` (atomic); its holder touches it while it works and writes the template's
name into it when done; waiters read that, or take over a claim gone quiet.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import socket
import time
from typing import IO, Any, cast

from pveoci import errors
from pveoci.models import Completed, Destination
from pveoci.ssh import SshConnector
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
        self.session = connector.session(dest.node)

    def close(self) -> None:
        """The connection is the connector's, shared (SshConnector.shared): nothing to close here."""

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> Completed:
        result = self.session.run(argv, stdin=stdin, timeout=timeout)
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

    def place(self, partial: str, name: str, size: int | None = None) -> bool:
        """Link partial into place as name and remove it, in one command (each is a round trip); False if name
        was there already (partial dropped). With `size`, a partial of another size is removed, not placed."""
        final = f"{self.directory}/{name}"
        done = self.run(["sh", "-c", _PLACE, "sh", partial, final, "" if size is None else str(size)])
        said = done.stdout.decode(errors="replace").strip() or done.stderr.decode(errors="replace").strip()
        if done.status in (0, 5):
            return done.status == 0
        if done.status == 4:
            raise errors.SshError(f"upload of {name} to node '{self.dest.node}' arrived incomplete "
                                  f"({said} of {size} bytes); nothing was kept")
        raise errors.SshError(f"cannot move {name} into place on node '{self.dest.node}': {said or done.status}")


# place(): $1 the partial file, $2 its final name, $3 the size it must have (or empty). Exit 0: placed;
# 5: the name was there already; 4: another size (printed); else the reason on stderr.
_PLACE = """
if [ -n "$3" ]; then
    size=$(stat -c %s -- "$1") || exit 3
    if [ "$size" != "$3" ]; then rm -f -- "$1"; printf %s "$size"; exit 4; fi
fi
ln -- "$1" "$2"; linked=$?
rm -f -- "$1"
[ "$linked" = 0 ] && exit 0
[ -e "$2" ] && exit 5
exit 6
"""


class SftpStream:
    """TemplateUpload over SFTP while the template is being packed: the bytes go through a pipe to an uploader
    process of its own (template/uploader.py), so SSH's encryption does not compete with packing for the GIL.
    What arrives is checked by its size (SSH authenticates every byte, SFTP acknowledges every write) and
    linked into place."""

    def __init__(self, connector: SshConnector, dest: Destination, progress: Progress | None) -> None:
        import subprocess
        import sys

        from pveoci.template.uploader import header

        self.remote = RemoteDir(connector, dest)
        self.partial = self.remote.hidden("upload")
        self.progress = progress
        self.sent = 0
        target = connector.target(dest.node)
        self._child = subprocess.Popen([sys.executable, "-m", "pveoci.template.uploader"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
        assert self._child.stdin is not None
        self._pipe = self._child.stdin
        self._pipe.write(header(connector.settings, dest.node, {"host": target.host, "port": target.port,
                                                               "user": target.user}, self.partial))
        # Packing goes on while the uploader starts and logs in: what it makes meanwhile waits here.
        self._feeder = _Feeder(self._pipe)

    def write(self, data: bytes) -> int:
        try:
            self._feeder.put(data)
        except BrokenPipeError:
            raise self._failed() from None
        self.sent += len(data)
        if self.progress is not None:
            self.progress(len(data))
        return len(data)

    def _failed(self) -> errors.SshError:
        return errors.SshError(f"upload to node '{self.remote.dest.node}' failed: "
                               f"{self._outcome().get('error', 'the uploader ended')}")

    def _outcome(self) -> dict[str, object]:
        import json

        with contextlib.suppress(BrokenPipeError):
            self._pipe.close()
        assert self._child.stdout is not None
        out = self._child.stdout.read()
        self._child.wait(timeout=600)
        try:
            result: dict[str, object] = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"error": f"the uploader ended without saying how (exit {self._child.returncode})"}
        return result

    def finish(self, packed: Packed) -> bool:
        try:
            if not self._feeder.close():
                raise self._failed()
            outcome = self._outcome()
            if "error" in outcome:
                raise errors.SshError(f"upload of {packed.name} to node '{self.remote.dest.node}' failed: "
                                      f"{outcome['error']}")
            if outcome.get("sent") != packed.size:
                raise errors.SshError(f"upload of {packed.name} to node '{self.remote.dest.node}' arrived "
                                      f"incomplete ({outcome.get('sent')} of {packed.size} bytes sent); "
                                      "nothing was kept")
            return self.remote.place(self.partial, packed.name, packed.size)  # checks the size on the node
        except BaseException:
            self.abort()
            raise
        finally:
            self.remote.close()

    def abort(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._feeder.close()
        with contextlib.suppress(Exception):
            self._pipe.close()
        with contextlib.suppress(Exception):
            self._child.wait(timeout=30)
        with contextlib.suppress(Exception):
            self.remote.run(["rm", "-f", "--", self.partial], timeout=30)
        self.remote.close()


class _Feeder:
    """Bytes for a pipe, written by a thread of their own from a buffer of up to BUFFER bytes: the writer does
    not wait for the reader until the buffer is full (an uploader still starting, a slow link)."""

    BUFFER = 256 << 20

    def __init__(self, pipe: IO[bytes]) -> None:
        import collections
        import threading

        self._pipe = pipe
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._done = False
        self._broken = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pveoci-upload-feed", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._held >= self.BUFFER and not self._broken:
                self._cond.wait()
            if self._broken:
                raise BrokenPipeError("the uploader is gone")
            self._chunks.append(data)
            self._held += len(data)
            self._cond.notify_all()

    def close(self) -> bool:
        """No more bytes: wait until all were written; False if the pipe broke."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._thread.join()
        return not self._broken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._chunks and not self._done:
                    self._cond.wait()
                if not self._chunks:
                    return
                data = self._chunks.popleft()
            try:
                self._pipe.write(data)
            except (BrokenPipeError, OSError):
                with self._cond:
                    self._broken = True
                    self._chunks.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                self._held -= len(data)
                self._cond.notify_all()


class RemoteClaim:
    """Claim over SSH: a directory in the template directory (see the module's docstring)."""

    def __init__(self, connector: SshConnector, dest: Destination, key: str) -> None:
        self.remote = RemoteDir(connector, dest)
        self.path = f"{self.remote.directory}/.pveoci-claim-{key[:32]}"
        self._touched = 0.0
        self.ours = self._take()

    def _take(self) -> bool:
        # Taken, and who holds it (so a sweep on this host knows a holder that was killed), in one round trip.
        done = self.remote.run(["sh", "-c", _TAKE, "sh", self.path, host_tag(), str(os.getpid())])
        if done.status == 0:
            self._touched = time.monotonic()
            return True
        if done.status == 1:
            return False   # another create holds it
        raise errors.SshError(f"cannot write to {self.remote.directory} on node '{self.remote.dest.node}': "
                              f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")

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


# RemoteClaim._take: $1 the claim, $2 $3 this host and process. Exit 0: ours; 1: held by another; else why not.
_TAKE = """
if mkdir -- "$1" 2>/dev/null; then printf "%s %s" "$2" "$3" > "$1/holder"; exit; fi
[ -d "$1" ] && exit 1
mkdir -- "$1" || exit 2
printf "%s %s" "$2" "$3" > "$1/holder"
"""


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
    """The delta's new frames, read from packed's file, as one hidden file on the node."""
    assert packed.path is not None
    pieces = _DeltaReader(packed.path, delta, progress)
    if remote.sudo:  # SFTP runs as the login user: through sudo with cat
        status = remote.session.stream(["sh", "-c", 'umask 022 && cat > "$1"', "sh", data],
                                       stdin=cast(IO[bytes], pieces), stdout=None, stderr=None)
        if status != 0:
            raise errors.SshError(f"sending the delta to node '{remote.dest.node}' failed (exit {status})")
        return pieces.sent
    sftp = remote.session.sftp()
    try:
        with sftp.open(data, "wb") as sink:
            sink.MAX_REQUEST_SIZE = CHUNK
            sink.set_pipelined(True)
            while chunk := pieces.read(CHUNK * 4):
                sink.write(chunk)
    finally:
        sftp.close()
    return pieces.sent


class _DeltaReader(io.RawIOBase):
    """The delta's new frames, read from the packed file one after another, as one stream."""

    def __init__(self, path: Any, delta: Delta, progress: Progress | None) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed at the end of the stream
        self._frames = list(delta.new_frames)
        self._left = 0
        self._progress = progress
        self.sent = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._left == 0:
            if not self._frames:
                self._fh.close()
                return b""
            frame = self._frames.pop(0)
            self._fh.seek(frame.offset)
            self._left = frame.size
        data = self._fh.read(min(self._left, size if size > 0 else self._left))
        self._left -= len(data)
        self.sent += len(data)
        if self._progress is not None:
            self._progress(len(data))
        return data
