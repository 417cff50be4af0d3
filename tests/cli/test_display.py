"""Progress: one display on a terminal (a step line, a bar per transfer, real totals in MiB); silent otherwise."""

from __future__ import annotations

import io
import re
import sys

import pytest

from pveoci.cli.display import TerminalProgress, describe, display


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with display() as shown:
        shown.note("packing")
        shown.transfer("uploading", 100)(50)
        shown.done("uploading")
    assert err.getvalue() == ""


def test_one_display_shows_the_step_and_each_transfer_with_its_total_in_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with display() as shown:
        assert isinstance(shown, TerminalProgress)
        shown.note("template for ./hello on pve1")
        pack = shown.transfer("packing", 6 << 20)
        pack(3 << 20)
        pack(3 << 20)
        shown._display.refresh()
        shown.done("packing")
        upload = shown.transfer("uploading", 4 << 20)
        upload(4 << 20)
        drawing = shown._display
        assert len(drawing.tasks) == 2  # the step and the one live transfer: no second display, no stale bar
        upload_text = describe("bytes", 4 << 20, 4 << 20, None)
        shown.done("uploading")
    drawn = tty.getvalue()
    assert "template for ./hello on pve1" in drawn
    assert re.search(r"6\.0/6\.0 MiB", drawn)
    assert upload_text == "4.0/4.0 MiB"


def test_describe_writes_binary_units() -> None:
    assert describe("bytes", 1.5 * 1024 ** 2, 10 * 1024 ** 2, 2 * 1024 ** 2) == "1.5/10.0 MiB  2.0 MiB/s"
    assert describe("step", 1, 2, 3) == ""
