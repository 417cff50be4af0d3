"""The init as PID 1: waits for the start signal, runs the process exactly as the spec says, forwards
signals, reaps zombies, keeps the output, ends with the process's status (docs/init.md)."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from pveoci import init as pinit
from pveoci.process import RLIMITS, Rlimit
from tests.init.conftest import ENV, Boot, encode, raw_spec, spec, wait_until

# What the process sees, into /tmp/out (the shell is the process itself: $$).
REPORT = """
set -- /proc/$$/fd/*
echo "$@" > /tmp/out/fds
for f in status limits environ cmdline oom_score_adj stat; do cat /proc/$$/$f > /tmp/out/$f; done
pwd > /tmp/out/cwd
umask > /tmp/out/umask
readlink /proc/$$/fd/0 > /tmp/out/stdin
x=$(readlink /proc/$$/fd/1); echo "$x" > /tmp/out/fd1
echo $$ > /tmp/out/pid
"""
BASE_RECORDS = ("path=/bin/sh", "arg=sh", "arg=-c", "arg=exit 0", "env=PATH=/bin", "cwd=/", "uid=0", "gid=0")


def status_field(text: bytes, name: str) -> str:
    for line in text.decode().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name} in /proc/self/status")


def out(root: Path, name: str) -> bytes:
    return (root / "tmp" / "out" / name).read_bytes()


def test_waits_for_the_start_signal_then_runs_the_process(boot: Boot) -> None:
    process = spec("echo ran > /tmp/out/ran")
    ini = boot(process)
    side_effect = ini.root / "tmp" / "out" / "ran"
    time.sleep(0.3)
    assert not side_effect.exists()
    assert ini.children() == []
    assert (ini.file("pid"), ini.file("status"), ini.file("log")) == (None, None, None)
    assert ini.file("spec") == encode(process)
    assert stat.S_IMODE(ini.run_dir.stat().st_mode) == 0o711
    assert stat.S_IMODE((ini.run_dir / "spec").stat().st_mode) == 0o600   # the env may hold secrets

    ini.start()
    assert ini.wait() == 0, ini.stderr
    assert side_effect.read_bytes() == b"ran\n"
    assert ini.state() == "stopped"
    assert ini.file("status") == b"0"
    assert int(ini.file("pid") or b"") > 1
    assert stat.S_IMODE((ini.run_dir / "log").stat().st_mode) == 0o600


def test_the_process_sees_exactly_the_spec(boot: Boot) -> None:
    process = spec(REPORT, env=("PATH=/bin", "WITH_SPACE=a b  c", "EMPTY=", "DUP=1"), cwd="/app",
                   uid=1000, gid=2000, additional_gids=(3, 4, 5), umask=0o027,
                   rlimits=(Rlimit(RLIMITS["RLIMIT_NOFILE"], 100, 200),), no_new_privileges=True, oom_score_adj=500)
    ini = boot(process)
    ini.start()
    assert ini.wait() == 0, ini.stderr
    seen = ini.root
    assert out(seen, "cmdline") == b"sh\0-c\0" + REPORT.encode() + b"\0script\0"
    assert out(seen, "environ") == b"PATH=/bin\0WITH_SPACE=a b  c\0EMPTY=\0DUP=1\0"   # nothing inherited
    assert out(seen, "cwd") == b"/app\n"
    status = out(seen, "status")
    assert status_field(status, "Uid").split() == ["1000"] * 4
    assert status_field(status, "Gid").split() == ["2000"] * 4
    assert status_field(status, "Groups").split() == ["3", "4", "5"]
    assert status_field(status, "NoNewPrivs") == "1"
    assert status_field(status, "CapEff") == "0000000000000000"
    assert out(seen, "umask") == b"0027\n"
    assert out(seen, "oom_score_adj") == b"500\n"
    nofile = next(line for line in out(seen, "limits").decode().splitlines() if line.startswith("Max open files"))
    assert nofile.split()[3:5] == ["100", "200"]
    assert out(seen, "stdin") == b"/dev/null\n"
    assert out(seen, "fd1").startswith(b"pipe:")
    # Listed before any redirection of the shell's own: 0-2 and the glob's own directory (3), so nothing of
    # the init's leaks.
    assert out(seen, "fds").split() == [b"/proc/%s/fd/%d" % (out(seen, "pid").strip(), n) for n in range(4)]
    pid = out(seen, "pid").strip()
    assert out(seen, "stat").split()[5] == pid                                 # setsid: its own session
    assert ini.file("pid") == pid


def test_defaults_umask_022_no_groups_and_privileges_kept(boot: Boot) -> None:
    # The init is started with umask 077 and groups 7, 8: the process gets neither.
    ini = boot(spec(REPORT), wrap=["sh", "-c", 'umask 077; exec setpriv --groups=7,8 -- "$@"', "sh"])
    ini.start()
    assert ini.wait() == 0, ini.stderr
    status = out(ini.root, "status")
    assert out(ini.root, "umask") == b"0022\n"
    assert status_field(status, "Groups") == ""          # the init's own groups dropped
    assert status_field(status, "NoNewPrivs") == "0"
    assert out(ini.root, "cwd") == b"/\n"
    assert out(ini.root, "environ") == b"\0".join(e.encode() for e in ENV) + b"\0"


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_status_is_the_process_s(boot: Boot, code: int) -> None:
    ini = boot(spec(f"exit {code}"))
    ini.start()
    assert ini.wait() == code
    assert ini.file("status") == str(code).encode()
    assert ini.state() == "stopped"


def test_killed_process_gives_128_plus_the_signal(boot: Boot) -> None:
    # The background sleep keeps the output pipes open: the init must not wait for their end.
    ini = boot(spec("sleep 100 & echo ready; wait"))
    ini.start()
    ini.wait_log(b"ready")
    [process] = ini.children()
    os.kill(process, signal.SIGKILL)            # what pveoci does for KILL: the init cannot catch it
    assert ini.wait() == 137
    assert ini.file("status") == b"137"


def test_term_to_the_init_is_forwarded_and_trapped(boot: Boot) -> None:
    ini = boot(spec("trap 'echo trapped; exit 7' TERM; echo ready; while :; do sleep 0.05; done"))
    ini.start()
    ini.wait_log(b"ready")
    ini.signal(signal.SIGTERM)
    assert ini.wait() == 7
    assert ini.log() == [(1, b"ready\n"), (1, b"trapped\n")]


def test_sigpwr_becomes_the_stop_signal(boot: Boot) -> None:
    ini = boot(spec("trap 'exit 11' USR1; trap 'exit 99' TERM PWR; echo ready; while :; do sleep 0.05; done",
                    stop_signal=signal.SIGUSR1))
    ini.start()
    ini.wait_log(b"ready")
    ini.signal(signal.SIGPWR)                   # LXC halting the container
    assert ini.wait() == 11


def test_every_signal_but_the_start_signal_is_forwarded(boot: Boot) -> None:
    ini = boot(spec("trap 'echo got40' 40; trap 'echo hup' HUP; trap 'echo rt50; exit 50' 50; echo ready; "
                    "while :; do sleep 0.05; done"))
    ini.start()
    ini.wait_log(b"ready")
    ini.signal(pinit.START_SIGNAL)
    ini.signal(signal.SIGHUP)
    ini.wait_log(b"hup")
    ini.signal(50)
    assert ini.wait() == 50
    assert ini.log() == [(1, b"ready\n"), (1, b"hup\n"), (1, b"rt50\n")]


def test_orphaned_zombies_are_reaped(boot: Boot) -> None:
    # The inner sh exits at once: its sleep is orphaned to PID 1, which must reap it when it ends.
    script = """
    sh -c 'sleep 0.1 & echo $! > /tmp/out/orphan'
    o=$(cat /tmp/out/orphan)
    grep PPid /proc/$o/status > /tmp/out/ppid
    i=0; while [ -e /proc/$o ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
    [ -e /proc/$o ] && { grep State /proc/$o/status; exit 1; }
    exit 0
    """
    ini = boot(spec(script))
    ini.start()
    assert ini.wait() == 0, ini.log()
    assert out(ini.root, "ppid").split() == [b"PPid:", b"1"]


def test_output_is_logged_and_copied_to_the_console(boot: Boot) -> None:
    # Two pipes: the order across them is the order the init reads them, hence the pauses.
    ini = boot(spec("echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; sleep 0.1; seq 1 40000"))
    ini.start()
    assert ini.wait() == 0
    records = ini.log()
    numbers = "".join(f"{i}\n" for i in range(1, 40001)).encode()
    assert b"".join(data for stream, data in records if stream == 1) == b"out1\nout2\n" + numbers
    assert [data for stream, data in records if stream == 2] == [b"err1\n"]
    assert records[:3] == [(1, b"out1\n"), (2, b"err1\n"), (1, b"out2\n")]
    assert max(len(data) for _, data in records) <= 65536
    assert ini.stdout == b"out1\nout2\n" + numbers
    assert ini.stderr == b"err1\n"


def test_a_closed_console_loses_nothing_of_the_log_and_its_sigpipe_stays_with_the_init(boot: Boot) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)                          # nobody reads the console
    try:
        ini = boot(spec("trap 'echo got-sigpipe >&2' PIPE; echo one; sleep 0.2; echo two; sleep 0.2; echo three"),
                   stdout=write_end)
    finally:
        os.close(write_end)
    ini.start()
    assert ini.wait() == 0
    assert ini.log() == [(1, b"one\n"), (1, b"two\n"), (1, b"three\n")]
    assert ini.stderr == b""


def test_terminal_gives_the_console_and_logs_nothing(boot: Boot) -> None:
    ini = boot(spec('echo on-console; echo err >&2; x=$(readlink /proc/$$/fd/1); echo "$x" > /tmp/out/fd1',
                    terminal=True))
    ini.start()
    assert ini.wait() == 0
    assert (ini.stdout, ini.stderr) == (b"on-console\n", b"err\n")
    assert ini.log() == []
    assert out(ini.root, "fd1").endswith(b"/init0.out\n")    # the init's own stdout, not a pipe


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, 50])
def test_a_signal_while_waiting_stops_the_container(boot: Boot, sig: int) -> None:
    ini = boot(spec("echo ran > /tmp/out/ran"))
    ini.signal(sig)
    assert ini.wait() == 128 + sig
    assert (ini.state(), ini.file("status")) == ("stopped", str(128 + sig).encode())
    assert not (ini.root / "tmp" / "out" / "ran").exists()


def test_sigpwr_while_waiting_stops_as_the_stop_signal_would(boot: Boot) -> None:
    ini = boot(spec("true", stop_signal=signal.SIGUSR1))
    ini.signal(signal.SIGPWR)
    assert ini.wait() == 128 + signal.SIGUSR1


def test_signals_that_end_no_process_do_not_stop_a_waiting_container(boot: Boot) -> None:
    ini = boot(spec("echo ran > /tmp/out/ran"))
    for sig in (signal.SIGCHLD, signal.SIGWINCH, signal.SIGCONT, signal.SIGURG):
        ini.signal(sig)
    time.sleep(0.3)
    assert ini.alive()
    assert ini.state() == "created"
    ini.start()
    assert ini.wait() == 0
    assert (ini.root / "tmp" / "out" / "ran").exists()


def test_the_init_waits_for_followers_before_it_exits(boot: Boot) -> None:
    ini = boot(spec("exit 4"))
    lock = os.open(ini.run_dir / "follow.lock", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)        # a `logs -f` still printing
        ini.start()
        wait_until(lambda: ini.file("status") == b"4", "status")
        time.sleep(0.5)
        assert ini.alive()
        released = time.monotonic()
    finally:
        os.close(lock)
    assert ini.wait() == 4
    assert time.monotonic() - released < 1


def test_followers_are_waited_for_5_seconds_at_most(boot: Boot) -> None:
    ini = boot(spec("exit 0"))
    lock = os.open(ini.run_dir / "follow.lock", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        ini.start()
        wait_until(lambda: ini.file("status") is not None, "status")
        ended = time.monotonic()
        assert ini.wait(timeout=10) == 0
        assert 4 < time.monotonic() - ended < 7
    finally:
        os.close(lock)


def expect_failure(boot: Boot, process: object, code: int, message: str, **kwargs: object) -> None:
    ini = boot(process, **kwargs)
    ini.start()
    assert ini.wait() == code, (ini.stderr, ini.log())
    assert ini.log() == [(2, message.encode() + b"\n")]
    assert ini.stderr == message.encode() + b"\n"
    assert ini.file("status") == str(code).encode()


@pytest.mark.parametrize(("process", "code", "message"), [
    (spec("true", cwd="/nope"), 126, "pveoci-init: chdir /nope: No such file or directory"),
    # chdir comes after setresuid: the user's own permissions apply.
    (spec("true", cwd="/private", uid=1000, gid=1000), 126, "pveoci-init: chdir /private: Permission denied"),
    (spec("true", path="/bin/nope"), 127, "pveoci-init: execve /bin/nope: No such file or directory"),
    (spec("true", path="/etc/motd"), 126, "pveoci-init: execve /etc/motd: Permission denied"),
    (raw_spec(*BASE_RECORDS, "rlimit=7:10:5"), 126, "pveoci-init: prlimit RLIMIT_NOFILE 10:5: Invalid argument"),
    (raw_spec(*BASE_RECORDS, "rlimit=40:1:18446744073709551615"), 126,
     "pveoci-init: prlimit resource 40 1:unlimited: Invalid argument"),
], ids=["cwd-missing", "cwd-denied", "program-missing", "program-not-executable", "rlimit-soft-above-hard",
        "rlimit-unknown"])
def test_a_failing_step_is_reported_in_the_log(boot: Boot, process: object, code: int, message: str) -> None:
    expect_failure(boot, process, code, message)


@pytest.mark.parametrize(("process", "cap", "message"), [
    (spec("true", uid=1000), "setuid", "pveoci-init: setresuid 1000: Operation not permitted"),
    (spec("true", gid=1000), "setgid", "pveoci-init: setgroups: Operation not permitted"),
    (spec("true", oom_score_adj=-500), "sys_resource", "pveoci-init: oom_score_adj -500: Permission denied"),
    (spec("true", rlimits=(Rlimit(RLIMITS["RLIMIT_NOFILE"], 64, 2**20 + 1),)), "sys_resource",
     "pveoci-init: prlimit RLIMIT_NOFILE 64:1048577: Operation not permitted"),
], ids=["setresuid", "setgroups", "oom_score_adj", "rlimit-above-hard"])
def test_a_step_failing_for_lack_of_a_capability(boot: Boot, process: object, cap: str, message: str) -> None:
    expect_failure(boot, process, 126, message, wrap=["setpriv", f"--bounding-set=-{cap}", "--"])


def test_missing_dev_null_is_reported_in_the_log(rootfs: Path, boot: Boot) -> None:
    (rootfs / "dev" / "null").unlink()          # the wrapper mounts /dev/null only where the file is
    expect_failure(boot, spec("true"), 126, "pveoci-init: open /dev/null: No such file or directory")
