"""A node's template storage on the tape: claims, sweeps and uploads (streamed, whole file, delta).

What pveoci does over SSH in a node's template directory (pveoci.template.node_claim, .sweep, .stream,
.node_delta) is kept as what it meant, not as the commands it ran there: a claim taken (ours or not),
waited for and released with the template's name; a sweep and what it removed; an upload by the
template's name (its stand-in in the cassette) and how it was sent. Heartbeats are not kept (how many
there are depends on time), nor the bytes (a template is known by the order it was packed in). A replay
answers from the entries alone; a stream that broke off (kept without a name: none was packed yet) fails
there as soon as it begins.

    {"node", "directory", "claim": 1, "step": "take", "ours": true}          # take, take_over: "ours"
    {"node", "directory", "claim": 1, "step": "release", "name": "pveoci-...tar.zst"}
    {"node", "directory", "claim": 1, "step": "wait", "result": name}        # wait, result: "result"
    {"node", "directory", "sweep": true, "removed": [...]}
    {"node", "directory", "upload": name, "via": "stream", "landed": true}   # packed while it was sent
    {"node", "directory", "upload": null, "via": "stream", "error": {...}}   # the stream broke off
    {"node", "directory", "upload": name, "via": "file"}                      # or "delta", with "base"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pveoci import errors
from pveoci.backends.base import Claim, TemplateUpload
from pveoci.models import Destination
from pveoci.template.pack import Packed
from pveoci.testing.sshtape import SshTape, raise_recorded


def where(dest: Destination) -> dict[str, Any]:
    """What every entry of a template storage names: the node and its template directory."""
    return {"node": dest.node, "directory": dest.directory}


def play(tape: SshTape, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The entry's result; the error it recorded raised again."""
    result = tape.play(asked, real)
    raise_recorded(result)
    return result


def record_failure(tape: SshTape, asked: dict[str, Any], exc: errors.PveociError) -> None:
    """Put a failure that happened outside tape.play (recording) on the tape."""
    def failed() -> dict[str, Any]:
        raise exc

    tape.play(asked, failed)


class TapedClaim:
    """A claim (backends.base.Claim) whose steps are entries: recording, each runs the real claim's step too."""

    def __init__(self, tape: SshTape, dest: Destination, number: int, make: Callable[[], Claim]) -> None:
        self.tape = tape
        self.where = {**where(dest), "claim": number}
        self._make = make
        self._real: Claim | None = None
        self.ours = bool(self._step("take", self._take)["ours"])

    def _take(self) -> dict[str, Any]:
        self._real = self._make()
        return {"ours": self._real.ours}

    def _step(self, step: str, real: Callable[[], dict[str, Any]], **more: Any) -> dict[str, Any]:
        return play(self.tape, {**self.where, "step": step, **more}, real)

    def _held(self) -> Claim:
        if self._real is None:  # only a recording runs real steps, and its first one made the claim
            raise RuntimeError("a claim step ran for real without a claim")
        return self._real

    def result(self) -> str | None:
        found = self._step("result", lambda: {"result": self._held().result()})["result"]
        return None if found is None else str(found)

    def wait(self, timeout: float) -> str | None:
        found = self._step("wait", lambda: {"result": self._held().wait(timeout)})["result"]
        return None if found is None else str(found)

    def take_over(self) -> bool:
        self.ours = bool(self._step("take_over", lambda: {"ours": self._held().take_over()})["ours"])
        return self.ours

    def heartbeat(self) -> None:
        if self._real is not None:
            with self.tape.offstage():
                self._real.heartbeat()

    def release(self, name: str | None) -> None:
        def real() -> dict[str, Any]:
            self._held().release(name)
            return {}

        self._step("release", real, name=name)


class TapedStream:
    """A streamed upload (backends.base.TemplateUpload) kept as one entry when it ends, by the template's name.

    Recording, the bytes go to the real upload (`real`); replaying (`real` None) they are counted and dropped.
    """

    def __init__(self, tape: SshTape, dest: Destination, real: TemplateUpload | None,
                 progress: Callable[[int], None]) -> None:
        self.tape = tape
        self.where = {**where(dest), "via": "stream"}
        self._real = real
        self._progress = progress
        self.sent = 0

    def write(self, data: bytes) -> int:
        if self._real is None:
            self.sent += len(data)
            self._progress(len(data))
            return len(data)
        try:
            with self.tape.offstage():
                self._real.write(data)
        except errors.PveociError as exc:
            record_failure(self.tape, {**self.where, "upload": None}, exc)
            raise
        self.sent = self._real.sent
        return len(data)

    def finish(self, packed: Packed, claim: object = None) -> bool:
        def real() -> dict[str, Any]:
            if self._real is None:
                raise RuntimeError("a streamed upload finished for real without an upload")
            return {"landed": self._real.finish(packed)}   # the claim is recorded on its own

        return bool(play(self.tape, {**self.where, "upload": packed.name}, real)["landed"])

    def abort(self) -> None:
        if self._real is not None:
            with self.tape.offstage():
                self._real.abort()
