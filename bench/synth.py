"""A synthetic rootfs shaped like a real one: many small files, a few large ones, compressible content."""

from __future__ import annotations

import os
import random
from pathlib import Path

WORDS = [bytes(random.Random(i).choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(3 + i % 9)) for i in range(4096)]


def _content(rng: random.Random, size: int) -> bytes:
    """Text-like bytes (zstd -3 gets roughly 3:1, like binaries and text in real images) plus some noise."""
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.1:
            out += rng.randbytes(min(4096, size - len(out)))
        else:
            out += b" ".join(rng.choices(WORDS, k=512)) + b"\n"
    return bytes(out[:size])


def make(root: Path, total_mb: int = 500, seed: int = 1) -> Path:
    """About total_mb MiB in about total_mb * 12 files, under a usr/lib-like tree; reused if present."""
    marker = root / ".synth-done"
    if marker.exists() and marker.read_text() == f"{total_mb}:{seed}":
        return root
    rng = random.Random(seed)
    target = total_mb << 20
    written = 0
    n = 0
    while written < target:
        depth = rng.randint(1, 4)
        folder = root.joinpath(*[f"d{rng.randint(0, 40)}" for _ in range(depth)])
        folder.mkdir(parents=True, exist_ok=True)
        size = int(rng.paretovariate(1.2) * 4096) if rng.random() < 0.995 else rng.randint(2 << 20, 24 << 20)
        size = min(size, target - written) or 1
        path = folder / f"f{n}.so"
        path.write_bytes(_content(rng, size))
        if n % 50 == 0:
            (folder / f"l{n}").symlink_to(path.name)
        written += size
        n += 1
    for path in root.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    marker.write_text(f"{total_mb}:{seed}")
    return root


def real_tree(root: Path, min_mb: int = 500) -> Path:
    """A copy of this machine's /usr/share and /etc (tens of thousands of small files, as in real images), with
    a program at bin/app so a bundle can run it; reused if present."""
    import shutil
    import subprocess

    marker = root / ".real-done"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    (root / "usr").mkdir(parents=True)
    subprocess.run(["cp", "-a", "/usr/share", str(root / "usr")], check=True)
    subprocess.run(["cp", "-a", "/etc", str(root)], check=False)  # some files of /etc may not be readable
    (root / "bin").mkdir(exist_ok=True)
    app = root / "bin" / "app"
    app.write_bytes(b"#!/bin/sh\n")
    app.chmod(0o755)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) >> 20
    if size < min_mb:
        make(root / "pad", min_mb - size)  # a machine with a small /usr/share: topped up
    marker.write_text("done")
    return root
