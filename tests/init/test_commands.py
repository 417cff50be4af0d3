"""The init's commands as pveoci runs them in a container (`pct exec CTID -- /.pveoci/init ...`): here with
nsenter into the namespaces and root of an init started by the `boot` fixture."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pveoci import init as pinit
from pveoci.process import ProcessSpec, encode, encode_arg
from tests.init.conftest import Boot, raw_spec, spec, wait_until

EXEC_SPEC = ProcessSpec(path="/bin/true", args=("true",), env=("PATH=/nope:/bin", "FOO=spec", "HOME=/home"),
                        cwd="/app", uid=1000, gid=2000, additional_gids=(3, 4), umask=0o027)
SHOW = 'echo "FOO=$FOO NEW=$NEW"; id -u; id -g; id -G; pwd; umask'


def lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


def wait_for_lock(follower: subprocess.Popen[bytes]) -> None:
    """Until `logs -f` (run by nsenter, its child) holds its flock: a container that ends before that does
    not wait for it (and takes it along)."""
    def locked() -> bool:
        try:
            [child] = Path(f"/proc/{follower.pid}/task/{follower.pid}/children").read_text().split()
            return any(line.split()[1] == "FLOCK" and line.split()[4] == child
                       for line in Path("/proc/locks").read_text().splitlines())
        except (OSError, ValueError):
            return False
    wait_until(locked, "logs -f to hold its lock")


# ---- exec ---------------------------------------------------------------------------------------------------


def test_exec_runs_as_the_spec_says(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)                      # exec works before the start too
    assert lines(ini.run("exec", "--", "sh", "-c", SHOW)) == [
        "FOO=spec NEW=", "1000", "2000", "2000 3 4", "/app", "0027"]
    # Exactly the spec's environment: nothing of the caller's (LEAK=no) reaches the program.
    assert lines(ini.run("exec", "--", "env")) == ["PATH=/nope:/bin", "FOO=spec", "HOME=/home"]


def test_exec_with_a_stashed_spec_reads_it_once(boot: Boot) -> None:
    """runc's exec --process: the spec (its env may hold a secret) goes on stdin, never into a command line."""
    ini = boot(EXEC_SPEC)
    other = ProcessSpec(path="/bin/true", args=("true",), env=("PATH=/bin", "SECRET=s3cr3t"), cwd="/tmp", uid=5,
                        gid=6)
    assert ini.run("set-spec", "--exec", "e1", input=encode(other)).returncode == 0
    stash = ini.run_dir / "exec.e1"
    assert stash.stat().st_mode & 0o777 == 0o600
    assert lines(ini.run("exec", "--exec-spec=e1", "--", "sh", "-c", "echo $SECRET; id -u; pwd")) == [
        "s3cr3t", "5", "/tmp"]
    assert not stash.exists()                          # for one exec only
    again = ini.run("exec", "--exec-spec=e1", "--", "true")
    assert again.returncode == 126
    assert b"exec.e1: No such file or directory" in again.stderr
    assert ini.run("set-spec", "--exec", "../x", input=encode(other)).returncode == 2
    assert ini.run("exec", "--exec-spec=a/b", "--", "true").returncode == 126
    assert ini.run("set-spec", "--exec", "e2", input=b"junk").returncode == 2


def test_exec_overrides(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)
    result = ini.run("exec", "-e", "FOO=cli", "-e", "NEW=x", "--cwd", "/tmp", "--user", "1234:5678", "--", "sh",
                     "-c", SHOW)
    assert lines(result) == ["FOO=cli NEW=x", "1234", "5678", "5678", "/tmp", "0027"]
    # --user without a group: group 0, additional groups dropped; --opt=value spelling.
    assert lines(ini.run("exec", "--user=77", "--cwd=/", "--", "sh", "-c", "id -u; id -G; pwd")) == ["77", "0", "/"]
    assert lines(ini.run("exec", "-e", "FOO=", "--", "env")) == ["PATH=/nope:/bin", "FOO=", "HOME=/home"]


def test_exec_looks_the_program_up_in_the_resulting_path(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)
    assert lines(ini.run("exec", "--", "echo", "found")) == ["found"]      # /nope, then /bin
    result = ini.run("exec", "-e", "PATH=/nope:/app", "--", "echo", "x")
    assert (result.returncode, result.stderr) == (127, b"pveoci-init: execve echo: No such file or directory\n")
    # An absolute or relative path is used as it is.
    assert lines(ini.run("exec", "-e", "PATH=/nope", "--", "/bin/echo", "abs")) == ["abs"]
    assert lines(ini.run("exec", "-e", "PATH=/nope", "--cwd", "/bin", "--", "./echo", "rel")) == ["rel"]


def test_exec_detached_returns_its_pid_and_keeps_running_in_a_session_of_its_own(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)
    result = ini.run("exec", "-d", "-e", "FOO=bg", "--", "sh", "-c", "echo $FOO > /tmp/out/bg; sleep 30")
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout)
    wait_until(lambda: (ini.root / "tmp" / "out" / "bg").exists(), "the detached program to run")
    assert (ini.root / "tmp" / "out" / "bg").read_text() == "bg\n"
    status = ini.run("exec", "--", "sh", "-c", f"cat /proc/{pid}/stat")
    fields = status.stdout.decode().rsplit(")", 1)[1].split()
    assert int(fields[3]) == pid                # its own session (sid == pid)
    ini.run("exec", "--", "kill", "-9", str(pid))


def test_exec_exit_statuses(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)
    assert ini.run("exec", "--", "sh", "-c", "exit 9").returncode == 9
    denied = ini.run("exec", "--", "/etc/motd")
    assert (denied.returncode, denied.stderr) == (126, b"pveoci-init: execve /etc/motd: Permission denied\n")
    missing = ini.run("exec", "--", "/bin/nope")
    assert (missing.returncode, missing.stderr) == (127, b"pveoci-init: execve /bin/nope: No such file or directory\n")
    bad_cwd = ini.run("exec", "--cwd", "/private", "--", "true")       # as uid 1000
    assert (bad_cwd.returncode, bad_cwd.stderr) == (126, b"pveoci-init: chdir /private: Permission denied\n")
    assert ini.run("exec", "--cwd", "relative", "--", "true").returncode == 126
    assert ini.run("exec", "--user", "x", "--", "true").returncode == 126
    assert ini.run("exec", "-e", "NOEQUALS", "--", "true").returncode == 126
    assert ini.run("exec", "--").returncode == 126


def test_exec_with_a_whole_spec(boot: Boot) -> None:
    ini = boot(EXEC_SPEC)
    other = ProcessSpec(path="/ignored", args=("ignored",), env=("PATH=/bin", "FOO=other"), cwd="/tmp", uid=42,
                        gid=43)
    result = ini.run("exec", f"--spec={encode_arg(other)}", "--", "sh", "-c", SHOW)
    assert lines(result) == ["FOO=other NEW=", "42", "43", "43", "/tmp", "0022"]


def test_exec_without_a_spec(boot: Boot) -> None:
    ini = boot(None)
    result = ini.run("exec", "--", "true")
    assert result.returncode == 126
    assert result.stderr == b"pveoci-init: exec: /.pveoci/run/spec: No such file or directory\n"


# ---- logs ---------------------------------------------------------------------------------------------------


def test_logs_writes_each_stream_to_its_own(boot: Boot) -> None:
    ini = boot(spec("echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; printf 'out2'; echo ready; "
                    "trap 'exit 0' TERM; while :; do sleep 0.05; done"))
    assert ini.run("logs").returncode == 0                 # created: no log yet, nothing to print
    ini.start()
    ini.wait_log(b"ready")
    result = ini.run("logs")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"out1\nout2ready\n", b"err1\n")
    ini.signal(signal.SIGTERM)
    assert ini.wait() == 0
    # After the end too (run/ is on the host here, so the init can read it from outside the container).
    after = subprocess.run(["chroot", str(ini.root), pinit.INIT_PATH, "logs"], capture_output=True, check=False)
    assert (after.returncode, after.stdout, after.stderr) == (0, b"out1\nout2ready\n", b"err1\n")


def test_logs_follow_prints_until_the_end_and_exits_with_the_status(boot: Boot) -> None:
    ini = boot(spec("echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; exit 5"))
    follower = ini.popen("logs", "-f")                        # from before the start
    wait_for_lock(follower)
    time.sleep(0.2)
    assert follower.poll() is None
    ini.start()
    stdout, stderr = follower.communicate(timeout=15)
    assert (follower.returncode, stdout, stderr) == (5, b"one\nthree\n", b"two\n")
    assert ini.wait() == 5


def test_logs_follow_of_a_stopped_container(boot: Boot) -> None:
    ini = boot(spec("echo x"))
    ini.signal(signal.SIGTERM)
    assert ini.wait() == 143
    result = subprocess.run(["chroot", str(ini.root), pinit.INIT_PATH, "logs", "-f"], capture_output=True,
                            check=False, timeout=15)
    assert (result.returncode, result.stdout) == (143, b"")


def read_frames(stream: Any) -> list[tuple[int, bytes]]:
    """The records `logs --framed` writes, until its end."""
    frames = []
    while head := stream.read(5):
        frames.append((head[0], stream.read(int.from_bytes(head[1:5], "big"))))
    return frames


def test_logs_framed_says_ready_then_passes_the_records_then_the_status(boot: Boot) -> None:
    ini = boot(spec("echo one; echo two >&2; exit 4"))
    follower = ini.popen("logs", "-f", "--framed")
    assert follower.stdout is not None
    head = follower.stdout.read(10)                      # the ready record comes before anything runs
    assert head == b"\x00\x00\x00\x00\x05ready"
    ini.start()
    frames = read_frames(follower.stdout)
    assert follower.wait(15) == 4
    assert (1, b"one\n") in frames
    assert (2, b"two\n") in frames
    assert frames[-1] == (3, b"4")
    assert ini.wait() == 4


def test_logs_from_an_offset_resumes_at_that_record(tmp_path: Path, rootfs: Path) -> None:
    """A reader that lost its connection after N bytes of records asks again `--from N`: what follows, once."""
    run = rootfs / ".pveoci" / "run"
    run.mkdir()
    records = b"\x01\x00\x00\x00\x03one" + b"\x02\x00\x00\x00\x03two" + b"\x01\x00\x00\x00\x05three"
    (run / "log").write_bytes(records)
    (run / "status").write_text("6")

    def logs(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["chroot", str(rootfs), pinit.INIT_PATH, "logs", *args], capture_output=True,
                              check=False, timeout=15)

    assert logs("--from", "8").stdout == b"three"              # the second record's start: stream 2 -> stderr
    assert logs("--from", "8").stderr == b"two"
    framed = logs("-f", "--framed", "--from", "16")
    ready, status = b"\x00\x00\x00\x00\x05ready", b"\x03\x00\x00\x00\x016"
    assert (framed.returncode, framed.stdout) == (6, ready + records[16:] + status)
    assert logs("--from", str(len(records))).stdout == b""     # at the end: nothing more
    assert logs("--from", "x").returncode == 2                 # not a number: usage


def test_a_follower_whose_reader_went_ends_at_once(boot: Boot) -> None:
    """A follower's SSH connection dropped: it must not hold its lock (and so the init's end) till the process
    ends; the stand-in that lost it follows again from where it was."""
    ini = boot(spec("sleep 60"))
    follower = ini.popen("logs", "-f", "--framed")
    assert follower.stdout is not None
    assert follower.stdout.read(10) == b"\x00\x00\x00\x00\x05ready"
    ini.start()
    follower.stdout.close()
    assert follower.wait(5) == 1                   # at once, though the process runs on
    assert ini.run("state").returncode == 0


def test_logs_refuses_what_is_no_log(tmp_path: Path, rootfs: Path) -> None:
    run = rootfs / ".pveoci" / "run"
    run.mkdir()
    (run / "log").write_bytes(b"\x01\x00\x00\x00\x02ok\x07\x00\x00\x00\x01x")
    result = subprocess.run(["chroot", str(rootfs), pinit.INIT_PATH, "logs"], capture_output=True, check=False)
    assert (result.returncode, result.stdout) == (1, b"ok")
    assert result.stderr == b"pveoci-init: logs: /.pveoci/run/log is not a pveoci log (stream 7)\n"


# ---- kill ---------------------------------------------------------------------------------------------------


def test_kill_signals_the_process(boot: Boot) -> None:
    ini = boot(spec("sleep 100 & echo ready; wait"))
    not_yet = ini.run("kill", "15")
    assert (not_yet.returncode, not_yet.stderr) == (1, b"pveoci-init: kill: the process has not started\n")
    ini.start()
    ini.wait_log(b"ready")
    assert ini.run("kill", "9").returncode == 0
    assert ini.wait() == 137


def test_kill_all_signals_every_process_but_the_init(boot: Boot) -> None:
    # The process traps TERM; its children do not. kill -a TERM ends them, not the init nor the process.
    ini = boot(spec("trap 'echo got-term' TERM; sleep 100 & a=$!; sleep 100 & b=$!; echo ready; wait $a; wait $b; "
                    "echo children-gone; exit 6"))
    ini.start()
    ini.wait_log(b"ready")
    result = ini.run("kill", "-a", "15")
    assert (result.returncode, result.stderr) == (0, b"")
    assert ini.wait() == 6
    assert b"".join(data for stream, data in ini.log() if stream == 1) == b"ready\ngot-term\nchildren-gone\n"


def test_kill_usage_errors(boot: Boot) -> None:
    ini = boot(spec("true"))
    bad = ini.run("kill", "TERM")
    assert (bad.returncode, bad.stderr) == (1, b"pveoci-init: kill: TERM: not a signal number (0-64)\n")
    assert ini.run("kill", "65").returncode == 1
    assert ini.run("kill").returncode == 2
    assert ini.alive()


# ---- set-spec, state, version -------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "why"), [
    (b"", "not a process spec"),
    (b"PVEOCI-SPEC 2\npath=/bin/sh\0", "not a process spec"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "bogus=1"), 'unknown key "bogus"'),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0")[:-1], "the last record is not ended by a NUL byte"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0"), "key gid appears 0 times"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "uid=1"), "key uid appears 2 times"),
    (raw_spec("path=sh", "arg=sh", "cwd=/", "uid=0", "gid=0"), "bad value for key path"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=4294967295", "gid=0"), "bad value for key uid"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "umask=8"), "bad value for key umask"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "oom=-1001"), "bad value for key oom"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "rlimit=7:1"), "bad value for key rlimit"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "rlimit=7:1:18446744073709551616"),
     "bad value for key rlimit"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "env=SECRET"), "bad value for key env"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "stopsignal=65"), "bad value for key stopsignal"),
    (raw_spec("path=/bin/sh", "arg=sh", "cwd=/", "uid=0", "gid=0", "nnp=yes"), "bad value for key nnp"),
])
def test_set_spec_rejects_a_bad_spec(boot: Boot, data: bytes, why: str) -> None:
    ini = boot(None)
    result = ini.run("set-spec", input=data)
    assert result.returncode == 2
    assert result.stderr.startswith(b"pveoci-init: set-spec: bad spec: " + why.encode())
    assert b"SECRET" not in result.stderr
    assert ini.file("spec") is None


def test_set_spec_then_start_pve_9_0(boot: Boot) -> None:
    ini = boot(None)                                   # as /sbin/init: no argument
    process = spec("echo from-set-spec; exit 8")
    assert ini.run("set-spec", input=encode(process)).returncode == 0
    assert ini.file("spec") == encode(process)
    ini.start()
    assert ini.wait() == 8
    assert ini.log() == [(1, b"from-set-spec\n")]
    assert (ini.root / ".pveoci" / "run").exists()


def test_set_spec_after_the_start_is_refused(boot: Boot) -> None:
    ini = boot(spec("echo ready; trap 'exit 0' TERM; while :; do sleep 0.05; done"))
    ini.start()
    ini.wait_log(b"ready")
    result = ini.run("set-spec", input=encode(spec("true")))
    assert (result.returncode, result.stderr) == (1, b"pveoci-init: set-spec: the container is running, not created\n")
    ini.signal(signal.SIGTERM)
    assert ini.wait() == 0


def test_start_without_a_spec_ends_with_126(boot: Boot) -> None:
    ini = boot(None)
    ini.start()
    assert ini.wait() == 126
    message = b"pveoci-init: spec: /.pveoci/run/spec: No such file or directory\n"
    assert ini.log() == [(2, message)]
    assert ini.stderr == message


@pytest.mark.parametrize(("arg", "message"), [
    ("--spec=not*base64", b"pveoci-init: --spec: not base64url\n"),
    ("--spec=" + encode_arg(ProcessSpec(path="/bin/sh", args=("sh",)))[:-8], b"pveoci-init: bad spec: "),
])
def test_a_bad_spec_argument_ends_the_init(boot: Boot, arg: str, message: bytes) -> None:
    ini = boot(args=[arg], created=False)
    assert ini.wait() == 126
    assert ini.stderr.startswith(message)
    assert (ini.state(), ini.file("status")) == ("stopped", b"126")


def test_state(boot: Boot) -> None:
    ini = boot(spec("echo ready; trap 'exit 3' TERM; while :; do sleep 0.05; done"))
    assert json.loads(ini.run("state").stdout) == {"state": "created", "pid": None, "status": None}
    ini.start()
    ini.wait_log(b"ready")
    running = json.loads(ini.run("state").stdout)
    assert running == {"state": "running", "pid": running["pid"], "status": None}
    assert isinstance(running["pid"], int)
    assert running["pid"] > 1
    assert str(running["pid"]).encode() == ini.file("pid")
    ini.signal(signal.SIGTERM)
    assert ini.wait() == 3
    after = subprocess.run(["chroot", str(ini.root), pinit.INIT_PATH, "state"], capture_output=True, check=False)
    assert json.loads(after.stdout) == {"state": "stopped", "pid": running["pid"], "status": 3}


def test_earlier_runs_leave_nothing_behind(boot: Boot, rootfs: Path) -> None:
    run = rootfs / ".pveoci" / "run"
    run.mkdir(mode=0o755)
    for name, data in (("status", b"0"), ("pid", b"5"), ("log", b"\x01\x00\x00\x00\x03old"), ("state", b"stopped")):
        (run / name).write_bytes(data)
    ini = boot(spec("true"))
    assert (ini.file("status"), ini.file("pid"), ini.file("log")) == (None, None, None)
    assert json.loads(ini.run("state").stdout) == {"state": "created", "pid": None, "status": None}
    assert run.stat().st_mode & 0o777 == 0o711


def test_read_only_rootfs_gets_a_tmpfs(boot: Boot, rootfs: Path) -> None:
    run = rootfs / ".pveoci" / "run"
    run.mkdir()                                        # as in every template
    ini = boot(spec("echo on-ro; exit 2"), readonly=True)
    mounts = ini.run(argv=["/bin/cat", "/proc/mounts"]).stdout.decode().splitlines()
    assert any(line.split()[1:3] == ["/.pveoci/run", "tmpfs"] for line in mounts), mounts
    assert any(line.split()[1] == "/" and line.split()[3].startswith("ro") for line in mounts), mounts
    assert ini.run("state").stdout == b'{"state": "created", "pid": null, "status": null}\n'
    follower = ini.popen("logs", "-f")
    wait_for_lock(follower)
    ini.start()
    stdout, _ = follower.communicate(timeout=15)
    assert (follower.returncode, stdout) == (2, b"on-ro\n")
    assert ini.wait() == 2
    assert ini.stdout == b"on-ro\n"
    assert list(run.iterdir()) == []                   # nothing was written to the rootfs


def test_version(rootfs: Path) -> None:
    result = subprocess.run(["chroot", str(rootfs), pinit.INIT_PATH, "version"], capture_output=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, pinit.VERSION.encode() + b"\n", b"")


def test_unknown_command(rootfs: Path) -> None:
    result = subprocess.run(["chroot", str(rootfs), pinit.INIT_PATH, "bogus"], capture_output=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(b"pveoci-init: usage: ")
    assert not (rootfs / ".pveoci" / "run").exists()      # not taken for PID 1


@pytest.mark.parametrize("args", [[], ["--spec=" + encode_arg(spec("true"))]])
def test_the_init_runs_only_as_pid_1(rootfs: Path, args: list[str]) -> None:
    result = subprocess.run(["chroot", str(rootfs), pinit.INIT_PATH, *args], capture_output=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(b"pveoci-init: not PID 1: ")
    assert not (rootfs / ".pveoci" / "run").exists()
