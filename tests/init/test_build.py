"""The committed binaries are what init.c builds to, byte for byte, for both architectures."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pveoci import init as pinit
from pveoci.init import build
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
ELF_MACHINES = {"amd64": 62, "arm64": 183}       # EM_X86_64, EM_AARCH64
PT_DYNAMIC, PT_INTERP = 2, 3


@pytest.fixture
def zig() -> None:
    if importlib.util.find_spec("ziglang") is None:
        need([f"ziglang (pip install ziglang=={build.ZIG_VERSION}; in the dev extra)"])


def committed() -> dict[str, bytes]:
    return {arch: (build.BIN_DIR / f"init-{arch}").read_bytes() for arch in pinit.ARCHES}


def test_two_builds_are_identical_and_equal_to_the_committed_binaries(zig: None, tmp_path: Path) -> None:
    first = build.build(tmp_path / "a")
    second = build.build(tmp_path / "b")
    assert first == second
    assert first == committed()
    assert (tmp_path / "a" / "SHA256SUMS").read_bytes() == (build.BIN_DIR / "SHA256SUMS").read_bytes()
    for arch in pinit.ARCHES:
        assert (tmp_path / "a" / f"init-{arch}").stat().st_mode & 0o777 == 0o755


@pytest.mark.slow
def test_a_build_with_an_empty_zig_cache_is_identical(zig: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """zig builds musl for the target into its cache the first time: that must give the same bytes too."""
    monkeypatch.setenv("ZIG_GLOBAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZIG_LOCAL_CACHE_DIR", str(tmp_path / "cache"))
    assert build.build(tmp_path / "out") == committed()
    assert (tmp_path / "cache").is_dir()          # the empty cache was used


def test_check_passes_on_the_committed_binaries(zig: None) -> None:
    result = subprocess.run([sys.executable, "-m", "pveoci.init.build", "--check"], capture_output=True, text=True,
                            check=False, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr


def test_check_names_the_arch_and_both_digests(zig: None, tmp_path: Path) -> None:
    for path in build.BIN_DIR.iterdir():
        shutil.copy2(path, tmp_path / path.name)
    changed = bytearray((tmp_path / "init-arm64").read_bytes())
    changed[-1] ^= 1
    (tmp_path / "init-arm64").write_bytes(changed)
    result = subprocess.run([sys.executable, "-m", "pveoci.init.build", "--check", "--out", str(tmp_path)],
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 1
    assert "init-arm64" in result.stderr
    assert "init-amd64" not in result.stderr
    assert hashlib.sha256(changed).hexdigest() in result.stderr
    assert pinit.digest("arm64") in result.stderr
    assert (tmp_path / "init-arm64").read_bytes() == bytes(changed)      # --check writes nothing


def test_the_pinned_zig_is_the_dev_extra_s() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert f"ziglang=={build.ZIG_VERSION}" in dev


def test_sha256sums_lists_the_binaries() -> None:
    sums = (build.BIN_DIR / "SHA256SUMS").read_text()
    assert sums == "".join(f"{pinit.digest(arch)}  init-{arch}\n" for arch in sorted(pinit.ARCHES))


@pytest.mark.parametrize("arch", pinit.ARCHES)
def test_binaries_are_static_elf_executables_for_their_machine(arch: str) -> None:
    data = pinit.binary(arch)
    assert data[:4] == b"\x7fELF"
    assert (data[4], data[5]) == (2, 1)                       # 64-bit, little-endian
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert e_machine == ELF_MACHINES[arch]
    assert e_type == 2                                        # ET_EXEC: not position-independent, no loader
    e_phoff, = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    types = [struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)]
    assert PT_INTERP not in types
    assert PT_DYNAMIC not in types
    assert b"/tmp/" not in data
    assert str(ROOT).encode() not in data
    assert len(data) < 128 * 1024


def test_amd64_binary_runs_here() -> None:
    if build.TARGETS["amd64"].split("-")[0] != __import__("platform").machine():
        pytest.skip("not an x86_64 machine")
    result = subprocess.run([build.BIN_DIR / "init-amd64", "version"], capture_output=True, check=False)
    assert (result.returncode, result.stdout) == (0, pinit.VERSION.encode() + b"\n")


def test_arm64_binary_runs_under_qemu(tmp_path: Path) -> None:
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        pytest.skip("qemu-aarch64-static missing (Debian package qemu-user-static)")
    init = build.BIN_DIR / "init-arm64"
    version = subprocess.run([qemu, init, "version"], capture_output=True, check=False, timeout=60)
    assert (version.returncode, version.stdout, version.stderr) == (0, pinit.VERSION.encode() + b"\n", b"")
    # More than printing: argument parsing and the spec decoder, on arm64.
    usage = subprocess.run([qemu, init, "kill", "TERM"], capture_output=True, check=False, timeout=60)
    assert (usage.returncode, usage.stderr) == (1, b"pveoci-init: kill: TERM: not a signal number (0-64)\n")
    bad = subprocess.run([qemu, init, "set-spec"], input=b"PVEOCI-SPEC 1\nnope=1\0", capture_output=True,
                         check=False, timeout=60)
    assert (bad.returncode, bad.stderr) == (2, b'pveoci-init: set-spec: bad spec: unknown key "nope"\n')
