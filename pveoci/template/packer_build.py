"""Builds the packer (packer.c with zstd) for every architecture, reproducibly.

    python -m pveoci.template.packer_build            # writes pveoci/template/bin/packer-{amd64,arm64}
    python -m pveoci.template.packer_build --check    # builds into a temporary directory; exit 1 if it differs

As the init (pveoci/init/build.py): `zig cc` from the PyPI package ziglang at exactly its pinned
version, musl, static, stripped, no build-id, paths mapped away. zstd's source is the amalgamated
`zstd.c` that python-zstandard's source distribution carries, at the version whose zstd pveoci's
frames are compressed with (ZSTDANDARD below; checked by its SHA-256): the packer must make the bytes
python-zstandard makes, so both name a template alike. The sdist is fetched with pip (or taken from
PVEOCI_ZSTANDARD_SDIST, a local copy). zstd's licence is written beside the binaries.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pveoci.init import ARCHES
from pveoci.init.build import (
    SUMS,
    TARGETS,
    ZIG_VERSION,
    BuildError,
    Program,
    cli,
    compare,
    run_steps,
    sums_text,
    write_file,
    zig,
    zig_version,
)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "packer.c"
BIN_DIR = HERE / "bin"
LICENCE = "LICENSE.zstd"
ZSTANDARD = "0.25.0"           # python-zstandard whose bundled zstd (1.5.7) the packer compiles
ZSTANDARD_SHA256 = "7713e1179d162cf5c7906da876ec2ccb9c3a9dcbdffef0cc7f70c3667a205f0b"
ZSTD_FILES = ("zstd.c", "zstd.h", "zstd_errors.h", "zdict.h", "LICENSE")

COMMON = ["-O2", "-pthread", "-ffunction-sections", "-fdata-sections", "-fno-asynchronous-unwind-tables",
          "-fno-unwind-tables"]
ZSTD_FLAGS = ["-DZSTD_LEGACY_SUPPORT=0", "-w"]
PACKER_FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
LINK = ["-static", "-s", "-pthread", "-Wl,--gc-sections", "-Wl,--build-id=none"]


def _sdist(work: Path) -> Path:
    local = os.environ.get("PVEOCI_ZSTANDARD_SDIST")
    if local:
        path = Path(local)
    else:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                               ":all:", "--dest", str(work), f"zstandard=={ZSTANDARD}"],
                              capture_output=True, text=True, check=False)
        path = work / f"zstandard-{ZSTANDARD}.tar.gz"
        if proc.returncode != 0 or not path.exists():
            raise BuildError(f"cannot fetch the zstandard {ZSTANDARD} source distribution with pip: "
                             f"{proc.stderr.strip()[-500:]}")
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != ZSTANDARD_SHA256:
        raise BuildError(f"{path}: sha256 {found}, expected {ZSTANDARD_SHA256} (zstandard {ZSTANDARD})")
    return path


def _zstd_source(work: Path) -> None:
    with tarfile.open(_sdist(work)) as sdist:
        for name in ZSTD_FILES:
            member = sdist.extractfile(f"zstandard-{ZSTANDARD}/zstd/{name}")
            if member is None:
                raise BuildError(f"zstandard {ZSTANDARD}'s sdist has no zstd/{name}")
            (work / name).write_bytes(member.read())


def build(out_dir: Path) -> dict[str, bytes]:
    """Compiles the packer for every arch into out_dir (packer-<arch>, SHA256SUMS, zstd's licence)."""
    found = zig_version()
    if found != ZIG_VERSION:
        raise BuildError(f"zig {found} found, the packer is built with zig {ZIG_VERSION} "
                         f"(pip install ziglang=={ZIG_VERSION}): another version gives other bytes")
    with tempfile.TemporaryDirectory(prefix="pveoci-packer-") as tmp:
        work = Path(tmp)
        _zstd_source(work)
        (work / "packer.c").write_bytes(SOURCE.read_bytes())
        mapped = f"-ffile-prefix-map={work}=."
        steps = {arch: [
            zig("cc", "-target", TARGETS[arch], *COMMON, *PACKER_FLAGS, mapped, "-c", "packer.c",
                "-o", f"packer-{arch}.o"),
            zig("cc", "-target", TARGETS[arch], *COMMON, *ZSTD_FLAGS, mapped, "-c", "zstd.c", "-o", f"zstd-{arch}.o"),
            zig("cc", "-target", TARGETS[arch], *LINK, f"packer-{arch}.o", f"zstd-{arch}.o", "-o", f"packer-{arch}"),
        ] for arch in ARCHES}
        run_steps(steps, work)
        binaries = {arch: (work / f"packer-{arch}").read_bytes() for arch in ARCHES}
        licence = (work / "LICENSE").read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    for arch, data in binaries.items():
        write_file(out_dir / f"packer-{arch}", data, 0o755)
    write_file(out_dir / SUMS, sums_text(binaries, "packer").encode(), 0o644)
    write_file(out_dir / LICENCE, licence, 0o644)
    return binaries


def check(bin_dir: Path = BIN_DIR) -> list[str]:
    """Builds afresh and compares with the binaries in bin_dir: one line per difference."""
    return compare(PACKER, bin_dir)


def main(argv: list[str] | None = None) -> int:
    return cli(PACKER, argv, __doc__.split("\n")[0])


PACKER = Program("packer", "pveoci.template.packer_build", BIN_DIR, build,
                 f"zig {ZIG_VERSION}, zstandard {ZSTANDARD}")


if __name__ == "__main__":
    sys.exit(main())
