"""What can be checked here is checked before the cluster is asked anything: with a dead API host, a bad bundle,
flag or setting fails at once with its own error, not "cannot reach the Proxmox API" seconds later."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from pveoci.cli.main import main
from pveoci.oci.defaults import default_spec
from tests.guards import fifo_released_after, memory_cap

DEAD = "127.0.0.254"  # nothing listens there: a request would be refused, after retries, in seconds


# A dead host costs seconds (connection refused, retried with backoff); the checks cost milliseconds of CPU.
# `dialled` is the exact test (no connection at all); the CPU bound holds on a loaded machine too.
QUICK = 1.0


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """What the commands import lazily, imported before the clock starts."""
    import importlib

    for name in ("pveoci.connect", "pveoci.runtime.create", "pveoci.backends.api", "pveoci.pve.client",
                 "pveoci.cache", "pveoci.cli.display", "pveoci.template.pack", "requests", "proxmoxer"):
        importlib.import_module(name)


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection pveoci tries to open: none may be."""
    tried: list[object] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        tried.append(address)
        real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile whose API host is dead; the state directory inside the test's own."""
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.default]\nhost = "{DEAD}"\nport = 1\ntoken_id = "pveoci@pve!t"\n')
    monkeypatch.setenv("PVEOCI_CONFIG", str(config))
    monkeypatch.setenv("PVEOCI_TOKEN_SECRET", "not-used")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in [n for n in os.environ if n.startswith("PVEOCI_") and n not in ("PVEOCI_CONFIG",
                                                                                "PVEOCI_TOKEN_SECRET")]:
        monkeypatch.delenv(name)
    return config


def bundle_at(path: Path, doc: dict[str, Any] | None = None) -> Path:
    (path / "rootfs" / "bin").mkdir(parents=True)
    (path / "rootfs" / "bin" / "sh").write_bytes(b"#!/bin/sh\n")
    (path / "rootfs" / "bin" / "sh").chmod(0o755)
    (path / "config.json").write_text(json.dumps(default_spec() if doc is None else doc))
    return path


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, float]:
    """The exit code, the error line, and the CPU time it took."""
    began = time.process_time()
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    took = time.process_time() - began
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("pveoci: error: "), err
    return int(caught.value.code or 0), err.removeprefix("pveoci: error: ").rstrip("\n"), took


@pytest.mark.parametrize("command", [["create"], ["run", "-d"], ["run"], ["template", "push"]])
def test_a_missing_bundle_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                  capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    ids = [] if command == ["template", "push"] else ["web"]
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), *command, "-b", str(tmp_path / "nope"),
                                *ids)
    assert (code, message) == (18, f"bundle {tmp_path / 'nope'} does not exist")
    assert dialled == []
    assert took < QUICK


@pytest.mark.parametrize(("config", "words"), [
    (b"{", "not valid JSON at line 1 column 2"),
    (b'{"ociVersion": "1.3.0", "process": {"args": ["sh"], "cwd": "/", "env": ["A=\\ud800"]}, '
     b'"root": {"path": "rootfs"}}', "process.env[0]: not valid Unicode"),
])
def test_a_bad_config_json_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                   capsys: pytest.CaptureFixture[str], config: bytes,
                                                   words: str) -> None:
    bundle = bundle_at(tmp_path / "b")
    (bundle / "config.json").write_bytes(config)
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), "create", "-b", str(bundle), "web")
    assert code == 18
    assert words in message
    assert dialled == []
    assert took < QUICK


def test_a_config_json_fifo_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle = bundle_at(tmp_path / "b")
    (bundle / "config.json").unlink()
    os.mkfifo(bundle / "config.json")
    code, message, _ = fails(capsys, "--root", str(tmp_path / "root"), "run", "-d", "-b", str(bundle), "web")
    assert (code, message) == (18, f"cannot read {bundle}/config.json: it is not a regular file (a FIFO)")
    assert dialled == []


@pytest.mark.parametrize(("spec_change", "words"), [
    ({"args": ["nginx"]}, "process.args[0]: 'nginx' is not an executable file in the rootfs"),
    ({"oomScoreAdj": 5000}, "process: oomScoreAdj out of range: 5000"),
])
def test_a_bundle_that_cannot_run_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                          capsys: pytest.CaptureFixture[str],
                                                          spec_change: dict[str, Any], words: str) -> None:
    doc = default_spec()
    doc["process"].update(spec_change)
    bundle = bundle_at(tmp_path / "b", doc)
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), "create", "-b", str(bundle), "web")
    assert code == 19
    assert message.startswith(words)
    assert dialled == []
    assert took < QUICK


def test_out_of_range_resources_fail_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = default_spec()
    doc["linux"]["resources"] = {"memory": {"limit": -5}}
    bundle = bundle_at(tmp_path / "b", doc)
    code, message, _ = fails(capsys, "--root", str(tmp_path / "root"), "run", "-d", "-b", str(bundle), "web")
    assert (code, message) == (19, "linux.resources.memory.limit: -5 is not a number of bytes "
                                   "(-1 is unlimited, 0 unset)")
    assert dialled == []


@pytest.mark.parametrize("command", [["create", "--transport", "bogus"], ["run", "-d", "--transport", "bogus"],
                                     ["template", "push", "--transport", "bogus"]])
def test_an_unknown_transport_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                      capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    bundle = bundle_at(tmp_path / "b")
    ids = [] if command[0] == "template" else ["web"]
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), *command, "-b", str(bundle), *ids)
    assert (code, message) == (3, "unknown transport 'bogus' (one of: sftp, api)")
    assert dialled == []
    assert took < QUICK


@pytest.mark.parametrize(("value", "words"), [("abc", "'abc' must look like 9000-9099"),
                                              ("9999-9000", "'9999-9000' must be FIRST-LAST with FIRST <= LAST")])
def test_a_bad_vmid_range_fails_before_the_network(profile: Path, tmp_path: Path, dialled: list[object],
                                                  capsys: pytest.CaptureFixture[str], value: str, words: str) -> None:
    profile.write_text(profile.read_text() + f'vmid_range = "{value}"\n')
    bundle = bundle_at(tmp_path / "b")
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), "create", "-b", str(bundle), "web")
    assert code == 3
    assert message.startswith(f"invalid settings (profile 'default'): vmid_range: {words}")
    assert dialled == []
    assert took < QUICK


@pytest.mark.parametrize("root_flag", [True, False])
def test_list_without_a_host_leaves_no_cache_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], root_flag: bool) -> None:
    monkeypatch.setenv("PVEOCI_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in [n for n in os.environ if n.startswith("PVEOCI_") and n != "PVEOCI_CONFIG"]:
        monkeypatch.delenv(name)
    root = ["--root", str(tmp_path / "root")] if root_flag else []
    code, message, _ = fails(capsys, *root, "list")
    assert (code, message) == (3, f"no API host for profile 'default': set host in {tmp_path / 'none.toml'}, "
                                  "PVEOCI_HOST or --host")
    assert not (tmp_path / "root").exists()
    assert not (tmp_path / "state").exists()


# --- exec --process FILE: read as config.json is, but a pipe too (`-p /dev/stdin`, `-p <(jq ...)`) ---


def test_exec_process_from_dev_zero_is_refused_without_reading_it(profile: Path, tmp_path: Path,
                                                                   dialled: list[object],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with memory_cap():  # 0.2 read it until no memory was left
        code, message, _ = fails(capsys, "--root", str(tmp_path / "root"), "exec", "-p", "/dev/zero", "web")
    assert (code, message) == (18, "cannot read /dev/zero: it is not a regular file (a character device)")
    assert dialled == []


def test_exec_process_from_a_fifo_nobody_writes_ends_at_once(profile: Path, tmp_path: Path, dialled: list[object],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "process.json"
    os.mkfifo(fifo)
    began = time.monotonic()
    with fifo_released_after(fifo, 10.0):  # 0.2 waited for a writer forever (here: until the guard writes)
        code, message, _ = fails(capsys, "--root", str(tmp_path / "root"), "exec", "-p", str(fifo), "web")
    assert time.monotonic() - began < 10.0
    assert (code, message) == (18, f"{fifo}: not valid JSON at line 1 column 1: Expecting value")
    assert dialled == []


@pytest.mark.parametrize(("text", "words"), [
    ('{"args": ["sh"], "cwd": "/", "user": {"uid": ' + "9" * 5000 + ', "gid": 0}}', "a number of 5000 digits"),
    ('{"args": ["sh", "\\ud800"], "cwd": "/"}', "args[1]: not valid Unicode"),
])
def test_exec_process_that_python_cannot_carry_is_a_bundle_error(profile: Path, tmp_path: Path,
                                                                 dialled: list[object],
                                                                 capsys: pytest.CaptureFixture[str], text: str,
                                                                 words: str) -> None:
    process = tmp_path / "process.json"
    process.write_text(text)
    code, message, _ = fails(capsys, "--root", str(tmp_path / "root"), "exec", "-p", str(process), "web")
    assert code == 18
    assert words in message
    assert dialled == []


def test_plan_of_a_bundle_that_cannot_run_fails_before_the_network(profile: Path, tmp_path: Path,
                                                                   dialled: list[object],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    doc = default_spec()
    doc["linux"]["resources"] = {"cpu": {"cpus": "0-99999999999"}}
    bundle = bundle_at(tmp_path / "b", doc)
    code, message, took = fails(capsys, "--root", str(tmp_path / "root"), "plan", "-b", str(bundle))
    assert code == 19
    assert message.startswith("linux.resources.cpu.cpus: '0-99999999999' names a CPU above 8191")
    assert dialled == []
    assert took < QUICK
