"""Benchmarks, each against a baseline measured in the same run; results are ratios (higher is better).

  python -m bench pack     # pveoci's packer vs `tar --sort=name | zstd -T0 -3` on a ~500 MB synthetic rootfs
  python -m bench upload   # pveoci's SFTP upload vs OpenSSH `sftp` to the same local sshd (needs root)
  python -m bench env      # template bytes re-sent when only the process's env changes (baseline: the template)
  python -m bench templates  # create with a new / unchanged / alike rootfs, and a delta, on a real tree (root)
  python -m bench commands  # the same as users run them: `pveoci ...` in a subprocess (needs root)
  python -m bench engines   # podman through pveoci vs pveoci's own run; the stand-in's relay and memory (root)
  python -m bench images    # template push --image of a real 3-layer image vs skopeo copy + tar x + tar|zstd|ssh;
                            # a second create of the same image: registry requests and bytes sent (root)
  python -m bench all
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import median_pair, synth

Timing = Callable[[], float]


PACK_FLOOR = 0.8


def bench_pack(workdir: Path, size_mb: int, rounds: int, tree: str = "synthetic") -> dict[str, float]:
    from pveoci.template.pack import pack

    root = synth.real_tree(workdir / "real") if tree == "real" else synth.make(workdir / f"rootfs-{size_mb}",
                                                                                 size_mb)
    out = workdir / "out"
    out.mkdir(exist_ok=True)

    def gnu() -> float:
        start = time.perf_counter()
        pipeline = f"tar --sort=name --numeric-owner -cf - . | zstd -q -T0 -3 -f -o {out}/gnu.tar.zst"
        subprocess.run(pipeline, shell=True, cwd=root, check=True)  # noqa: S602 - our own fixed pipeline
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        packed = pack(root, out)
        elapsed = time.perf_counter() - start
        packed.path.unlink()
        return elapsed

    base, cand = median_pair(gnu, ours, rounds)
    files = sum(1 for _ in root.rglob("*"))
    print(f"pack ({tree} tree, {files} entries): tar|zstd {base:.2f} s, pveoci {cand:.2f} s "
          f"(frames hashed, file hashed): ratio {base / cand:.2f}x (floor {PACK_FLOOR}x)")
    return {f"pack_{tree}_ratio": base / cand}


def bench_upload(workdir: Path, size_mb: int, rounds: int) -> dict[str, float]:
    from pveoci.settings import SshSettings
    from pveoci.ssh import SshConnector
    from pveoci.template.sftp import sftp_put
    from tests.testbed.sshd import NodeSshd, keygen

    if os.geteuid() != 0:
        sys.exit("bench upload needs root (it runs its own sshd)")
    key = workdir / "id_ed25519"
    if not key.exists():
        keygen(key, "bench")
    authorized = workdir / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    target = workdir / "target"
    target.mkdir(exist_ok=True)
    sshd = NodeSshd(node="bench", address="127.0.99.7", port=2299, workdir=workdir / "sshd",
                    storage_dir=target, mount_target=target, authorized_keys=authorized)
    sshd.start()
    try:
        known = workdir / "known_hosts"
        known.write_text(sshd.known_hosts_line())
        payload = workdir / "payload.bin"
        if not payload.exists() or payload.stat().st_size != size_mb << 20:
            with payload.open("wb") as fh:
                for _ in range(size_mb):
                    fh.write(os.urandom(1 << 20))
        settings = SshSettings(user="root", port=2299, agent=False, key_files=[key], known_hosts=known)
        connector = SshConnector(settings, {"bench": "127.0.99.7"})

        def openssh() -> float:
            start = time.perf_counter()
            subprocess.run(["sftp", "-q", "-b", "-", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
                            "-o", "StrictHostKeyChecking=yes", "-P", "2299", "root@127.0.99.7"],
                           input=f"put {payload} {target}/openssh.bin\n".encode(), check=True,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - start

        def ours() -> float:
            start = time.perf_counter()
            sftp_put(connector.session("bench"), payload, f"{target}/pveoci.bin")
            connector.close_all()
            return time.perf_counter() - start

        base, cand = median_pair(openssh, ours, rounds)
    finally:
        sshd.stop()
    print(f"upload: {size_mb} MiB over loopback; OpenSSH sftp {size_mb / base:.0f} MiB/s, "
          f"pveoci {size_mb / cand:.0f} MiB/s: ratio {base / cand:.2f}x (connection set-up included in both)")
    return {"upload_ratio": base / cand}


def bench_env_change(workdir: Path, size_mb: int) -> dict[str, float]:
    """Create from a bundle, change only its process's env, create again: what the second create sends."""
    import json

    from pveoci.backends.memory import MemoryBackend
    from pveoci.cache import Cache
    from pveoci.runtime import Runtime
    from pveoci.settings import Profile, Settings

    root = synth.make(workdir / f"rootfs-{size_mb}", size_mb)
    (root / "bin").mkdir(exist_ok=True)
    program = root / "bin" / "app"
    program.write_bytes(b"#!/bin/sh\n")
    program.chmod(0o755)
    bundles = []
    for mode in ("one", "two"):
        bundle = workdir / f"env-{mode}"
        bundle.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps({
            "ociVersion": "1.2.0", "root": {"path": str(root)},
            "process": {"args": ["/bin/app"], "cwd": "/", "env": ["PATH=/bin", f"MODE={mode}"]}}))
        bundles.append(bundle)
    backend = MemoryBackend()
    rt = Runtime(backend, Cache(workdir / "env-cache"), Settings(Profile(name="bench"), workdir / "none.toml"))
    first = rt.create("env-one", bundles[0])
    rt.create("env-two", bundles[1])
    template_bytes = next(iter(backend.template_files.values()))[first.template.split("/")[1]]
    resent = (len(backend.uploads) - 1) * template_bytes
    print(f"env: {size_mb} MiB rootfs, template {template_bytes / 2**20:.1f} MiB; bytes re-sent after an env-only "
          f"change: {resent} ({len(backend.uploads)} upload in all)")
    rt.close()
    return {"env_change_bytes": float(resent)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("pack", "upload", "env", "templates", "commands", "engines",
                                                "images", "all"))
    parser.add_argument("--size", type=int, default=500, help="MiB of data (default 500)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="commands: a comma-separated subset of "
                        "version,push,kill,list")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "pveoci-bench")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}
    if args.which in ("pack", "all"):
        results.update(bench_pack(args.dir, args.size, args.rounds, "synthetic"))
        results.update(bench_pack(args.dir, args.size, args.rounds, "real"))
    if args.which in ("upload", "all"):
        results.update(bench_upload(args.dir, args.size, args.rounds))
    if args.which in ("env", "all"):
        results.update(bench_env_change(args.dir, args.size))
    failed = [name for name, value in results.items() if name.startswith("pack_") and value < PACK_FLOOR]
    if args.which in ("templates", "all"):
        from bench import templates

        found = templates.run(args.dir, args.rounds)
        failed += templates.below_floors(found)
    if args.which in ("commands", "all"):
        from bench import commands

        only = tuple(p for p in args.only.split(",") if p) or commands.PARTS
        unknown = set(only) - set(commands.PARTS)
        if unknown:
            parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
        found = commands.run(args.dir, args.rounds, only)
        failed += commands.below_floors(found)
    if args.which in ("engines", "all"):
        from bench import engines

        failed += engines.below_floors(engines.run(args.dir, args.rounds))
    if args.which in ("images", "all"):
        from bench import images

        failed += images.below_floors(images.run(args.dir, args.rounds))
    if failed:
        print("below the floor: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
