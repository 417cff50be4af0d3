"""What a program run over paramiko printed reaches the caller whole, however sshd orders the end of a session."""

from __future__ import annotations

import io
import itertools
import socket
from collections.abc import Iterator

import pytest

from pveoci.ssh import paramiko_session
from pveoci.ssh.paramiko_session import _pump


class ScriptedChannel:
    """A paramiko channel whose events arrive one per poll (select), in the order a test gives."""

    def __init__(self, *rounds: tuple[str, bytes]) -> None:
        self._rounds = list(rounds)
        self._ours, self._peer = socket.socketpair()
        self._peer.send(b"!")               # always readable: select returns at once, the script sets the pace
        self.out, self.err = bytearray(), bytearray()
        self.status = False
        self.eof_received = False

    def fileno(self) -> int:                # select asks it once a round: the next event arrives
        if self._rounds:
            kind, data = self._rounds.pop(0)
            if kind == "out":
                self.out += data
            elif kind == "err":
                self.err += data
            elif kind == "status":
                self.status = True
            elif kind == "eof":
                self.eof_received = True
        return self._ours.fileno()

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, size: int) -> bytes:
        data, self.out = bytes(self.out[:size]), self.out[size:]
        return data

    def recv_stderr(self, size: int) -> bytes:
        data, self.err = bytes(self.err[:size]), self.err[size:]
        return data

    def exit_status_ready(self) -> bool:
        return self.status

    def close(self) -> None:
        self._ours.close()
        self._peer.close()


@pytest.fixture
def ticking() -> Iterator[float]:
    return itertools.count(0.0, 0.25)


def test_output_that_arrives_after_the_exit_status_is_kept(ticking: Iterator[float]) -> None:
    channel = ScriptedChannel(("out", b"first "), ("status", b""), ("out", b"last"), ("err", b"late err"),
                              ("eof", b""))
    out, err = io.BytesIO(), io.BytesIO()
    _pump(channel, out, err, clock=lambda: next(ticking))
    channel.close()
    assert (out.getvalue(), err.getvalue()) == (b"first last", b"late err")


def test_output_held_open_by_a_process_left_behind_ends_once_quiet(ticking: Iterator[float]) -> None:
    """No EOF comes (a background process keeps the output open): the pump returns after DRAIN_QUIET of silence."""
    channel = ScriptedChannel(("out", b"done"), ("status", b""), ("out", b" more"),
                              *[("idle", b"")] * 100)
    out = io.BytesIO()
    _pump(channel, out, None, clock=lambda: next(ticking))
    left = len(channel._rounds)
    channel.close()
    assert out.getvalue() == b"done more"
    quiet_rounds = 100 - left
    assert quiet_rounds <= paramiko_session.DRAIN_QUIET / 0.25 + 2   # it stopped soon after the silence began
