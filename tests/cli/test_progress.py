"""Progress bars: drawn on a terminal, silent otherwise."""

from __future__ import annotations

import io
import sys

import pytest

from pveoci.cli import progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.bar("uploading", 100) as advance:
        advance(50)
    assert err.getvalue() == ""


def test_draws_bytes_and_rate_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress.bar("uploading", 4 << 20) as advance:
        advance(2 << 20)
        advance(2 << 20)
    assert "uploading" in tty.getvalue()
    assert "MB" in tty.getvalue()
