"""The local runner: programs for this node run here (through sudo unless root), others go to the remote runner."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.runner import ENTRY, LocalRunner
from tests.backends.fake_runner import FakeRunner, said


def local(remote: FakeRunner | None = None, *, sudo: bool = False) -> LocalRunner:
    return LocalRunner(lambda: "pve1", remote or FakeRunner(), sudo=sudo)


def test_this_node_s_programs_run_here_with_their_input_and_status() -> None:
    done = local().run("pve1", ["sh", "-c", 'cat; echo "$1" >&2; exit 3', "sh", "a b; $(x)"], stdin=b"in\0put")
    assert (done.status, done.stdout, done.stderr) == (3, b"in\0put", b"a b; $(x)\n")
    assert local().run(ENTRY, ["true"]).status == 0


def test_other_nodes_go_to_the_remote_runner() -> None:
    remote = FakeRunner().on("pct", answer=said(0, "remote"))
    assert local(remote).run("pve2", ["pct", "start", "105"]).stdout == b"remote"
    assert remote.calls == [("pve2", ["pct", "start", "105"])]


def test_a_missing_program_is_127_as_a_shell_says() -> None:
    done = local().run("pve1", ["pveoci-no-such-program"])
    assert done.status == 127
    assert b"not found" in done.stderr


def test_a_program_that_takes_too_long_is_a_timeout() -> None:
    with pytest.raises(errors.OperationTimeout):
        local().run("pve1", ["sleep", "5"], timeout=0.2)


def test_not_root_goes_through_sudo_without_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "sudo"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert local(sudo=True).run("pve1", ["pct", "list"]).stdout == b"-n\n--\npct\nlist\n"


def test_stream_copies_streams_without_a_descriptor_and_keeps_the_status() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    code = local().stream("pve1", ["sh", "-c", "cat; echo e >&2; exit 4"], stdin=io.BytesIO(b"x" * 200_000),
                          stdout=out, stderr=err)
    assert (code, len(out.getvalue()), err.getvalue()) == (4, 200_000, b"e\n")


def test_stream_gives_real_files_to_the_program(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with target.open("wb") as fh:
        assert local().stream("pve1", ["echo", "direct"], stdin=None, stdout=fh, stderr=None) == 0
    assert target.read_bytes() == b"direct\n"
