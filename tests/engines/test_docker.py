"""docker (Debian's docker.io: dockerd 20.10, its containerd and runc shim) running containers on the bed through
pveoci: a runtime of daemon.json's `runtimes`, chosen with `docker run --runtime pveoci`, as docs/engines.md tells
users to set it up. Each test is one docker command a user types, checked by what docker says and exits with."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import need
from tests.engines import docker as engine
from tests.engines.docker import IMAGE, Docker
from tests.engines.terminal import in_terminal
from tests.testbed import Testbed

RUN = ("run", "--runtime", "pveoci", "--network", "none")


@pytest.fixture(scope="module")
def docker_session(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    need(engine.missing())
    bed.enable_lxc()
    made = engine.start(bed, tmp_path_factory.mktemp("docker"))
    yield made
    made.close()


@pytest.fixture
def docker(docker_session: Docker, lxc_bed: Testbed) -> Iterator[Docker]:
    yield docker_session
    docker_session.clean()


def wait_for_log(docker: Docker, name: str, text: bytes) -> None:
    deadline = time.monotonic() + 30
    while text not in docker("logs", name).stdout:
        assert time.monotonic() < deadline, f"no {text!r} in {name}'s log"
        time.sleep(0.2)


def test_run_rm_prints_both_streams_and_exits_with_the_status_with_env_workdir_and_user(docker: Docker) -> None:
    done = docker(*RUN, "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", IMAGE, "sh", "-c",
                  "echo $FOO $(pwd) $(id -u) $(id -g); echo err >&2; exit 42")
    assert (done.returncode, done.stdout, done.stderr) == (42, b"bar /tmp 1000 1000\n", b"err\n")
    assert docker.ok("ps", "-aq") == ""                                  # --rm: nothing left
    assert any(" create --bundle " in call for call in docker.calls())    # pveoci ran it, not runc


def test_run_detached_logs_exec_ps_inspect(docker: Docker) -> None:
    cid = docker.ok(*RUN, "-d", "--name", "d1", IMAGE, "sh", "-c", "echo out1; echo err1 >&2; sleep 1000").strip()
    wait_for_log(docker, "d1", b"out1")
    logs = docker("logs", "d1")
    assert (logs.stdout, logs.stderr) == (b"out1\n", b"err1\n")
    executed = docker("exec", "d1", "sh", "-c", "echo execout; echo execerr >&2; exit 5")
    assert (executed.returncode, executed.stdout, executed.stderr) == (5, b"execout\n", b"execerr\n")
    assert docker.ok("ps", "--format", "{{.Names}} {{.Status}}").startswith("d1 Up ")
    [inspected] = json.loads(docker.ok("inspect", "d1"))
    assert inspected["Id"] == cid
    assert (inspected["State"]["Status"], inspected["HostConfig"]["Runtime"]) == ("running", "pveoci")
    assert inspected["State"]["Pid"] > 0


def test_run_i_passes_the_input(docker: Docker) -> None:
    done = docker(*RUN, "-i", "--rm", IMAGE, "sh", "-c", "cat; echo done", input=b"line1\nline2\n")
    assert (done.returncode, done.stdout) == (0, b"line1\nline2\ndone\n"), done.stderr


def test_run_it_gets_a_terminal_of_the_users_size(docker: Docker) -> None:
    code, shown = in_terminal(docker.argv(*RUN, "-it", "--rm", IMAGE, "sh", "-c",
                                          "tty; sleep 1; stty size; echo ready; read x; echo got=$x; exit 5"),
                              docker.env, rows=33, cols=77, typed=b"hello\r", after=b"ready")
    assert code == 5, shown
    assert b"/dev/pts/" in shown
    assert b"33 77" in shown
    assert b"got=hello" in shown


def test_exec_it_gets_a_terminal(docker: Docker) -> None:
    docker.ok(*RUN, "-d", "--name", "t1", IMAGE, "sleep", "1000")
    inner = shlex.join(docker.argv("exec", "-it", "t1", "sh", "-c", "echo in-exec-tty; exit 6"))
    done = subprocess.run(["script", "-qec", inner, "/dev/null"], capture_output=True, env=docker.env,
                          timeout=engine.TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 6, done.stdout
    assert b"in-exec-tty\r" in done.stdout


def test_stop_kill_wait_and_rm_force(docker: Docker) -> None:
    """stop: TERM, which s1 handles (its status) and s2 ignores (KILL after -t 2: 137); kill: 137; rm -f."""
    docker.ok(*RUN, "-d", "--name", "s1", IMAGE, "sh", "-c",
              'trap "echo got-TERM; exit 3" TERM; echo ready; while :; do sleep 1; done')
    docker.ok(*RUN, "-d", "--name", "s2", IMAGE, "sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 1; done')
    docker.ok(*RUN, "-d", "--name", "k1", IMAGE, "sleep", "1000")
    wait_for_log(docker, "s1", b"ready")
    wait_for_log(docker, "s2", b"ready")
    docker.ok("stop", "s1")
    assert docker.ok("wait", "s1").strip() == "3"
    assert docker("logs", "s1").stdout == b"ready\ngot-TERM\n"
    started = time.monotonic()
    docker.ok("stop", "-t", "2", "s2")
    assert time.monotonic() - started >= 2
    assert docker.ok("wait", "s2").strip() == "137"
    docker.ok("kill", "k1")
    assert docker.ok("wait", "k1").strip() == "137"
    docker.ok("rm", "-f", "s1", "s2")
    assert docker.ok("ps", "-a", "--format", "{{.Names}}").split() == ["k1"]
