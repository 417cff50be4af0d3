"""The SSH side of a cassette: commands run on nodes (with their exit status and output), programs run in
containers, the template storage (claims, sweeps, uploads: pveoci.testing.storage_tape), SSH checks.

`CassetteBackend` is the API backend with every SSH seam on a tape (pveoci.testing.sshtape): recording
runs the real thing and writes down what happened; replaying answers from the cassette, so a replay
needs no node, no sshd and no network (its connector refuses to make a connection).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

from pveoci import errors
from pveoci.backends.api import ApiBackend, ApiTemplates
from pveoci.backends.base import Claim, Facts, TemplateUpload
from pveoci.backends.onnode import NodeCommands
from pveoci.backends.runner import Runner
from pveoci.backends.sshrunner import SshRunner
from pveoci.models import Check, Completed, Destination
from pveoci.pve.client import PveClient
from pveoci.settings import Settings
from pveoci.ssh import SshConnector
from pveoci.template.delta import Delta
from pveoci.template.pack import Packed
from pveoci.testing.cassette import decode_bytes, encode_bytes
from pveoci.testing.normalise import LocalValues
from pveoci.testing.scrub import mask_key_fingerprints
from pveoci.testing.sshtape import NoNodes, ReplayTape, SshTape, raise_recorded
from pveoci.testing.storage_tape import TapedClaim, TapedStream, play, record_failure, where


def show_ssh(key: dict[str, Any]) -> str:
    node = key.get("node")
    for kind in ("run", "exec"):
        if kind in key:
            words = " ".join(str(w) for w in key[kind])
            extra = f" in CT {key['vmid']}" if "vmid" in key else ""
            return f"{kind} on {node}{extra}: {words}" + (" (with stdin)" if key.get("stdin") else "")
    place = f"{node}:{key.get('directory')}"
    if "upload" in key:
        how = f" as a delta against {key.get('base')}" if key.get("via") == "delta" else f" ({key.get('via')})"
        return f"upload of {key['upload'] or 'a template'} to {place}{how}"
    if "claim" in key:
        name = f" {key['name']}" if key.get("name") else ""
        return f"claim {key['claim']} on {place}: {key.get('step')}{name}"
    if "sweep" in key:
        return f"sweep of {place}"
    return f"check of {node}"


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


class TapedNode(NodeCommands):
    """What runs on a node (backends.onnode) on the tape: commands with their exit status and output, and
    programs run in containers with what they printed."""

    def __init__(self, runner: Runner, tape: SshTape) -> None:
        super().__init__(runner)
        self.tape = tape

    def reach(self, node: str) -> None:
        """A login ahead of a command is no step of a scenario: the command that follows is on the tape."""

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
        if self.tape.replaying:  # what the program wrote then
            _Tee(stdout).write(decode_bytes(result["stdout"]) or b"")
            _Tee(stderr).write(decode_bytes(result["stderr"]) or b"")
        return int(result["status"])


class TapedTemplates(ApiTemplates):
    """The API backend's template storage with what it does over SSH on the tape (pveoci.testing.storage_tape)."""

    def __init__(self, client: PveClient, ssh: SshConnector, facts: Facts, tape: SshTape, local: LocalValues) -> None:
        super().__init__(client, ssh, facts)
        self.tape = tape
        self.local = local

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        if transport == "api":  # HTTP only: recorded and replayed as such
            return super().upload(packed, dest, transport=transport, progress=progress)
        real_upload = super().upload

        def real() -> dict[str, Any]:
            real_upload(packed, dest, transport=transport, progress=progress)
            return {}

        play(self.tape, {**where(dest), "upload": packed.name, "via": "file"}, real)
        if self.tape.replaying:
            progress(packed.size)
        return packed.size

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        if transport == "api":  # spooled locally, then one HTTP upload
            return super().begin_upload(dest, transport=transport, progress=progress)
        broke_off = {**where(dest), "via": "stream", "upload": None}
        if isinstance(self.tape, ReplayTape):
            # A stream that broke off was kept without a name (none was packed yet): it fails here at once.
            upcoming = self.tape.upcoming(lambda e: all(e.get(k) == v for k, v in where(dest).items())
                                          and e.get("via") == "stream")
            if upcoming is not None and upcoming.get("upload") is None:
                play(self.tape, broke_off, lambda: {})
            return TapedStream(self.tape, dest, None, progress)
        try:
            with self.tape.offstage():
                real = super().begin_upload(dest, transport=transport, progress=progress)
        except errors.PveociError as exc:
            record_failure(self.tape, broke_off, exc)
            raise
        return TapedStream(self.tape, dest, real, progress)

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        real_delta = super().upload_delta
        sent = delta.new_bytes  # what a replay reports: the new frames' bytes, as the real one counts them

        def real() -> dict[str, Any]:
            nonlocal sent
            sent = real_delta(packed, base, delta, dest, progress=progress)
            return {}

        play(self.tape, {**where(dest), "upload": packed.name, "via": "delta", "base": base}, real)
        if self.tape.replaying:
            progress(sent)
        return sent

    def claim_template(self, dest: Destination, key: str) -> Claim:
        if dest.directory is None:  # a claim within this machine (a lock file): nothing reaches a node
            return super().claim_template(dest, key)
        real_claim = super().claim_template
        return TapedClaim(self.tape, dest, self.local.claim_number(key), lambda: real_claim(dest, key))

    def sweep_templates(self, dest: Destination) -> list[str]:
        real_sweep = super().sweep_templates
        return [str(name) for name in play(self.tape, {**where(dest), "sweep": True},
                                           lambda: {"removed": real_sweep(dest)})["removed"]]


class CassetteBackend(ApiBackend):
    """The API backend (its HTTP recorded or replayed elsewhere) with its SSH seams on a tape: its node and
    template storage parts are taped ones, and it reads many containers one at a time, in order (the API
    backend reads in parallel: a recording would keep the requests in whatever order they finished).

    It keeps no facts between commands (no cache of the cluster's version or addresses, no waits sized by the
    last task): what it asks, and when, must be the same at every recording and replay.
    """

    name = "api"
    parallel = 1

    def __init__(self, client: PveClient, settings: Settings, tape: SshTape, local: LocalValues) -> None:
        super().__init__(client, settings, ssh=NoNodes(settings.profile.ssh, tape)
                         if isinstance(tape, ReplayTape) else None)
        self.tape = tape
        self.local = local
        self.node = TapedNode(SshRunner(self.ssh), tape)
        self.storage = TapedTemplates(client, self.ssh, self.facts, tape, local)

    def checks(self) -> Iterator[Check]:
        from pveoci.checks import diagnose

        return diagnose(self.settings, self.client, ssh_check=self._check_ssh)

    def _check_ssh(self, connector: SshConnector, node: str) -> Check:
        from pveoci.checks import check_ssh

        def real() -> dict[str, Any]:
            done = check_ssh(connector, node)
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
