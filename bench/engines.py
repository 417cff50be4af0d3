"""pveoci as an engine's runtime, against a one-node test bed with real LXC, each figure against its baseline in
the same run:

- `podman run --rm IMG true` through pveoci, the template on the node already, vs the same work done by pveoci's
  own `pveoci run -b BUNDLE ID` (the same rootfs, so the same template): the engine's cost on top;
- the stand-in's relay of a process's output (`head -c N /dev/zero`) to a file, end to end from `start` to the
  stand-in's exit, vs the same bytes over SSH (`ssh node head -c N /dev/zero > file`): MB/s and a ratio; floor
  50 MB/s;
- the stand-in's memory while it waits (VmRSS; its ssh child's apart).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import median_pair

FLOORS = {"engine_relay_mb_s": 50.0}
MAXIMA = {"engine_standin_rss_mb": 15.0}
RELAY_MB = 200


def run(workdir: Path, rounds: int) -> dict[str, float]:
    from tests.engines import podman as engine
    from tests.testbed import Testbed, parts

    missing = parts.missing_for_ssh() + parts.missing_for_lxc() + parts.missing_for_busybox() + engine.missing()
    if missing:
        sys.exit("bench engines needs the test bed and podman: " + ", ".join(missing) + " (as root; contrib/setup.sh)")
    print("engines: podman through pveoci, and the stand-in, against a one-node bed:")
    shutil.rmtree(workdir / "engine-bed", ignore_errors=True)
    with Testbed(workdir / "engine-bed", nodes=("pve1",), lxc=True) as bed:
        results = _relay(bed, workdir)
        podman = engine.start(bed, workdir / "engine-podman")
        try:
            results.update(_podman_run(bed, podman, workdir, rounds))
        finally:
            podman.close()
    return results


def _pveoci(bed: Any, workdir: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    env = bed.env(XDG_STATE_HOME=str(workdir / "engine-state"), PVEOCI_STAND_IN="1")
    return subprocess.run([sys.executable, "-m", "pveoci", *args], env=env, check=False, **kwargs)


def _relay(bed: Any, workdir: Path) -> dict[str, float]:
    from tests.testbed.bundle import make_busybox_bundle

    size = RELAY_MB * 1024 * 1024
    bundle = make_busybox_bundle(workdir / "engine-relay", args=["head", "-c", str(size), "/dev/zero"])
    out = workdir / "engine-relay.out"
    with out.open("wb") as sink:
        made = _pveoci(bed, workdir, "create", "--pid-file", str(workdir / "relay.pid"), "-b", str(bundle), "relay",
                       stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.DEVNULL)
    assert made.returncode == 0, "create failed"
    pid = int((workdir / "relay.pid").read_text())
    time.sleep(1)
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    started = time.perf_counter()
    assert _pveoci(bed, workdir, "start", "relay").returncode == 0
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        time.sleep(0.01)
    took = time.perf_counter() - started
    got = out.stat().st_size
    assert got == size, f"relayed {got} bytes of {size}"
    _pveoci(bed, workdir, "delete", "-f", "relay")
    copy_started = time.perf_counter()     # the same bytes over SSH, from the node to a file here
    with out.open("wb") as sink:
        subprocess.run([*_ssh(bed), f"head -c {size} /dev/zero"], stdout=sink, check=True)
    copy = time.perf_counter() - copy_started
    rate = size / took / 1e6
    print(f"  stand-in relay of {RELAY_MB} MiB: {took:.2f} s from start to its exit, {rate:.0f} MB/s (floor "
          f"{FLOORS['engine_relay_mb_s']:.0f}); the same bytes over SSH (`ssh node head -c`) {size / copy / 1e6:.0f} "
          f"MB/s: ratio {copy / took:.2f}x")
    print(f"  stand-in memory while it waits: {rss:.1f} MB (at most {MAXIMA['engine_standin_rss_mb']:.0f})")
    return {"engine_relay_mb_s": rate, "engine_relay_ratio": copy / took, "engine_standin_rss_mb": rss}


def _ssh(bed: Any) -> list[str]:
    return ["ssh", "-i", str(bed.client_key), "-o", f"UserKnownHostsFile={bed.known_hosts}", "-o",
            "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(bed.ssh_port),
            f"root@{bed.addresses['pve1']}"]


def _podman_run(bed: Any, podman: Any, workdir: Path, rounds: int) -> dict[str, float]:
    from tests.engines.podman import IMAGE
    from tests.testbed.bundle import make_busybox_bundle

    rootfs = workdir / "engine-podman" / "image" / "rootfs"
    bundle = make_busybox_bundle(workdir / "engine-own", args=["true"])
    shutil.rmtree(bundle / "rootfs")
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    count = iter(range(10**6))

    def own() -> float:
        started = time.perf_counter()
        done = _pveoci(bed, workdir, "run", "-b", str(bundle), f"own{next(count)}", stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert done.returncode == 0
        return time.perf_counter() - started

    def through_podman() -> float:
        started = time.perf_counter()
        done = podman("run", "--rm", "--network", "none", IMAGE, "true")
        assert done.returncode == 0, done.stderr
        return time.perf_counter() - started

    base, cand = median_pair(own, through_podman, rounds)
    print(f"  run of `true`, template present: pveoci run {base:.2f} s, podman run --rm through pveoci "
          f"{cand:.2f} s: ratio {base / cand:.2f}x")
    return {"engine_podman_run_ratio": base / cand}


def below_floors(found: dict[str, float]) -> list[str]:
    low = [name for name, floor in FLOORS.items() if name in found and found[name] < floor]
    return low + [name for name, top in MAXIMA.items() if name in found and found[name] > top]
