"""The container's process as runc runs it, on the bed's real containers: pveoci's init, the process spec with
the container (not the template), foreground run, exec, signals, logs, both PVE 9.0 and 9.1."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

Oci = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def oci(lxc_bed: Testbed, tmp_path: Path) -> Oci:
    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), *args],
                              env=lxc_bed.env(), capture_output=True, text=True, check=False, timeout=timeout)
    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def bundle(tmp_path: Path, name: str, script: str, **process: object) -> Path:
    made = make_busybox_bundle(tmp_path / name, ["sh", "-c", script])
    if process:
        config = json.loads((made / "config.json").read_text())
        config["process"].update(process)
        (made / "config.json").write_text(json.dumps(config))
    return made


@pytest.mark.parametrize("version", ["9.1.2", "9.0.10"])
def test_a_rootfs_with_its_own_sbin_init_runs_the_bundles_process(lxc_bed: Testbed, oci: Oci, tmp_path: Path,
                                                                  version: str) -> None:
    lxc_bed.pve.version = version
    made = make_busybox_bundle(tmp_path / "b", ["sh", "-c", "echo started as $0 $1; while true; do sleep 1; done",
                                                "app", "arg1"])
    assert (made / "rootfs" / "sbin" / "init").is_symlink()  # busybox's own init is there
    config = json.loads((made / "config.json").read_text())
    del config["process"]["capabilities"]  # LXC's set: an exec may look at PID 1 (CAP_SYS_PTRACE)
    (made / "config.json").write_text(json.dumps(config))
    ok(oci("create", "-b", str(made), "own-init"))
    assert json.loads(ok(oci("state", "own-init")))["status"] == "created"
    assert ok(oci("logs", "own-init")) == ""          # created: the process has not run
    ok(oci("start", "own-init"))
    wait_for(lambda: "started as app arg1" in oci("logs", "own-init").stdout, "the bundle's process")
    pid = ok(oci("exec", "own-init", "--", "cat", "/.pveoci/run/pid")).strip()
    cmdline = ok(oci("exec", "own-init", "--", "cat", f"/proc/{pid}/cmdline"))
    assert cmdline.split("\0")[:2] == ["sh", "-c"]
    # PID 1 is pveoci's init (as /sbin/init on 9.0), never the rootfs's own.
    assert ok(oci("exec", "own-init", "--", "ls", "-l", "/proc/1/exe")).rstrip().endswith("-> /.pveoci/init")
    ok(oci("delete", "-f", "own-init"))


def test_a_term_handler_runs_on_kill_term_and_kill_returns_at_once(oci: Oci, tmp_path: Path) -> None:
    made = bundle(tmp_path, "t", "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done")
    ok(oci("run", "-d", "-b", str(made), "trap1"))
    wait_for(lambda: "ready" in oci("logs", "trap1").stdout, "the trap to be set")
    started = time.monotonic()
    ok(oci("kill", "trap1", "TERM"))
    took = time.monotonic() - started
    assert took < 2.0, took  # the command, Python's start-up included; the library's own kill is measured below
    follow = oci("logs", "-f", "trap1")
    assert follow.returncode == 7
    assert follow.stdout == "ready\ngot TERM\n"
    wait_for(lambda: json.loads(oci("state", "trap1").stdout)["status"] == "stopped", "stopped")
    ok(oci("delete", "trap1"))


def test_the_librarys_kill_returns_in_well_under_a_second(lxc_bed: Testbed, tmp_path: Path) -> None:
    import pveoci

    made = bundle(tmp_path, "k", "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    with pveoci.connect(config=lxc_bed.config_path, root=tmp_path / "lib-cache") as rt:
        rt.run("fast", made)
        started = time.monotonic()
        rt.kill("fast", "TERM")
        took = time.monotonic() - started
        rt.wait("fast", timeout=30)
        rt.delete("fast")
    assert took < 0.8, took


def test_run_in_the_foreground_streams_both_streams_and_exits_with_the_status(oci: Oci, tmp_path: Path,
                                                                             lxc_bed: Testbed) -> None:
    made = bundle(tmp_path, "f", "echo out; echo err >&2; exit 3")
    result = oci("run", "-b", str(made), "fg1")
    assert (result.returncode, result.stdout) == (3, "out\n"), result.stderr
    assert process_lines(result.stderr) == ["err"]
    assert lxc_bed.pve.cts == []  # deleted afterwards, as runc's run does
    killed = oci("run", "-b", str(bundle(tmp_path, "k9", "echo bye; kill -9 $$")), "fg2")
    assert (killed.returncode, killed.stdout) == (137, "bye\n")
    kept = oci("run", "--keep", "-b", str(made), "fg3")
    assert kept.returncode == 3
    assert json.loads(ok(oci("state", "fg3")))["status"] == "stopped"
    assert oci("logs", "fg3").stdout == "out\n"
    ok(oci("delete", "fg3"))


def process_lines(stderr: str) -> list[str]:
    """What the process wrote to stderr, without pveoci's own warnings (e.g. unsupported capabilities)."""
    return [line for line in stderr.splitlines() if not line.startswith("pveoci: warning: ")]


def test_ctrl_c_in_a_foreground_run_reaches_the_process(lxc_bed: Testbed, tmp_path: Path) -> None:
    made = bundle(tmp_path, "c", "trap 'echo interrupted; exit 130' INT; echo ready; while true; do sleep 0.1; done")
    proc = subprocess.Popen([sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), "run", "-b",
                             str(made), "ctrlc"], env=lxc_bed.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(2)
    out, _err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (130, "interrupted\n")


def test_exec_runs_as_the_bundles_process_unless_told_otherwise(oci: Oci, tmp_path: Path) -> None:
    made = bundle(tmp_path, "e", "while true; do sleep 1; done", env=["PATH=/bin", "FOO=bar"], cwd="/tmp",
                  user={"uid": 1000, "gid": 1000, "additionalGids": [10]})
    ok(oci("run", "-d", "-b", str(made), "ex1"))

    def show(*flags: str) -> list[str]:
        return [ok(oci("exec", *flags, "ex1", "--", *command)).strip() for command in (
            ["env"], ["id", "-u"], ["id", "-G"], ["pwd"])]

    assert show() == ["PATH=/bin\nFOO=bar", "1000", "1000 10", "/tmp"]
    assert show("-e", "FOO=baz", "-e", "NEW=1", "--cwd", "/", "-u", "0:0") == [
        "PATH=/bin\nFOO=baz\nNEW=1", "0", "0", "/"]
    assert oci("exec", "ex1", "--", "sh", "-c", "exit 4").returncode == 4
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh", "-c", "echo from-file $X; pwd"], "cwd": "/bin",
                                   "env": ["PATH=/bin", "X=1"], "user": {"uid": 0, "gid": 0}}))
    assert ok(oci("exec", "-p", str(process), "ex1")) == "from-file 1\n/bin\n"
    pid_file = tmp_path / "side.pid"
    ok(oci("exec", "-d", "--pid-file", str(pid_file), "ex1", "--", "sleep", "300"))
    side = pid_file.read_text()
    assert side.isdigit()
    assert "sleep" in ok(oci("exec", "ex1", "--", "cat", f"/proc/{side}/cmdline"))
    ok(oci("delete", "-f", "ex1"))


def test_exec_t_drives_an_interactive_shell_through_a_pty(lxc_bed: Testbed, oci: Oci, tmp_path: Path) -> None:
    made = bundle(tmp_path, "i", "while true; do sleep 1; done")
    ok(oci("run", "-d", "-b", str(made), "tty1"))
    pid, fd = pty.fork()
    if pid == 0:  # the child: pveoci on a terminal
        env = lxc_bed.env(TERM="xterm")
        argv = [sys.executable, "-m", "pveoci", "--root", str(tmp_path / "cache"), "exec", "-t", "tty1", "--", "sh"]
        os.execve(sys.executable, argv, env)  # noqa: S606 - the test's own interpreter, no shell
    seen = b""
    answered = 0

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal seen, answered
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
            while seen.count(b"\x1b[6n") > answered:  # the shell asks where the cursor is: as a terminal would
                os.write(fd, b"\x1b[1;1R")
                answered += 1

    read_until(b"# ")  # the prompt: the shell reads its terminal now
    os.write(fd, b"echo $((6*7)); [ -t 0 ] && [ -t 1 ] && echo terminal-$((40+2))\n")
    read_until(b"terminal-42")  # a real terminal in the container, both ways
    os.write(fd, b"exit 5\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 5
    os.close(fd)
    ok(oci("delete", "-f", "tty1"))


def test_kill_all_reaches_every_process(oci: Oci, tmp_path: Path) -> None:
    made = bundle(tmp_path, "a", "trap 'echo main got HUP' HUP; (trap 'echo child got HUP; exit 0' HUP; "
                  "while true; do sleep 0.1; done) & echo ready; while true; do sleep 0.1; done")
    ok(oci("run", "-d", "-b", str(made), "all1"))
    wait_for(lambda: "ready" in oci("logs", "all1").stdout, "ready")
    ok(oci("kill", "--all", "all1", "HUP"))
    wait_for(lambda: "child got HUP" in oci("logs", "all1").stdout, "the child's trap")
    wait_for(lambda: "main got HUP" in oci("logs", "all1").stdout, "the main process's trap")
    ok(oci("delete", "-f", "all1"))


def test_create_pid_file_names_the_containers_init_on_its_node(oci: Oci, tmp_path: Path) -> None:
    pid_file = tmp_path / "c.pid"
    ok(oci("create", "--pid-file", str(pid_file), "-b", str(bundle(tmp_path, "p", "sleep 300")), "pid1"))
    pid = int(pid_file.read_text())
    assert pid == json.loads(ok(oci("state", "pid1")))["pid"]
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/.pveoci/init")  # the bed's nodes are here
    ok(oci("kill", "pid1", "KILL"))   # a created container killed: stopped
    wait_for(lambda: json.loads(oci("state", "pid1").stdout)["status"] == "stopped", "stopped")
    ok(oci("delete", "pid1"))


def test_same_rootfs_different_env_sends_nothing_the_second_time(lxc_bed: Testbed, oci: Oci,
                                                                 tmp_path: Path) -> None:
    first = bundle(tmp_path, "one", "while true; do sleep 1; done", env=["PATH=/bin", "MODE=one"])
    second = tmp_path / "two"
    second.mkdir()
    config = json.loads((first / "config.json").read_text())
    config["root"]["path"] = str(first / "rootfs")
    config["process"]["env"] = ["PATH=/bin", "MODE=two", "EXTRA=1"]
    config["process"]["args"] = ["sh", "-c", "echo $MODE; while true; do sleep 1; done"]
    (second / "config.json").write_text(json.dumps(config))
    ok(oci("create", "-b", str(first), "--node", "pve1", "env1"))
    sessions = sum(c.endswith("sftp-server") for c in lxc_bed.sshd("pve1").commands())
    assert sessions >= 1
    ok(oci("run", "-d", "-b", str(second), "--node", "pve1", "env2"))
    assert sum(c.endswith("sftp-server") for c in lxc_bed.sshd("pve1").commands()) == sessions
    assert ok(oci("exec", "env2", "--", "sh", "-c", "echo $MODE $EXTRA")) == "two 1\n"
    ok(oci("delete", "-f", "env1"))
    ok(oci("delete", "-f", "env2"))


def test_the_process_gets_the_specs_capabilities_and_mounts_in_its_order(oci: Oci, tmp_path: Path) -> None:
    """runc's starter spec: exactly its three capabilities (not LXC's set: fails on 0.2's init), a new /dev with the
    container's devices in it, /dev/pts, /dev/shm and /dev/mqueue of their own (LXC mounts no /dev/shm: shm_open
    failed), the spec's order kept (LXC's /sys bound again after them), its masked and read-only paths; an exec
    sees the same."""
    script = ("grep -E '^Cap(Bnd|Eff|Prm)' /proc/self/status; "
              "sed -E 's/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ ([^ ]+) .* - ([^ ]+) ([^ ]+) .*/\\1 \\2 \\3/' /proc/self/mountinfo; "
              "echo data > /dev/shm/x && cat /dev/shm/x; echo -n dev > /dev/null && echo null-ok; readlink /dev/ptmx; "
              "echo masked $(grep -c -E ' /proc/kcore | /sys/firmware ' /proc/self/mountinfo) "
              "$(ls -A /sys/firmware | wc -l); "
              "grep -c ' /proc/irq [^ ]*ro[, ]' /proc/self/mountinfo; "
              "ls -ln /dev/mynull /run/q | awk '{print $1, $3, $5 ($1 ~ /^c/ ? $6 : \"\")}'; "
              "echo x > /dev/mynull && echo mynull-ok")
    made = bundle(tmp_path, "caps", script)
    config = json.loads((made / "config.json").read_text())  # linux.devices: nodes the init makes (0.2: none)
    config["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620,
                                   "uid": 7}, {"path": "/run/q", "type": "p", "fileMode": 0o600}]
    (made / "config.json").write_text(json.dumps(config))
    out = ok(oci("run", "-b", str(made), "caps1"))
    assert "CapBnd:\t0000000020000420" in out  # CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29)
    assert "CapEff:\t0000000020000420" in out
    assert "CapPrm:\t0000000020000420" in out
    mounts = [line.split() for line in out.splitlines() if line.startswith("/")]
    order = [m[0] for m in mounts if m[0] in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys")]
    # The last of each: the spec's /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, in that order.
    last = {where: i for i, where in enumerate(order)}
    assert sorted(last, key=last.__getitem__) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert ["/dev", "tmpfs", "tmpfs"] in mounts
    assert ["/dev/shm", "tmpfs", "shm"] in mounts
    assert "data\nnull-ok\npts/ptmx\nmasked 2 0\n1\n" in out
    assert "crw--w---- 7 1,3\nprw------- 0 0" in out  # a FIFO has a size, not a device number, in the 5th field
    assert "\nmynull-ok\n" in out  # masked paths hidden, read-only paths so
    made_exec = bundle(tmp_path, "capx", "sleep 30")
    ok(oci("run", "-d", "-b", str(made_exec), "caps2"))
    seen = ok(oci("exec", "caps2", "--", "sh", "-c", "grep CapEff /proc/self/status; grep -c ' /dev/shm ' "
                                                      "/proc/self/mountinfo"))
    assert seen.split() == ["CapEff:", "0000000020000420", "1"]
    ok(oci("delete", "-f", "caps2"))
