"""Builds the init from init.c for every architecture, reproducibly.

    python -m pveoci.init.build            # writes pveoci/init/bin/init-{amd64,arm64} and SHA256SUMS
    python -m pveoci.init.build --out DIR  # the same into DIR
    python -m pveoci.init.build --check    # builds into a temporary directory; exit 1 if it differs

The compiler is `zig cc` from the PyPI package ziglang at exactly ZIG_VERSION (clang, lld and musl in
one wheel, for every host): the same version gives the same bytes on any machine. What could vary
between builds is kept out: the source is compiled by its relative name from a fresh temporary
directory (and -ffile-prefix-map maps that away too), the output is stripped, has no build-id, and
environment variables that clang reads (include paths) or that redirect zig's libc are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pveoci.init import ARCHES, VERSION

ZIG_VERSION = "0.17.1"          # keep in step with pyproject.toml's dev extra (ziglang==...)
HERE = Path(__file__).resolve().parent
SOURCE = HERE / "init.c"
BIN_DIR = HERE / "bin"
SUMS = "SHA256SUMS"

TARGETS = {"amd64": "x86_64-linux-musl", "arm64": "aarch64-linux-musl"}
CFLAGS = [
    "-std=c11", "-Os", "-static", "-s",
    "-Wall", "-Wextra", "-Werror",
    "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    "-Wl,--build-id=none",
]
# Read by clang or zig, and able to change the output.
_DROP_ENV = ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "LIBRARY_PATH", "ZIG_LIBC", "ZIG_LIB_DIR",
             "CCC_OVERRIDE_OPTIONS", "SOURCE_DATE_EPOCH")


class BuildError(Exception):
    pass


def zig(*args: str) -> list[str]:
    return [sys.executable, "-m", "ziglang", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _DROP_ENV}


def zig_version() -> str:
    try:
        proc = subprocess.run(zig("version"), capture_output=True, text=True, check=False, env=clean_env())
    except OSError as e:
        raise BuildError(f"cannot run zig: {e}") from e
    if proc.returncode != 0:
        raise BuildError(f"`python -m ziglang version` failed (pip install ziglang=={ZIG_VERSION}): "
                         f"{proc.stderr.strip()}")
    return proc.stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_steps(steps: dict[str, list[list[str]]], work: Path) -> None:
    """Each arch's commands in order, the arches side by side, in work; BuildError with the compiler's output."""
    failed = []
    pending = {arch: list(cmds) for arch, cmds in steps.items()}
    while pending:
        procs = {arch: subprocess.Popen(cmds.pop(0), cwd=work, env=clean_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                 for arch, cmds in pending.items()}
        for arch, proc in procs.items():
            output, _ = proc.communicate()
            if proc.returncode != 0:
                failed.append(f"{arch} ({TARGETS[arch]}):\n{output}")
        if failed:
            raise BuildError("zig cc failed for " + "\n".join(failed))
        pending = {arch: cmds for arch, cmds in pending.items() if cmds}


def build(out_dir: Path) -> dict[str, bytes]:
    """Compiles init.c for every arch into out_dir (init-<arch>, SHA256SUMS); returns the binaries."""
    found = zig_version()
    if found != ZIG_VERSION:
        raise BuildError(f"zig {found} found, the init is built with zig {ZIG_VERSION} "
                         f"(pip install ziglang=={ZIG_VERSION}): another version gives other bytes")
    binaries: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="pveoci-init-") as tmp:
        work = Path(tmp)
        shutil.copyfile(SOURCE, work / "init.c")
        run_steps({arch: [zig("cc", "-target", TARGETS[arch], *CFLAGS, f"-ffile-prefix-map={work}=.",
                              f'-DPVEOCI_INIT_VERSION="{VERSION}"', "init.c", "-o", f"init-{arch}")]
                   for arch in ARCHES}, work)
        for arch in ARCHES:
            binaries[arch] = (work / f"init-{arch}").read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    for arch, data in binaries.items():
        write_file(out_dir / f"init-{arch}", data, 0o755)
    write_file(out_dir / SUMS, sums_text(binaries).encode(), 0o644)
    return binaries


def sums_text(binaries: dict[str, bytes], name: str = "init") -> str:
    """SHA256SUMS as sha256sum(1) writes it (`sha256sum -c SHA256SUMS` checks the files)."""
    return "".join(f"{sha256(data)}  {name}-{arch}\n" for arch, data in sorted(binaries.items()))


def write_file(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


@dataclass(frozen=True)
class Program:
    """One of pveoci's static programs: built for every arch into <bin_dir>/<name>-<arch> and SHA256SUMS."""

    name: str
    module: str                                  # python -m <module> builds it
    bin_dir: Path
    build: Callable[[Path], dict[str, bytes]]
    pins: str                                    # what the bytes depend on, for the messages


def compare(program: Program, bin_dir: Path, built: dict[str, bytes] | None = None) -> list[str]:
    """Compares a fresh build (made here unless given) with the binaries in bin_dir: one line per difference."""
    if built is None:
        with tempfile.TemporaryDirectory(prefix=f"pveoci-{program.name}-check-") as tmp:
            built = program.build(Path(tmp))
    problems = []
    for arch, data in built.items():
        path = bin_dir / f"{program.name}-{arch}"
        committed = sha256(path.read_bytes()) if path.exists() else "(missing)"
        if committed != sha256(data):
            problems.append(f"{program.name}-{arch}: the committed binary differs from a fresh build: committed "
                            f"sha256 {committed}, built sha256 {sha256(data)}")
    sums = bin_dir / SUMS
    if not sums.exists() or sums.read_text() != sums_text(built, program.name):
        problems.append(f"{SUMS}: does not list the sha256 of a fresh build")
    return problems


def cli(program: Program, argv: list[str] | None, description: str) -> int:
    """`python -m <module> [--check] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {program.module}", description=description)
    parser.add_argument("--check", action="store_true",
                        help="build into a temporary directory and fail if the committed binaries differ")
    parser.add_argument("--out", type=Path, default=program.bin_dir,
                        help=f"where to write the binaries ({program.bin_dir})")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = compare(program, args.out)
            for line in problems:
                print(line, file=sys.stderr)
            if problems:
                print(f"rebuild with `python -m {program.module}` and commit "
                      f"{program.bin_dir.relative_to(HERE.parent.parent)}/", file=sys.stderr)
                return 1
            print(f"{program.name} binaries match a fresh build ({program.pins})")
            return 0
        binaries = program.build(args.out)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for arch, data in binaries.items():
        print(f"{args.out / f'{program.name}-{arch}'}: {len(data)} bytes, sha256 {sha256(data)}")
    return 0


INIT = Program("init", "pveoci.init.build", BIN_DIR, build, f"zig {ZIG_VERSION}")


def check(bin_dir: Path = BIN_DIR) -> list[str]:
    return compare(INIT, bin_dir)


def main(argv: list[str] | None = None) -> int:
    return cli(INIT, argv, __doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
