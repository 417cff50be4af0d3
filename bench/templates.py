"""Templates end to end against a one-node test bed (real sshd on loopback), on a real many-small-files tree.

Each figure against its baseline in the same run:
- create with a new rootfs vs `tar --sort=name | zstd -T0 -3 | ssh node 'cat > f'`;
- create with an unchanged rootfs (the template on the node) vs a stat walk of the tree (`find -printf`);
- create with an alike tree at a new path (a `cp -a` copy, as an engine's next container of one image or a
  colleague's copy) on a workstation that never packed it, vs the same stat walk;
- bytes sent after one 4 KiB file changed, vs the template's size.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import synth

FLOORS = {"create_new_ratio": 0.7, "create_unchanged_ratio": 0.3, "create_alike_ratio": 0.3,
          "delta_fraction_max": 0.05}


def _bundle(workdir: Path, tree: Path, name: str = "real-bundle") -> Path:
    bundle = workdir / name
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.2.0", "root": {"path": str(tree)},
        "process": {"args": ["/bin/app"], "cwd": "/", "env": ["PATH=/bin"]}}))
    return bundle


def _ssh_cat(bed: Any, tree: Path, target: str) -> float:
    """The baseline: GNU tar piped into zstd piped into OpenSSH's ssh, `cat` on the node."""
    ssh = (f"ssh -i {bed.client_key} -o UserKnownHostsFile={bed.known_hosts} -o StrictHostKeyChecking=yes "
           f"-o BatchMode=yes -p {bed.ssh_port} root@{bed.addresses['pve1']}")
    pipeline = f"tar --sort=name --numeric-owner -cf - . | zstd -q -T0 -3 | {ssh} 'cat > {target}'"
    started = time.perf_counter()
    subprocess.run(pipeline, shell=True, cwd=tree, check=True)  # noqa: S602 - our own fixed pipeline
    return time.perf_counter() - started


def _clean_node(bed: Any) -> None:
    for entry in bed.template_dir("pve1").iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def run(workdir: Path, rounds: int) -> dict[str, float]:
    from tests.testbed import Testbed

    tree = synth.real_tree(workdir / "real")
    bundle = _bundle(workdir, tree)
    entries = sum(1 for _ in tree.rglob("*"))
    size_mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink()) >> 20
    with Testbed(workdir / "bed", nodes=("pve1",)) as bed:
        new, unchanged, alike, fraction = _measure(bed, tree, bundle, workdir, rounds)
    print(f"templates: {size_mb} MiB tree of {entries} entries (/usr/share and /etc)")
    print(f"  create, new rootfs: tar|zstd|ssh cat {new[0]:.2f} s, pveoci {new[1]:.2f} s: "
          f"ratio {new[0] / new[1]:.2f}x (floor {FLOORS['create_new_ratio']}x)")
    print(f"  create, unchanged rootfs: stat walk {unchanged[0]:.3f} s, pveoci {unchanged[1]:.3f} s: "
          f"ratio {unchanged[0] / unchanged[1]:.2f}x (floor {FLOORS['create_unchanged_ratio']}x)")
    print(f"  create, an alike tree at a new path, on another workstation: stat walk {alike[0]:.3f} s, pveoci "
          f"{alike[1]:.3f} s: ratio {alike[0] / alike[1]:.2f}x (floor {FLOORS['create_alike_ratio']}x)")
    print(f"  after one 4 KiB file changed: {fraction * 100:.2f}% of the template sent "
          f"(most {FLOORS['delta_fraction_max'] * 100:.0f}%)")
    return {"create_new_ratio": new[0] / new[1], "create_unchanged_ratio": unchanged[0] / unchanged[1],
            "create_alike_ratio": alike[0] / alike[1], "delta_fraction": fraction}


def _measure(bed: Any, tree: Path, bundle: Path, workdir: Path,
             rounds: int) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]:
    import pveoci

    counter = [0]

    def create(cache: Path, source: Path = bundle) -> float:
        counter[0] += 1
        rt = pveoci.connect(config=bed.config_path, root=cache)
        started = time.perf_counter()
        rt.create(f"bench{counter[0]}", source, node="pve1")
        elapsed = time.perf_counter() - started
        rt.delete(f"bench{counter[0]}", force=True)
        rt.close()
        return elapsed

    def fresh() -> float:  # a workstation that never packed this tree, a node without the template
        _clean_node(bed)
        cache = workdir / f"cache-{time.monotonic_ns()}"
        os.environ["XDG_CACHE_HOME"] = str(cache / "xdg")
        return create(cache)

    def walk() -> float:
        started = time.perf_counter()
        subprocess.run(["find", str(tree), "-printf", "%s %T@ %C@ %i\n"], stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started

    target = f"{bed.template_dir('pve1')}/baseline.tar.zst"
    base_new, ours_new = [], []
    for _ in range(rounds):
        _clean_node(bed)
        base_new.append(_ssh_cat(bed, tree, target))
        ours_new.append(fresh())
    warm = workdir / "cache-warm"
    os.environ["XDG_CACHE_HOME"] = str(warm / "xdg")
    _clean_node(bed)
    create(warm)  # packs and uploads once; the template stays on the node
    base_walk, ours_same = [], []
    for _ in range(rounds):
        base_walk.append(walk())
        ours_same.append(create(warm))
    copy = workdir / "real-copy"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    copied = _bundle(workdir, copy, "copy-bundle")
    base_alike, ours_alike = [], []
    for _ in range(rounds):  # each round another workstation's first create of it: the storage's listing tells
        cache = workdir / f"cache-{time.monotonic_ns()}"
        os.environ["XDG_CACHE_HOME"] = str(cache / "xdg")
        base_alike.append(walk())
        uploads = len(list(bed.template_dir("pve1").glob("pveoci-*")))
        ours_alike.append(create(cache, copied))
        assert len(list(bed.template_dir("pve1").glob("pveoci-*"))) == uploads, "the alike tree was sent"
    shutil.rmtree(copy)
    fraction = _delta_fraction(bed, tree, bundle, warm)
    med = statistics.median
    return ((med(base_new), med(ours_new)), (med(base_walk), med(ours_same)), (med(base_alike), med(ours_alike)),
            fraction)


def _delta_fraction(bed: Any, tree: Path, bundle: Path, cache: Path) -> float:
    import pveoci

    victim = next(p for p in sorted(tree.rglob("*")) if p.is_file() and not p.is_symlink()
                  and 2048 <= p.stat().st_size <= 8192)
    victim.write_bytes(os.urandom(4096))
    with pveoci.connect(config=bed.config_path, root=cache) as rt:
        pushed = rt.templates.push(bundle, node="pve1")
    assert pushed.uploaded, "the changed tree was not sent"
    return pushed.bytes_sent / pushed.size


def below_floors(results: dict[str, float]) -> list[str]:
    out = []
    if results["create_new_ratio"] < FLOORS["create_new_ratio"]:
        out.append("create with a new rootfs")
    if results["create_unchanged_ratio"] < FLOORS["create_unchanged_ratio"]:
        out.append("create with an unchanged rootfs")
    if results["create_alike_ratio"] < FLOORS["create_alike_ratio"]:
        out.append("create with an alike tree at a new path")
    if results["delta_fraction"] > FLOORS["delta_fraction_max"]:
        out.append("bytes sent after a small change")
    return out
