"""The commands as users run them: `pveoci ...` in a subprocess (interpreter start, imports, settings, TLS, SSH
login and all), against a one-node test bed with real LXC, each figure against its baseline in the same run.

- `pveoci --version` vs `python -c pass` (the same interpreter);
- `pveoci template push`, new rootfs, vs `tar --sort=name | zstd -T0 -3 | ssh node 'cat > f'`;
- `pveoci template push`, unchanged rootfs, vs a stat walk of the tree (`find -printf`);
- `pveoci kill` of a running container (a signal its process traps): wall time, target under 0.7 s, over
  paramiko (the default: a login per command) and over OpenSSH (`ssh.transport = "openssh"`: a master reused);
- `pveoci list` of 30 containers with an empty cache: the API requests it makes (the bed logs them).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import median_pair, synth
from bench.templates import _bundle, _clean_node, _ssh_cat

#: Floors: ratios at least, seconds and requests at most.
FLOORS = {"cmd_push_new_ratio": 0.9, "cmd_push_unchanged_ratio": 0.5}
MAXIMA = {"cmd_version_extra_s": 0.08, "cmd_kill_s": 0.7, "cmd_list_requests": 4}
LIST_COUNT = 30
# The command measured: this interpreter's, or another install's (PVEOCI_BENCH_COMMAND=/other/venv/bin/pveoci: the
# same figures for another version of pveoci, against the same bed).
PVEOCI = Path(os.environ.get("PVEOCI_BENCH_COMMAND") or Path(sys.executable).with_name("pveoci"))


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return took


def version(rounds: int) -> dict[str, float]:
    python = PVEOCI.with_name("python") if PVEOCI.with_name("python").exists() else Path(sys.executable)
    base, cand = median_pair(lambda: _timed([str(python), "-c", "pass"]),
                       lambda: _timed([str(PVEOCI), "--version"]), max(rounds, 7))
    print(f"  --version: python -c pass {base:.3f} s, pveoci --version {cand:.3f} s: {cand - base:+.3f} s "
          f"(at most +{MAXIMA['cmd_version_extra_s']:.2f} s)")
    return {"cmd_version_extra_s": cand - base}


PARTS = ("version", "push", "kill", "list")


def _as_installed() -> None:
    """pveoci's modules compiled, as pip leaves an installed package, and the commands free to write what they
    compile: with PYTHONDONTWRITEBYTECODE (a development shell's setting) each run would compile every module
    changed since the last, a cost no installed pveoci has."""
    import compileall

    import pveoci

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(Path(pveoci.__file__).parent, quiet=1)


def run(workdir: Path, rounds: int, only: tuple[str, ...] = PARTS) -> dict[str, float]:
    from tests.testbed import Testbed, parts

    print("commands, run as `pveoci ...` in a subprocess against a one-node bed:")
    _as_installed()
    results = version(rounds) if "version" in only else {}
    if not set(only) - {"version"}:
        return results
    missing = parts.missing_for_ssh() + parts.missing_for_lxc() + parts.missing_for_busybox()
    if missing:
        sys.exit("bench commands needs the test bed: " + ", ".join(missing) + " (as root; contrib/setup.sh)")
    with Testbed(workdir / "cmd-bed", nodes=("pve1",), lxc=True) as bed:
        if "push" in only:
            tree = synth.real_tree(workdir / "real")
            results.update(_push(bed, tree, _bundle(workdir, tree), workdir, rounds))
        if "kill" in only:
            results.update(_kill(bed, workdir, rounds))
        if "list" in only:
            results.update(_list(bed, workdir))
    return results


def _pveoci(bed: Any, root: Path, *args: str) -> float:
    return _timed([str(PVEOCI), "--root", str(root), *args], env=bed.env())


def _push(bed: Any, tree: Path, bundle: Path, workdir: Path, rounds: int) -> dict[str, float]:
    target = f"{bed.template_dir('pve1')}/baseline.tar.zst"

    def baseline_new() -> float:
        _clean_node(bed)
        return _ssh_cat(bed, tree, target)

    def push_new() -> float:  # a workstation that never packed this tree, a node without the template
        _clean_node(bed)
        root = workdir / f"cmd-cache-{time.monotonic_ns()}"
        try:
            return _timed([str(PVEOCI), "--root", str(root), "template", "push", "-b", str(bundle), "--node",
                           "pve1"], env=bed.env(XDG_CACHE_HOME=str(root / "xdg")))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    new = median_pair(baseline_new, push_new, rounds)
    warm = workdir / "cmd-cache-warm"
    shutil.rmtree(warm, ignore_errors=True)
    env = bed.env(XDG_CACHE_HOME=str(warm / "xdg"))
    _clean_node(bed)

    def walk() -> float:
        return _timed(["find", str(tree), "-printf", "%s %T@ %C@ %i\n"])

    def push_same() -> float:
        return _timed([str(PVEOCI), "--root", str(warm), "template", "push", "-b", str(bundle), "--node", "pve1"],
                      env=env)

    same = median_pair(walk, push_same, rounds)
    print(f"  template push, new rootfs: tar|zstd|ssh cat {new[0]:.2f} s, pveoci {new[1]:.2f} s: ratio "
          f"{new[0] / new[1]:.2f}x (floor {FLOORS['cmd_push_new_ratio']}x)")
    print(f"  template push, unchanged rootfs: stat walk {same[0]:.3f} s, pveoci {same[1]:.3f} s: ratio "
          f"{same[0] / same[1]:.2f}x (floor {FLOORS['cmd_push_unchanged_ratio']}x)")
    return {"cmd_push_new_ratio": new[0] / new[1], "cmd_push_unchanged_ratio": same[0] / same[1]}


def _kill(bed: Any, workdir: Path, rounds: int) -> dict[str, float]:
    """`kill` with the profile's SSH transport (paramiko: a login per command) and with OpenSSH's (its master
    connection, made by the `run` before, reused), interleaved."""
    from tests.testbed.bundle import make_busybox_bundle

    script = "trap 'echo usr1' USR1; while true; do sleep 1; done"
    bundle = make_busybox_bundle(workdir / "cmd-kill-bundle", args=["sh", "-c", script])
    root = workdir / "cmd-kill-cache"
    shutil.rmtree(root, ignore_errors=True)
    openssh = workdir / "cmd-openssh.toml"
    openssh.write_text(bed.config_path.read_text().replace("[profiles.bed.ssh]\n",
                                                           "[profiles.bed.ssh]\ntransport = \"openssh\"\n"))
    with_openssh = bed.env(PVEOCI_CONFIG=str(openssh))
    _pveoci(bed, root, "run", "-d", "-b", str(bundle), "--node", "pve1", "killme")
    try:
        requests_before = len(bed.pve.requests)
        _pveoci(bed, root, "kill", "killme", "USR1")
        requests = len(bed.pve.requests) - requests_before
        by_paramiko, by_openssh = median_pair(
            lambda: _pveoci(bed, root, "kill", "killme", "USR1"),
            lambda: _timed([str(PVEOCI), "--root", str(root), "kill", "killme", "USR1"], env=with_openssh),
            max(rounds, 5))
    finally:
        _pveoci(bed, root, "delete", "-f", "killme")
    print(f"  kill (USR1, trapped), median of {max(rounds, 5)}: {by_paramiko:.3f} s over paramiko (a login each), "
          f"{by_openssh:.3f} s over OpenSSH (its master reused); at most {MAXIMA['cmd_kill_s']} s; "
          f"{requests} API request(s)")
    return {"cmd_kill_s": by_paramiko, "cmd_kill_openssh_s": by_openssh}


def _list(bed: Any, workdir: Path) -> dict[str, float]:
    import pveoci

    bed.enable_lxc(False)  # 30 containers the API knows; their processes need not run for a list
    logging.getLogger("pveoci").setLevel(logging.ERROR)  # the bundle's findings, 30 times
    try:
        from tests.testbed.bundle import make_busybox_bundle

        bundle = make_busybox_bundle(workdir / "cmd-list-bundle")
        with pveoci.connect(config=bed.config_path, root=workdir / "cmd-list-maker") as rt:
            made = [f"l{i:02d}" for i in range(LIST_COUNT)]
            for cid in made:
                rt.create(cid, bundle, node="pve1")
            empty = workdir / f"cmd-list-{time.monotonic_ns()}"
            before = len(bed.pve.requests)
            took = _pveoci(bed, empty, "list")
            requests = len(bed.pve.requests) - before
            shutil.rmtree(empty, ignore_errors=True)
            for cid in made:
                rt.delete(cid, force=True)
    finally:
        bed.enable_lxc(True)
    print(f"  list of {LIST_COUNT} containers, empty cache: {requests} API requests, {took:.2f} s "
          f"(at most {MAXIMA['cmd_list_requests']} requests)")
    return {"cmd_list_requests": float(requests)}


def below_floors(results: dict[str, float]) -> list[str]:
    out = [name for name, floor in FLOORS.items() if name in results and results[name] < floor]
    return out + [name for name, most in MAXIMA.items() if name in results and results[name] > most]

