"""The SSH side's tape: recording runs the real thing and writes down what happened; replaying answers from
the cassette and refuses anything that would reach a node.

An entry is what was asked (node, command or upload, input) plus its result (cassette.SSH_RESULT_KEYS);
an error pveoci raised is kept as its type and message and raised again on replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from pveoci import errors
from pveoci.settings import SshSettings
from pveoci.ssh import SshConnector
from pveoci.testing.cassette import SSH_RESULT_KEYS
from pveoci.testing.log import RecordLog
from pveoci.testing.match import CassetteMismatch, Tape
from pveoci.testing.normalise import LocalValues
from pveoci.testing.scrub import strings


class SshTape(Protocol):
    replaying: bool

    def play(self, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The result entry for this request: from the real call (recording) or from the cassette (replay)."""

    def offstage(self) -> contextlib.AbstractContextManager[None]:
        """Recording: real SSH work that is not an entry of its own (a heartbeat, bytes of a stream) runs in this
        block, its own requests (a node's address) unrecorded: a replay makes none of them."""


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
    replaying = False

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

    def offstage(self) -> contextlib.AbstractContextManager[None]:
        return self.log.paused()


class ReplayTape:
    replaying = True

    def __init__(self, tape: Tape, local: LocalValues) -> None:
        self.tape = tape
        self.local = local

    def play(self, asked: dict[str, Any], real: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        entry = self.tape.take(strings(asked, self.local.normalise))
        result: dict[str, Any] = strings({k: v for k, v in entry.items() if k in SSH_RESULT_KEYS}, self.local.restore)
        return result

    @contextlib.contextmanager
    def offstage(self) -> Iterator[None]:
        yield

    def upcoming(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The first entry not used yet that `wanted` accepts (left unused)."""
        return self.tape.peek(wanted)

    def refuse(self, what: str) -> NoReturn:
        """Something asked for a node that the cassette cannot answer: the replay fails (even if it is caught)."""
        message = (f"{self.tape.name}: {what} outside the cassette's SSH entries: a replay reaches no node "
                   "(pveoci.testing does not cover this seam)")
        self.tape.problems.append(message)
        raise CassetteMismatch(message)


class NoNodes(SshConnector):
    """A replay's connector: no address, no connection; whatever asks for one fails the replay, naming it."""

    def __init__(self, settings: SshSettings, tape: ReplayTape) -> None:
        super().__init__(settings, {})
        self.tape = tape

    def target(self, node: str) -> NoReturn:
        self.tape.refuse(f"SSH to node '{node}'")

    def session(self, node: str) -> NoReturn:
        self.tape.refuse(f"SSH to node '{node}'")
