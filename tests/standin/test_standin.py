"""The stand-in (docs/engines.md) on the bed with real containers: what an engine sees of a remote process.

tests/standin/engine.py plays the engine: a subreaper that runs `pveoci create`/`exec -d` with its streams and
waits for the pid in the pid file, as conmon and containerd's shim do.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

TIMEOUT = 60.0


@dataclass
class Engine:
    """One engine run: `proc` is engine.py; its report when it ends."""

    proc: subprocess.Popen[bytes]
    folder: Path

    @property
    def report_path(self) -> Path:
        return self.folder / "report.json"

    def stand_in(self) -> int:
        """The stand-in's pid, once the engine waits for it."""
        wait_until(lambda: Path(f"{self.report_path}.ready").exists() or self.proc.poll() is not None,
                   "the engine to wait for the stand-in")
        return int((self.folder / "pid").read_text())

    def report(self) -> dict[str, Any]:
        self.proc.wait(TIMEOUT)
        return dict(json.loads(self.report_path.read_text()))

    def out(self) -> bytes:
        return (self.folder / "out").read_bytes()

    def err(self) -> bytes:
        return (self.folder / "err").read_bytes()


class Pveoci:
    def __init__(self, bed: Testbed, root: Path) -> None:
        self.root = root
        self.env = bed.env(XDG_STATE_HOME=str(root / "state"), PVEOCI_STAND_IN="1")
        self.engines: list[Engine] = []

    def close(self) -> None:
        """What a failed test left running: its stand-ins (SIGCONT first: a test may have stopped one), engines."""
        for engine in self.engines:
            pid_file = engine.folder / "pid"
            if pid_file.exists() and engine.proc.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid_file.read_text()), sig)
            if engine.proc.poll() is None:
                engine.proc.kill()
            engine.proc.wait(TIMEOUT)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", *args], capture_output=True, text=True, env=self.env,
                              timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL)

    def engine(self, name: str, *args: str, stdin: int = subprocess.DEVNULL) -> Engine:
        """`pveoci ARGS --pid-file PID` run by the engine; stdout/stderr to files, as runtime-tools gives them;
        stdin as given (subprocess.PIPE: the test's to write, as conmon's for `podman run -i`)."""
        folder = self.root / name
        folder.mkdir()
        argv = [sys.executable, "-m", "pveoci", *args[:1], "--pid-file", str(folder / "pid"), *args[1:]]
        with (folder / "out").open("wb") as out, (folder / "err").open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.standin.engine", str(folder / "report.json"),
                                     str(folder / "pid"), "--", *argv], stdin=stdin, stdout=out,
                                    stderr=err, env=self.env)
        self.engines.append(Engine(proc, folder))
        return self.engines[-1]

    def state(self, cid: str) -> dict[str, Any]:
        done = self("state", cid)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def drop_connection(standin: int, which: str = "") -> None:
    """What a dropped SSH connection does to the stand-in: its ssh child ends (those whose command line has
    `which`: "init stdin" for the input's)."""
    def chosen() -> list[int]:
        return [c for c in children(standin) if which.encode() in Path(f"/proc/{c}/cmdline").read_bytes()]
    wait_until(lambda: bool(chosen()), "the stand-in's ssh")
    for child in chosen():
        os.kill(child, signal.SIGKILL)


@pytest.fixture
def pveoci(lxc_bed: Testbed, tmp_path: Path) -> Iterator[Pveoci]:
    made = Pveoci(lxc_bed, tmp_path)
    yield made
    made.close()


def bundle(tmp_path: Path, script: str) -> str:
    return str(make_busybox_bundle(tmp_path / f"bundle-{abs(hash(script))}", args=["sh", "-c", script]))


LINES = 'i=1; while [ $i -le {n} ]; do echo "line $i"; i=$((i+1)); {pause} done'


def lines(n: int) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(1, n + 1))


def test_create_leaves_a_stand_in_that_relays_the_output_and_exits_with_the_status(pveoci: Pveoci,
                                                                                 tmp_path: Path) -> None:
    script = "printf 'a\\000b\\377\\n'; echo err >&2; " + LINES.format(n=20000, pause="") + "; exit 7"
    engine = pveoci.engine("c1", "create", "-b", bundle(tmp_path, script), "c1")
    standin = engine.stand_in()
    state = pveoci.state("c1")
    assert (state["status"], state["pid"]) == ("created", standin)      # the pid an engine waits for
    assert state["pveoci"]["node_pid"] not in (0, standin)
    rss = int(Path(f"/proc/{standin}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss < 15 * 1024                                                # kB, idle
    assert pveoci("start", "c1").returncode == 0
    report = engine.report()
    assert report == {"runtime": 0, "pid": standin, "status": 7, "leftovers": 0}
    assert engine.out() == b"a\x00b\xff\n" + lines(20000)                 # binary-safe, in order, whole
    assert engine.err().endswith(b"err\n")
    assert pveoci("delete", "c1").returncode == 0


def test_a_dropped_connection_is_resumed_with_nothing_lost_or_doubled(pveoci: Pveoci, tmp_path: Path) -> None:
    script = LINES.format(n=40, pause="sleep 0.05;") + "; exit 3"
    engine = pveoci.engine("c2", "create", "-b", bundle(tmp_path, script), "c2")
    standin = engine.stand_in()
    assert pveoci("start", "c2").returncode == 0
    for _ in range(3):
        time.sleep(0.4)
        drop_connection(standin)
    assert engine.report()["status"] == 3
    assert engine.out() == lines(40)
    pveoci("delete", "-f", "c2")


def test_the_log_rest_and_status_of_a_container_that_stopped_while_disconnected(pveoci: Pveoci,
                                                                               tmp_path: Path) -> None:
    script = LINES.format(n=30, pause="sleep 0.02;") + "; exit 5"
    engine = pveoci.engine("c3", "create", "-b", bundle(tmp_path, script), "c3")
    standin = engine.stand_in()
    wait_until(lambda: bool(children(standin)), "the stand-in's ssh")
    os.kill(standin, signal.SIGSTOP)                 # it cannot follow again before the container stopped
    drop_connection(standin)
    assert pveoci("start", "c3").returncode == 0
    wait_until(lambda: pveoci.state("c3")["status"] == "stopped", "the container to stop")
    os.kill(standin, signal.SIGCONT)
    assert engine.report() == {"runtime": 0, "pid": standin, "status": 5, "leftovers": 0}
    assert engine.out() == lines(30)
    pveoci("delete", "-f", "c3")


def test_a_deleted_container_ends_its_stand_in(pveoci: Pveoci, tmp_path: Path) -> None:
    engine = pveoci.engine("c4", "create", "-b", bundle(tmp_path, "sleep 100"), "c4")
    standin = engine.stand_in()
    wait_until(lambda: bool(children(standin)), "the stand-in's ssh")
    os.kill(standin, signal.SIGSTOP)
    drop_connection(standin)
    assert pveoci("delete", "-f", "c4").returncode == 0
    os.kill(standin, signal.SIGCONT)
    assert engine.report()["status"] == 255          # no status can be known


def test_killing_the_stand_in_leaves_the_container_running(pveoci: Pveoci, tmp_path: Path) -> None:
    engine = pveoci.engine("c5", "run", "-d", "-b", bundle(tmp_path, "echo up; sleep 100"), "c5")
    standin = engine.stand_in()
    wait_until(lambda: b"up\n" in engine.out(), "the output")
    os.kill(standin, signal.SIGKILL)
    assert engine.report() == {"runtime": 0, "pid": standin, "status": -9, "leftovers": 0}
    state = pveoci.state("c5")
    assert state["status"] == "running"
    assert "node_pid" not in state["pveoci"]          # the pid is the init's on its node again
    assert state["pid"] != standin
    assert pveoci("delete", "-f", "c5").returncode == 0


def test_no_stand_in_writes_the_node_pid(pveoci: Pveoci, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    done = pveoci("create", "--no-stand-in", "--pid-file", str(pid_file), "-b", bundle(tmp_path, "true"), "c6")
    assert done.returncode == 0, done.stderr
    state = pveoci.state("c6")
    assert int(pid_file.read_text()) == state["pid"]
    assert "node_pid" not in state["pveoci"]
    pveoci("delete", "-f", "c6")


def test_exec_detach_leaves_a_stand_in_and_no_secret_in_a_command_line(pveoci: Pveoci, tmp_path: Path) -> None:
    assert pveoci("run", "-d", "--no-stand-in", "-b", bundle(tmp_path, "sleep 100"), "c7").returncode == 0
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh", "-c", "echo $SECRET; read line; echo got $line; sleep 1; exit 5"],
                                   "cwd": "/", "env": ["PATH=/bin", "SECRET=s3cr3t-42"],
                                   "user": {"uid": 0, "gid": 0}}))
    engine = pveoci.engine("e1", "exec", "-d", "--process", str(process), "c7")
    standin = engine.stand_in()
    wait_until(lambda: b"s3cr3t-42" in engine.out(), "the exec's output")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert b"s3cr3t-42" not in cmdline.read_bytes()
        except OSError:
            continue
    assert engine.report() == {"runtime": 0, "pid": standin, "status": 5, "leftovers": 0}
    assert engine.out() == b"s3cr3t-42\ngot\n"              # stdin: the engine's /dev/null
    pveoci("delete", "-f", "c7")


def with_console(path: str, start: Callable[[], Engine]) -> tuple[Engine, int]:
    """An engine's console socket at `path` while `start()` runs the runtime: the engine, and the pty master
    the runtime sent (checked to come as runc sends it: one message, `/dev/ptmx`, one descriptor)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        engine = start()
        server.settimeout(TIMEOUT)
        conn, _ = server.accept()
        fds = array.array("i")
        payload, ancillary, _, _ = conn.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
        for _level, _kind, data in ancillary:
            fds.frombytes(data[:fds.itemsize])
    assert (payload, len(fds)) == (b"/dev/ptmx", 1)
    return engine, fds[0]


def read_until(fd: int, wanted: bytes, seen: bytearray) -> None:
    deadline = time.monotonic() + TIMEOUT
    while wanted not in seen:
        assert time.monotonic() < deadline, f"no {wanted!r} in {bytes(seen)!r}"
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break


def test_exec_with_a_console_socket_sends_the_master_and_relays_resizes(pveoci: Pveoci, tmp_path: Path) -> None:
    assert pveoci("run", "-d", "--no-stand-in", "-b", bundle(tmp_path, "sleep 100"), "c8").returncode == 0
    path = str(tmp_path / "console.sock")
    engine, master = with_console(path, lambda: pveoci.engine(
        "e2", "exec", "-d", "--console-socket", path, "c8", "--", "sh", "-c",
        "echo ready; read x; stty size; echo got=$x; exit 4"))
    standin = engine.stand_in()
    seen = bytearray()
    # Typed-ahead input, before the command runs on the node, is discarded by lxc-attach (TCSAFLUSH): wait.
    read_until(master, b"ready", seen)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))   # the engine's resize
    time.sleep(0.3)
    os.write(master, b"hello\r")
    read_until(master, b"got=hello", seen)
    assert b"33 77" in seen
    assert engine.report() == {"runtime": 0, "pid": standin, "status": 4, "leftovers": 0}
    os.close(master)      # an engine keeps the master till the end: closing it ends the session (a hang-up)
    pveoci("delete", "-f", "c8")


def test_piped_input_reaches_the_process_once_across_a_dropped_connection(pveoci: Pveoci, tmp_path: Path) -> None:
    engine = pveoci.engine("i1", "create", "-b", bundle(tmp_path, "cat; echo done"), "i1", stdin=subprocess.PIPE)
    assert engine.proc.stdin is not None
    standin = engine.stand_in()
    assert pveoci("start", "i1").returncode == 0
    engine.proc.stdin.write(lines(20))
    engine.proc.stdin.flush()
    wait_until(lambda: engine.out() == lines(20), "the first input's echo")
    drop_connection(standin, "init stdin")
    third = b"".join(b"more %d\n" % i for i in range(5000))        # more than a record, more than a pipe's buffer
    engine.proc.stdin.write(third[:100])
    engine.proc.stdin.flush()
    wait_until(lambda: engine.out().endswith(third[:100]), "the second input's echo")
    # The next connection stalls, takes the rest and the end into its buffers, and drops: none of it reached
    # the node, which says so to the next one.
    [writer] = [c for c in children(standin) if b"init stdin" in Path(f"/proc/{c}/cmdline").read_bytes()]
    os.kill(writer, signal.SIGSTOP)
    engine.proc.stdin.write(third[100:])
    engine.proc.stdin.close()
    time.sleep(1)
    os.kill(writer, signal.SIGKILL)
    second = third
    assert engine.report() == {"runtime": 0, "pid": standin, "status": 0, "leftovers": 0}
    assert engine.out() == lines(20) + second + b"done\n"


def test_create_with_a_console_socket_gives_the_process_a_terminal(pveoci: Pveoci, tmp_path: Path) -> None:
    path = str(tmp_path / "console.sock")
    folder = make_busybox_bundle(tmp_path / "tty", args=["sh", "-c", "tty; echo ready; read x; stty size; "
                                                                     "echo got=$x; exit 6"])
    config = json.loads((folder / "config.json").read_text())
    config["process"]["terminal"] = True
    (folder / "config.json").write_text(json.dumps(config))
    engine, master = with_console(path, lambda: pveoci.engine("t1", "create", "--console-socket", path, "-b",
                                                              str(folder), "t1"))
    standin = engine.stand_in()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))   # before the start, as podman
    assert pveoci("start", "t1").returncode == 0
    seen = bytearray()
    read_until(master, b"ready", seen)
    os.write(master, b"hello\r")
    read_until(master, b"got=hello", seen)
    assert engine.report() == {"runtime": 0, "pid": standin, "status": 6, "leftovers": 0}
    os.close(master)
    assert b"/dev/pts/" in seen                        # a pty of its own in the container
    assert b"33 77\r\n" in seen
    assert pveoci("delete", "t1").returncode == 0
    refused = pveoci("create", "--console-socket", path, "-b", bundle(tmp_path, "true"), "t2")
    assert (refused.returncode, refused.stderr.strip()) == (13, "pveoci: error: --console-socket: the bundle's "
                                                              "process.terminal is false: it gets no terminal (runc "
                                                              "refuses it too)")
