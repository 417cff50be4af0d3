"""The in-process harness (tests/harness.py) gives a command what a `pveoci` process would have, and leaves the
test's process as it found it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pveoci import errors, logs
from tests.harness import MemoryCli, invoke
from tests.runtime.conftest import tiny_bundle

PLAIN = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list", "--bogus"], ["template"], ["--version"]])
def test_a_call_prints_and_exits_as_the_process_does(args: list[str], tmp_path: Path) -> None:
    env = {**PLAIN, "PVEOCI_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.run([sys.executable, "-m", "pveoci", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    result = invoke(args, env=env)
    assert (result.code, result.out, result.err) == (proc.returncode, proc.stdout, proc.stderr)


def test_the_process_state_a_call_changes_is_put_back(tmp_path: Path) -> None:
    logger = logging.getLogger("pveoci")
    before = (list(logger.handlers), logger.level, logger.propagate, dict(os.environ), os.getcwd(),
              sys.excepthook, signal.getsignal(signal.SIGINT), set(logs._secrets))
    log = tmp_path / "pveoci.log"
    result = invoke(["--debug", "--log", str(log), "--token-id", "a@pve!b", "nodes"],
                    env={**PLAIN, "PVEOCI_CONFIG": str(tmp_path / "none.toml"), "PVEOCI_TOKEN_SECRET": "s3cret-value"},
                    cwd=tmp_path)
    assert result.code == 3, result.err  # no host
    assert "no API host" in log.read_text()
    after = (list(logger.handlers), logger.level, logger.propagate, dict(os.environ), os.getcwd(),
             sys.excepthook, signal.getsignal(signal.SIGINT), set(logs._secrets))
    assert after == before


def test_a_record_no_handler_takes_and_a_warning_reach_stderr(tmp_path: Path) -> None:
    # What a process prints (logging.lastResort, the warnings module) though pytest's handlers are installed.
    def noisy(settings: object, root: object) -> object:
        logging.getLogger("paramiko.transport").warning("a word from a library")
        logging.getLogger("paramiko.transport").info("not at this level")
        warnings.warn("a user warning", UserWarning, stacklevel=1)
        warnings.warn("not shown", DeprecationWarning, stacklevel=1)
        raise errors.NotFound("nothing here")

    result = invoke(["nodes"], env={**PLAIN, "PVEOCI_CONFIG": str(tmp_path / "none.toml")},
                    open_runtime=noisy)  # type: ignore[arg-type]
    lines = result.err.splitlines()
    assert lines[0] == "a word from a library"
    assert lines[1].endswith("UserWarning: a user warning")
    assert lines[-1] == "pveoci: error: nothing here"
    assert "not at this level" not in result.err
    assert "not shown" not in result.err


def test_the_runtimes_a_call_opens_are_closed(memory_cli: MemoryCli, tmp_path: Path) -> None:
    closed: list[bool] = []

    def close() -> None:
        closed.append(True)

    memory_cli.backend.close = close  # type: ignore[method-assign]
    bundle = tiny_bundle(tmp_path / "bundle")
    made = memory_cli("create", "-b", str(bundle), "--node", "pve1", "web")
    assert made.code == 0, made.err
    assert closed == [True]
    listed = memory_cli("list", "-o", "json")
    assert [(s["id"], s["status"], s["pveoci"]["node"]) for s in json.loads(listed.out)] == [
        ("web", "created", "pve1")]
    assert [ct.node for ct in memory_cli.backend.cts.values()] == ["pve1"]
    assert closed == [True, True]
