"""The committed static programs (the init, the packer) are what their sources build to, byte for byte, for both
architectures; each program is built as few times as its checks need."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pveoci import init as pinit
from pveoci.init import build
from tests.init.builds import Builds

ROOT = Path(__file__).resolve().parents[2]
ELF_MACHINES = {"amd64": 62, "arm64": 183}       # EM_X86_64, EM_AARCH64
PT_DYNAMIC, PT_INTERP = 2, 3


def built(folder: Path, name: str = "init") -> dict[str, bytes]:
    return {arch: (folder / f"{name}-{arch}").read_bytes() for arch in pinit.ARCHES}


def committed() -> dict[str, bytes]:
    return built(build.BIN_DIR)


# The build tests wait for the builds of the run, which take minutes on a busy machine.
BUILD_WAIT = pytest.mark.timeout(3600)


@pytest.fixture
def init_builds(static_builds: Builds) -> tuple[Path, Path]:
    """The init's two builds of this run: with an empty zig cache, then with the cache the first one filled."""
    for name in ("init-a", "init-b"):
        result = static_builds.wait(name)
        assert result.returncode == 0, result.stderr
    return static_builds.folder("init-a"), static_builds.folder("init-b")


@BUILD_WAIT
def test_two_builds_are_identical_and_equal_to_the_committed_binaries(init_builds: tuple[Path, Path],
                                                                      static_builds: Builds) -> None:
    """One build with an empty zig cache (zig builds musl for the target into it first), one with the warm cache:
    the same bytes, the committed ones."""
    assert static_builds.cache_filled_by_first_build       # the empty cache was used
    first, second = init_builds
    assert built(first) == built(second)
    assert built(first) == committed()
    assert (first / "SHA256SUMS").read_bytes() == (build.BIN_DIR / "SHA256SUMS").read_bytes()
    for arch in pinit.ARCHES:
        assert (first / f"init-{arch}").stat().st_mode & 0o777 == 0o755


def check_cli(program: build.Program, made: Path, argv: list[str],
              capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`python -m <program> --check ...` run in-process, its fresh build being the one this session made."""
    def reuse(out_dir: Path) -> dict[str, bytes]:
        return built(made, program.name)

    code = build.cli(dataclasses.replace(program, build=reuse), argv, "check")
    out, err = capsys.readouterr()
    return code, out, err


@BUILD_WAIT
def test_check_passes_on_the_committed_binaries(init_builds: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check_cli(build.INIT, init_builds[1], ["--check"], capsys)
    assert (code, err) == (0, "")
    assert out == f"init binaries match a fresh build (zig {build.ZIG_VERSION})\n"


@BUILD_WAIT
def test_check_names_the_arch_and_both_digests(init_builds: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for path in build.BIN_DIR.iterdir():
        shutil.copy2(path, tmp_path / path.name)
    changed = bytearray((tmp_path / "init-arm64").read_bytes())
    changed[-1] ^= 1
    (tmp_path / "init-arm64").write_bytes(changed)
    code, _, err = check_cli(build.INIT, init_builds[1], ["--check", "--out", str(tmp_path)], capsys)
    assert code == 1
    assert "init-arm64" in err
    assert "init-amd64" not in err
    assert hashlib.sha256(changed).hexdigest() in err
    assert pinit.digest("arm64") in err
    assert (tmp_path / "init-arm64").read_bytes() == bytes(changed)      # --check writes nothing


@BUILD_WAIT
def test_the_packer_check_command_passes(static_builds: Builds) -> None:
    """`python -m pveoci.template.packer_build --check`, as the README gives it: the packer built afresh (no other
    test builds it) is the committed binaries, byte for byte."""
    result = static_builds.wait("packer-check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("packer binaries match a fresh build (zig ")


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
