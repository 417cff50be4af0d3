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
import weakref
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

    def place(self, partial: str, name: str, size: int | None = None, claim: str = "") -> bool:
        """Link partial into place as name and remove it, in one command (each is a round trip); False if name
        was there already (partial dropped). With `size`, a partial of another size is removed, not placed.
        With `claim` (a claim's directory), the name is recorded in it as its result in the same command."""
        final = f"{self.directory}/{name}"
        done = self.run(["sh", "-c", _PLACE, "sh", partial, final, "" if size is None else str(size), claim])
        said = done.stdout.decode(errors="replace").strip() or done.stderr.decode(errors="replace").strip()
        if done.status in (0, 5, 7):
            return done.status == 0
        if done.status == 4:
            raise errors.SshError(f"upload of {name} to node '{self.dest.node}' arrived incomplete "
                                  f"({said} of {size} bytes); nothing was kept")
        raise errors.SshError(f"cannot move {name} into place on node '{self.dest.node}': {said or done.status}")


# place(): $1 the partial file, $2 its final name, $3 the size it must have (or empty), $4 a claim to record
# the name in (or empty). Exit 0: placed; 5: the name was there already; 4: another size (printed); 7: placed
# (or there already) but the claim's result not written; else the reason on stderr.
_PLACE = """
if [ -n "$3" ]; then
    size=$(stat -c %s -- "$1") || exit 3
    if [ "$size" != "$3" ]; then rm -f -- "$1"; printf %s "$size"; exit 4; fi
fi
ln -- "$1" "$2"; linked=$?
rm -f -- "$1"
if [ "$linked" = 0 ]; then status=0; elif [ -e "$2" ]; then status=5; else exit 6; fi
if [ -n "$4" ]; then printf %s "${2##*/}" > "$4/result" || exit 7; fi
exit "$status"
"""


class SftpStream:
    """TemplateUpload over SSH while the template is being packed: the frames go, as they are made, to a thread
    that writes them over the node's SSH connection (SFTP, or `cat` through sudo), from a buffer, so packing
    does not wait while the file is opened. What arrives is checked by its size (SSH authenticates every
    byte, SFTP acknowledges every write) and linked into place."""

    def __init__(self, connector: SshConnector, dest: Destination, progress: Progress | None) -> None:
        self.remote = RemoteDir(connector, dest)
        self.partial = self.remote.hidden("upload")
        self.progress = progress
        self.sent = 0
        sink = _SudoCat(self.remote, self.partial) if self.remote.sudo else _SftpFile(self.remote, self.partial)
        self._feeder = _Feeder(sink)

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
        why = self._feeder.error
        message = (getattr(why, "message", None) or str(why) or type(why).__name__) if why is not None \
            else "the upload stopped"
        return errors.SshError(f"upload to node '{self.remote.dest.node}' failed: {message}")

    def finish(self, packed: Packed, claim: object = None) -> bool:
        try:
            if not self._feeder.close():
                raise self._failed()
            if self.sent != packed.size:
                raise errors.SshError(f"upload of {packed.name} to node '{self.remote.dest.node}' arrived "
                                      f"incomplete ({self.sent} of {packed.size} bytes sent); nothing was kept")
            # The size is checked on the node; a claim of this storage gets the name in the same command.
            held = claim if isinstance(claim, RemoteClaim) and claim.ours and claim.remote.dest == self.remote.dest \
                else None
            landed = self.remote.place(self.partial, packed.name, packed.size, held.path if held else "")
            if held is not None:
                held.recorded = packed.name
            return landed
        except BaseException:
            self.abort()
            raise
        finally:
            self.remote.close()

    def abort(self) -> None:
        self._feeder.close(abort=True)
        with contextlib.suppress(Exception):
            self.remote.run(["rm", "-f", "--", self.partial], timeout=30)
        self.remote.close()


class _SftpFile:
    """A file on the node written over SFTP: opened at the first write, in the writing thread."""

    def __init__(self, remote: RemoteDir, path: str) -> None:
        self._remote, self._path = remote, path
        self._sftp: Any = None
        self._file: Any = None

    def write(self, data: bytes) -> None:
        if self._file is None:
            self._sftp = self._remote.session.sftp()
            self._file = self._sftp.open(self._path, "wb")
            self._file.MAX_REQUEST_SIZE = CHUNK  # paramiko's default of 32 KiB halves the throughput
            self._file.set_pipelined(True)
        self._file.write(data)

    def close(self) -> None:
        if self._file is None:
            self.write(b"")
        try:
            self._file.close()
        finally:
            self._sftp.close()


class _SudoCat:
    """A file on the node written by `cat` through sudo (SFTP would run as the login user), fed through a pipe."""

    def __init__(self, remote: RemoteDir, path: str) -> None:
        import threading

        read_end, write_end = os.pipe()
        self._pipe = os.fdopen(write_end, "wb")
        self._status: list[int] = []
        source = os.fdopen(read_end, "rb")

        def run() -> None:
            try:
                self._status.append(remote.session.stream(["sh", "-c", 'umask 022 && cat > "$1"', "sh", path],
                                                          stdin=source, stdout=None, stderr=None))
            finally:
                source.close()

        self._thread = threading.Thread(target=run, name="pveoci-upload-cat", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._pipe.write(data)

    def close(self) -> None:
        self._pipe.close()
        self._thread.join()
        if self._status != [0]:
            raise OSError(f"cat through sudo exited {self._status[0] if self._status else 'without a status'}")


class _Feeder:
    """Bytes for a sink (its write and close), written by a thread of their own from a buffer of up to BUFFER
    bytes: the caller does not wait for the sink until the buffer is full (a file still being opened, a slow
    link). What the sink raised is kept in `error`."""

    BUFFER = 256 << 20

    def __init__(self, sink: Any) -> None:
        import collections
        import threading

        self._sink = sink
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._done = False
        self._broken = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pveoci-upload-feed", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._held >= self.BUFFER and not self._broken:
                self._cond.wait()
            if self._broken:
                raise BrokenPipeError("the upload failed")
            self._chunks.append(data)
            self._held += len(data)
            self._cond.notify_all()

    def close(self, abort: bool = False) -> bool:
        """No more bytes: wait until all were written and the sink closed; False if it failed. `abort`: drop
        what is still buffered."""
        with self._cond:
            self._done = True
            if abort:
                self._broken = True
                self._chunks.clear()
            self._cond.notify_all()
        self._thread.join()
        if self._broken:
            with contextlib.suppress(Exception):
                self._sink.close()   # a failed or dropped upload: its channel goes too
        return not self._broken

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._done:
                        self._cond.wait()
                    if not self._chunks:
                        break
                    data = self._chunks.popleft()
                self._sink.write(data)
                with self._cond:
                    self._held -= len(data)
                    self._cond.notify_all()
            if not self._broken:
                self._sink.close()
        except BaseException as exc:  # kept for the caller, who raises it as an SshError
            with self._cond:
                self.error = exc
                self._broken = True
                self._chunks.clear()
                self._cond.notify_all()


class RemoteClaim:
    """Claim over SSH: a directory in the template directory (see the module's docstring)."""

    def __init__(self, connector: SshConnector, dest: Destination, key: str) -> None:
        self.remote = RemoteDir(connector, dest)
        self._connector = connector
        self.path = f"{self.remote.directory}/.pveoci-claim-{key[:32]}"
        self._touched = 0.0
        self.recorded: str | None = None   # the name an upload already wrote as the result (SftpStream.finish)
        self.ours = self._take()

    def _take(self) -> bool:
        # Taken, who holds it (so a sweep on this host knows a holder that was killed), and what the storage's
        # hidden entries are (for the sweep that follows), in one round trip.
        done = self.remote.run(["sh", "-c", f"{_TAKE}(\n{_LIST})\nexit 0\n", "sh", self.path, host_tag(),
                                str(os.getpid())])
        if done.status == 0:
            self._touched = time.monotonic()
            _listed(self._connector, self.remote.dest, done.stdout.decode(errors="replace"))
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
                if name != self.recorded:   # not written by the upload's last command already
                    self.remote.run(["sh", "-c", 'printf %s "$2" > "$1/result"', "sh", self.path, name])
            elif self.ours:
                self.remote.run(["rm", "-rf", "--", self.path])
        finally:
            self.remote.close()


# RemoteClaim._take: $1 the claim, $2 $3 this host and process. Exit 0: ours (then _LIST runs, in the claim's
# directory's parent); 1: held by another; else why not.
_TAKE = """
if ! mkdir -- "$1" 2>/dev/null; then
    [ -d "$1" ] && exit 1
    mkdir -- "$1" || exit 2
fi
printf "%s %s" "$2" "$3" > "$1/holder"
set -- "${1%/*}"
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
        # One line per hidden entry: name, age in seconds, and "done" for a claim with a result (the listing a
        # claim just taken here made, or a new one).
        listing = _recent(connector, dest)
        if listing is None:
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
    changed=$(stat -c %Y -- "$f" 2>/dev/null) || continue
    printf '%s\t%s\t%s\t%s\n' "$f" "$((now - changed))" "$done" "$holder"
done
"""


# What a claim just listed, per connection (one cluster's nodes: another profile's node of the same name is
# another machine), then per storage.
_LISTINGS: weakref.WeakKeyDictionary[SshConnector, dict[tuple[str, str | None], tuple[float, str]]] = \
    weakref.WeakKeyDictionary()
_FRESH = 5.0


def _listed(connector: SshConnector, dest: Destination, listing: str) -> None:
    _LISTINGS.setdefault(connector, {})[(dest.node, dest.directory)] = (time.monotonic(), listing)


def _recent(connector: SshConnector, dest: Destination) -> str | None:
    """The listing a claim took on this storage over this connection in the last few seconds, once (the sweep
    after it uses it)."""
    when, listing = _LISTINGS.get(connector, {}).pop((dest.node, dest.directory), (0.0, ""))
    return listing if time.monotonic() - when < _FRESH else None


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
