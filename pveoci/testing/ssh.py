"""The SSH side of a cassette: commands run on nodes (with their exit status and output), uploads, SSH checks.

`CassetteBackend` is the API backend with every SSH seam on a tape: `RecordingTape` runs the real
thing and writes down what happened; `ReplayTape` answers from the cassette, so a replay needs no
node, no sshd and no network.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Protocol, cast

from pveoci import errors
from pveoci.backends.api import ApiBackend
from pveoci.models import Check, Completed, Destination, Guest
from pveoci.pve.client import PveClient
from pveoci.settings import Settings
from pveoci.ssh import SshConnector
from pveoci.template.pack import Packed
from pveoci.testing.cassette import SSH_RESULT_KEYS, decode_bytes, encode_bytes
from pveoci.testing.log import RecordLog
from pveoci.testing.match import Tape
from pveoci.testing.normalise import LocalValues
from pveoci.testing.scrub import mask_key_fingerprints, strings

Streams = tuple[IO[bytes] | None, IO[bytes] | None, IO[bytes] | None]


class SshTape(Protocol):
    def play(self, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The result entry for this request: from the real call (recording) or from the cassette (replay)."""


def error_entry(exc: errors.PveociError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message}}


def raise_recorded(result: dict[str, Any]) -> None:
    """Raise the error an entry recorded, as the same pveoci exception type."""
    if "error" not in result:
        return
    error = result["error"]
    kind = getattr(errors, str(error.get("type")), errors.PveociError)
    if not (isinstance(kind, type) and issubclass(kind, errors.PveociError)):
        kind = errors.PveociError
    try:
        exc = kind(str(error.get("message", "")))
    except TypeError:  # an error type with more required fields
        exc = errors.PveociError(str(error.get("message", "")))
    raise exc


class RecordingTape:
    def __init__(self, log: RecordLog) -> None:
        self.log = log

    def play(self, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            with self.log.paused():
                result = real()
        except errors.PveociError as exc:
            result = error_entry(exc)
        self.log.add("ssh", {**asked, **result})
        return result


class ReplayTape:
    def __init__(self, tape: Tape, local: LocalValues) -> None:
        self.tape = tape
        self.local = local

    def play(self, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        entry = self.tape.take(strings(asked, self.local.normalise))
        result: dict[str, Any] = strings({k: v for k, v in entry.items() if k in SSH_RESULT_KEYS}, self.local.restore)
        return result


def show_ssh(key: dict[str, Any]) -> str:
    for kind in ("run", "exec"):
        if kind in key:
            words = " ".join(str(w) for w in key[kind])
            extra = f" in CT {key['vmid']}" if "vmid" in key else ""
            return f"{kind} on {key.get('node')}{extra}: {words}" + (" (with stdin)" if key.get("stdin") else "")
    if "upload" in key:
        return f"upload of {key['upload']} to {key.get('node')}:{key.get('directory')}"
    return f"check of {key.get('node')}"


class _Tee(io.RawIOBase):
    """A stream that keeps a copy of what is written to it."""

    def __init__(self, target: IO[bytes] | None) -> None:
        super().__init__()
        self.target = target
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.data += chunk
        if self.target is not None:
            self.target.write(chunk)
        return len(chunk)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()


class CassetteBackend(ApiBackend):
    """The API backend (its HTTP recorded or replayed elsewhere) with its SSH seams on a tape."""

    name = "api"

    def __init__(self, client: PveClient, settings: Settings, tape: SshTape) -> None:
        super().__init__(client, settings)
        self.tape = tape

    def on_node(self, node: str, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60) -> Completed:
        real_on_node = super().on_node

        def real() -> dict[str, Any]:
            done = real_on_node(node, argv, stdin=stdin, timeout=timeout)
            return {"status": done.status, "stdout": encode_bytes(done.stdout), "stderr": encode_bytes(done.stderr)}

        result = self.tape.play({"node": node, "run": list(argv), "stdin": encode_bytes(stdin)}, real)
        raise_recorded(result)
        return Completed(int(result["status"]), decode_bytes(result["stdout"]) or b"",
                         decode_bytes(result["stderr"]) or b"")

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        # A terminal's input is typed as the program runs: it is not kept (nor matched).
        data = None if stdin is None or tty else stdin.read()
        out, err = _Tee(stdout), _Tee(stderr)
        real_exec = super().exec

        def real() -> dict[str, Any]:
            source = stdin if tty else (None if data is None else io.BytesIO(data))
            status = real_exec(node, vmid, argv, stdin=source, stdout=cast(IO[bytes], out),
                               stderr=cast(IO[bytes], err), tty=tty)
            return {"status": status, "stdout": encode_bytes(bytes(out.data)), "stderr": encode_bytes(bytes(err.data))}

        asked = {"node": node, "vmid": vmid, "exec": list(argv), "tty": tty, "stdin": encode_bytes(data)}
        result = self.tape.play(asked, real)
        raise_recorded(result)
        if isinstance(self.tape, ReplayTape):  # what the program wrote then
            _Tee(stdout).write(decode_bytes(result["stdout"]) or b"")
            _Tee(stderr).write(decode_bytes(result["stderr"]) or b"")
        return int(result["status"])

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        if transport != "sftp":
            return super().upload(packed, dest, transport=transport, progress=progress)
        real_upload = super().upload

        def real() -> dict[str, Any]:
            real_upload(packed, dest, transport=transport, progress=progress)
            return {}

        asked = {"node": dest.node, "upload": packed.name, "directory": dest.directory}
        raise_recorded(self.tape.play(asked, real))
        if isinstance(self.tape, ReplayTape):
            progress(packed.size)
        return packed.size

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        # One at a time, in order: parallel reads would be recorded in whatever order they finished.
        out = {}
        for g in guests:
            try:
                out[g.vmid] = self.config(g.node, g.vmid)
            except (errors.NotFound, errors.NodeOffline):
                continue
        return out

    def checks(self) -> Iterator[Check]:
        from pveoci import doctor

        return doctor.diagnose(self.settings, self.client, ssh_check=self._check_ssh)

    def _check_ssh(self, connector: SshConnector, node: str) -> Check:
        from pveoci import doctor

        def real() -> dict[str, Any]:
            done = doctor.check_ssh(connector, node)
            detail = done.detail
            try:
                target = connector.target(node)
            except errors.PveociError:
                pass
            else:  # the address and port are the recording's: the node's name says as much, and stays
                detail = detail.replace(str(target), f"{target.user}@{node}")
            return {"status": done.status, "detail": mask_key_fingerprints(detail)}

        result = self.tape.play({"node": node, "check": "ssh"}, real)
        return Check(f"ssh {node}", result["status"], str(result["detail"]))
