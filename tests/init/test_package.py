"""pveoci.init as pveoci uses it: architectures, the binaries as package data, the log format."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from pveoci import init as pinit


@pytest.mark.parametrize(("machine", "arch"), [
    ("x86_64", "amd64"), ("amd64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("X86_64\n", "amd64"),
])
def test_arch_for(machine: str, arch: str) -> None:
    assert pinit.arch_for(machine) == arch


@pytest.mark.parametrize("machine", ["armv7l", "riscv64", "i686", ""])
def test_arch_for_an_unsupported_machine(machine: str) -> None:
    with pytest.raises(ValueError, match="no pveoci init for machine"):
        pinit.arch_for(machine)


def test_binary_and_digest() -> None:
    for arch in pinit.ARCHES:
        data = pinit.binary(arch)
        assert data.startswith(b"\x7fELF")
        assert pinit.digest(arch) == hashlib.sha256(data).hexdigest()
    assert pinit.binary("amd64") != pinit.binary("arm64")
    with pytest.raises(ValueError, match="unknown init architecture"):
        pinit.binary("x86_64")


def test_paths() -> None:
    assert pinit.INIT_PATH == "/.pveoci/init"
    assert pinit.RUN_DIR == "/.pveoci/run"
    paths = [pinit.SPEC_PATH, pinit.STATE_PATH, pinit.PID_PATH, pinit.STATUS_PATH, pinit.LOG_PATH,
             pinit.FOLLOW_LOCK_PATH]
    assert paths == [f"/.pveoci/run/{name}" for name in ("spec", "state", "pid", "status", "log", "follow.lock")]
    assert pinit.START_SIGNAL == 40


def test_parse_log() -> None:
    data = b"\x01\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00" + b"\x02\x00\x00\x01\x00" + b"e" * 256
    assert pinit.parse_log(data) == [(1, b"out"), (2, b""), (2, b"e" * 256)]
    assert pinit.parse_log(b"") == []
    # A record still being written (header or data cut short) is left out.
    assert pinit.parse_log(data + b"\x01\x00\x00\x00\x09part") == pinit.parse_log(data)
    assert pinit.parse_log(data + b"\x01\x00") == pinit.parse_log(data)
    with pytest.raises(ValueError, match="stream 3 at offset 8"):
        pinit.parse_log(b"\x01\x00\x00\x00\x03out\x03\x00\x00\x00\x00")


def test_importing_it_is_light() -> None:
    code = ("import sys; import pveoci.init; "
            "print(sorted(m for m in ('hashlib', 'importlib.resources', 'subprocess') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
