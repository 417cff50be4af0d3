"""The real init (pveoci/init/bin/init-amd64) as PID 1 of a new PID and mount namespace, chrooted into a
busybox rootfs: what a container gives it, without LXC.

`boot(spec)` starts it and returns once it waits for the start signal; `Init.run(...)` runs a command in
its namespaces and root (what `pct exec` does); files under `Init.run_dir` are its state, seen from the
host (not on a read-only rootfs, where they live in a tmpfs of its mount namespace).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pveoci import init as pinit
from pveoci.process import ProcessSpec, encode, encode_arg
from tests.conftest import need
from tests.testbed import parts

APPLETS = ("sh", "cat", "id", "sleep", "env", "echo", "grep", "pwd", "ls", "readlink", "kill", "true", "seq",
           "test", "touch", "wc")
ENV = ("PATH=/bin", "HOME=/", "WITH_SPACE=a b  c", "EMPTY=")
TIMEOUT = 15.0

# Runs in the new namespaces as root, before the init: a read-only rootfs if asked, /dev/null (when the
# rootfs has the file to mount it on) and /proc, as LXC would. "$@" is the rest: [wrapper...] chroot ...
WRAPPER = r"""
set -e
root=$1; ro=$2; shift 2
if [ "$ro" = 1 ]; then mount --bind "$root" "$root"; mount -o remount,bind,ro "$root"; fi
if [ -e "$root/dev/null" ]; then mount --bind /dev/null "$root/dev/null"; fi
mount -t proc proc "$root/proc"
exec "$@"
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes a minute or so; still runs by default")


def need_namespaces() -> None:
    missing = [] if os.geteuid() == 0 else ["root (for chroot, mounts and a PID namespace)"]
    missing += parts.missing_for_busybox()
    missing += [f"{tool} (Debian package util-linux)" for tool in ("unshare", "nsenter", "setpriv", "chroot")
                if shutil.which(tool) is None]
    if platform.machine() not in ("x86_64", "amd64"):
        missing.append("an x86_64 machine (the tests run init-amd64)")
    need(missing)


def wait_until(check: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def spec(script: str, *script_args: str, **changes: object) -> ProcessSpec:
    """A spec running a busybox sh script as root in / with ENV, changed by `changes`."""
    base = ProcessSpec(path="/bin/sh", args=("sh", "-c", script, "script", *script_args), env=ENV)
    return ProcessSpec(**{**base.__dict__, **changes})


def raw_spec(*records: str) -> bytes:
    """A spec made by hand (for what pveoci.process would refuse to encode)."""
    return b"PVEOCI-SPEC 1\n" + b"".join(r.encode() + b"\0" for r in records)


@dataclass
class Init:
    root: Path
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    readonly: bool = False
    pid: int = 0                            # the init's pid on the host
    code: int | None = field(default=None)

    @property
    def run_dir(self) -> Path:
        return self.root / ".pveoci" / "run"

    def file(self, name: str) -> bytes | None:
        try:
            return (self.run_dir / name).read_bytes()
        except FileNotFoundError:
            return None

    def state(self) -> str | None:
        if self.readonly:
            result = self.run("state")
            return str(json.loads(result.stdout)["state"]) if result.returncode == 0 else None
        data = self.file("state")
        return None if data is None else data.decode()

    def wait_state(self, word: str) -> None:
        wait_until(lambda: self.state() == word, f"state {word!r}")

    def log(self) -> list[tuple[int, bytes]]:
        return pinit.parse_log(self.file("log") or b"")

    def wait_log(self, text: bytes) -> None:
        wait_until(lambda: text in b"".join(data for _, data in self.log()), f"{text!r} in the log")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def start(self) -> None:
        self.signal(pinit.START_SIGNAL)

    def children(self) -> list[int]:
        """The init's children (host pids): the process, once started."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = TIMEOUT) -> int:
        self.code = self.proc.wait(timeout=timeout)
        return self.code

    @property
    def stdout(self) -> bytes:
        return self.out_path.read_bytes()

    @property
    def stderr(self) -> bytes:
        return self.err_path.read_bytes()

    def run(self, *args: str, input: bytes | None = None, argv: Sequence[str] | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
        """`/.pveoci/init ARGS` (or argv) in the init's namespaces and root, as `pct exec` would run it."""
        command = list(argv) if argv is not None else [pinit.INIT_PATH, *args]
        return subprocess.run(["nsenter", f"--target={self.pid}", "--mount", "--pid", "--root", "--wd", "--",
                               *command], input=input, capture_output=True, timeout=timeout, check=False,
                              env={"LEAK": "no"})

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["nsenter", f"--target={self.pid}", "--mount", "--pid", "--root", "--wd", "--",
                                 pinit.INIT_PATH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A busybox rootfs with the init in /.pveoci/init (no /.pveoci/run: the init makes it)."""
    need_namespaces()
    busybox = shutil.which("busybox")
    assert busybox is not None
    root = tmp_path / "rootfs"
    for sub in ("bin", "proc", "dev", "tmp/out", "app", "etc", "private", ".pveoci"):
        (root / sub).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    (root / "tmp" / "out").chmod(0o777)
    (root / "private").chmod(0o700)
    (root / "dev" / "null").touch()
    (root / "etc" / "motd").write_text("not a program\n")
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / ".pveoci" / "init").write_bytes(pinit.binary("amd64"))
    (root / ".pveoci" / "init").chmod(0o755)
    return root


Boot = Callable[..., Init]


@pytest.fixture
def boot(rootfs: Path, tmp_path: Path) -> Iterator[Boot]:
    """Start the init; returns once it waits for the start signal (or has ended, with created=False).

    `wrap` runs before chroot (setpriv, a shell), `stdout` replaces the file the init's stdout goes to."""
    started: list[Init] = []

    def start(process: ProcessSpec | bytes | None = None, *, args: Sequence[str] | None = None,
              readonly: bool = False, wrap: Sequence[str] = (), created: bool = True,
              stdout: int | None = None) -> Init:
        if args is None:
            if isinstance(process, ProcessSpec):
                args = [f"--spec={encode_arg(process)}"]
            elif isinstance(process, bytes):
                args = ["--spec=" + base64.urlsafe_b64encode(process).rstrip(b"=").decode()]
            else:
                args = []
        n = len(started)
        out, err = tmp_path / f"init{n}.out", tmp_path / f"init{n}.err"
        with out.open("wb") as out_file, err.open("wb") as err_file:
            proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--kill-child", "--", "sh", "-c", WRAPPER, "wrapper",
                 str(rootfs), "1" if readonly else "0", *wrap, "chroot", str(rootfs), pinit.INIT_PATH, *args],
                stdin=subprocess.DEVNULL, stdout=out_file if stdout is None else stdout, stderr=err_file,
                env={"PATH": os.environ["PATH"], "LEAK": "no"})
        ini = Init(rootfs, proc, out, err, readonly=readonly)
        started.append(ini)

        def found() -> bool:
            try:  # unshare's child: the wrapper until it executes chroot, then the init
                child = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if child and Path(f"/proc/{child[0]}/cmdline").read_bytes().startswith(pinit.INIT_PATH.encode()):
                    ini.pid = int(child[0])
            except OSError:
                pass
            return bool(ini.pid) or not ini.alive()

        wait_until(found, "the init to run")
        if created:
            wait_until(lambda: not ini.alive() or ini.state() == "created", "state created")
            assert ini.alive(), f"the init ended: {ini.stderr!r}"
        return ini

    yield start
    for ini in started:
        if ini.alive():
            ini.proc.send_signal(signal.SIGKILL)     # --kill-child: the init and its namespace go too
        ini.proc.wait(timeout=TIMEOUT)


__all__ = ["ENV", "Boot", "Init", "encode", "raw_spec", "spec", "wait_until"]
