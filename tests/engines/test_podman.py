"""podman (Debian's 4.3, with conmon) running containers on the bed through pveoci: `podman --runtime`
(containers.conf names it), as docs/engines.md tells users to set it up. Each test is one podman command a user
types, checked by what podman says and exits with."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.engines import podman as engine
from tests.engines.podman import IMAGE, Podman
from tests.engines.terminal import in_terminal
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def podman_session(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    need(engine.missing())
    bed.enable_lxc()
    made = engine.start(bed, tmp_path_factory.mktemp("podman"))
    yield made
    made.close()


@pytest.fixture
def podman(podman_session: Podman, lxc_bed: Testbed) -> Iterator[Podman]:
    yield podman_session
    podman_session("rm", "--all", "--force", "--time", "0")


def uploads(bed: Testbed) -> int:
    """Templates sent to the nodes so far (each upload is an SFTP session)."""
    return sum(c.endswith("sftp-server") for node in bed.node_names for c in bed.sshd(node).commands())


def test_run_rm_prints_the_output_and_exits_with_the_status(podman: Podman, lxc_bed: Testbed) -> None:
    done = podman("run", "--rm", "--network", "none", IMAGE, "echo", "hi")
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr
    sent = uploads(lxc_bed)
    # Another container, another overlay path: the image's template serves it (a stat walk, nothing sent).
    failed = podman("run", "--rm", "--network", "none", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 42")
    assert (failed.returncode, failed.stdout, failed.stderr) == (42, b"out\n", b"err\n")
    assert podman.ok("ps", "-a", "--format", "{{.Names}}") == ""          # --rm: nothing left
    assert uploads(lxc_bed) == sent


def test_env_workdir_and_user(podman: Podman) -> None:
    done = podman("run", "--rm", "--network", "none", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", IMAGE,
                  "sh", "-c", "echo $FOO; pwd; id -u; id -g")
    assert (done.returncode, done.stdout) == (0, b"bar\n/tmp\n1000\n1000\n"), done.stderr


def test_the_files_podman_binds_are_in_the_container_and_a_directory_is_refused(podman: Podman,
                                                                               tmp_path: Path) -> None:
    data = tmp_path / "settings.ini"
    data.write_text("[app]\ncolour = blue\n")
    done = podman("run", "--rm", "--network", "none", "--hostname", "web1", "-v", f"{data}:/etc/app/settings.ini:ro",
                  IMAGE, "sh", "-c", "echo $(cat /etc/hostname); cat /etc/app/settings.ini; grep -c web1 /etc/hosts; "
                  "test -f /run/.containerenv && echo containerenv")
    assert (done.returncode, done.stdout) == (0, b"web1\n[app]\ncolour = blue\n1\ncontainerenv\n"), done.stderr
    refused = podman("run", "--rm", "--network", "none", "-v", f"{tmp_path}:/data", IMAGE, "true")
    assert refused.returncode != 0
    assert b"is a directory of this machine, which a container on a Proxmox node cannot see" in refused.stderr


def test_run_detached_logs_exec_ps_inspect(podman: Podman) -> None:
    cid = podman.ok("run", "-d", "--name", "d1", "--network", "none", IMAGE, "sh", "-c",
                    "echo out1; echo err1 >&2; sleep 1000").strip()
    deadline = time.monotonic() + 30
    while b"out1" not in podman("logs", "d1").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    logs = podman("logs", "d1")
    assert (logs.stdout, logs.stderr) == (b"out1\n", b"err1\n")           # no finding of pveoci's among them
    executed = podman("exec", "d1", "sh", "-c", "echo execout; echo execerr >&2; exit 5")
    assert (executed.returncode, executed.stdout, executed.stderr) == (5, b"execout\n", b"execerr\n")
    assert podman.ok("ps", "--format", "{{.Names}} {{.Status}}").startswith("d1 Up ")
    [inspected] = json.loads(podman.ok("inspect", "d1"))
    assert inspected["Id"] == cid
    assert inspected["State"]["Status"] == "running"
    assert inspected["State"]["Pid"] > 0


def test_exec_it_gets_a_terminal(podman: Podman) -> None:
    podman.ok("run", "-d", "--name", "t1", "--network", "none", IMAGE, "sleep", "1000")
    inner = shlex.join(podman.argv("exec", "-it", "t1", "sh", "-c", "echo in-exec-tty; exit 6"))
    done = subprocess.run(["script", "-qec", inner, "/dev/null"], capture_output=True, env=podman.env,
                          timeout=engine.TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 6, done.stdout
    assert b"in-exec-tty\r" in done.stdout      # \r\r\n: the node's two ptys (sshd's, lxc-attach's) each add one


def test_run_i_passes_the_input(podman: Podman) -> None:
    done = podman("run", "-i", "--rm", "--network", "none", IMAGE, "sh", "-c", "cat; echo done",
                  input=b"line1\nline2\n")
    assert (done.returncode, done.stdout) == (0, b"line1\nline2\ndone\n"), done.stderr


def test_run_it_gets_a_terminal_of_the_users_size(podman: Podman) -> None:
    code, shown = in_terminal(podman.argv("run", "-it", "--rm", "--network", "none", IMAGE, "sh", "-c",
                                          "tty; stty size; echo ready; read x; echo got=$x; exit 5"),
                              podman.env, rows=33, cols=77, typed=b"hello\r", after=b"ready")
    assert code == 5, shown
    assert b"/dev/pts/" in shown
    assert b"33 77\r\n" in shown                      # one pty, the container's: one \r
    assert b"got=hello" in shown


def test_stop_sends_term_that_the_process_handles(podman: Podman) -> None:
    podman.ok("run", "-d", "--name", "s1", "--network", "none", IMAGE, "sh", "-c",
              'trap "echo got-TERM; exit 3" TERM; echo ready; while :; do sleep 1; done')
    wait_for_log(podman, "s1", b"ready")
    podman.ok("stop", "s1")
    assert podman.ok("wait", "s1").strip() == "3"
    assert podman("logs", "s1").stdout == b"ready\ngot-TERM\n"


def test_stop_kills_after_the_timeout(podman: Podman) -> None:
    podman.ok("run", "-d", "--name", "s2", "--network", "none", IMAGE, "sh", "-c",
              'trap "" TERM; echo ready; while :; do sleep 1; done')
    wait_for_log(podman, "s2", b"ready")
    started = time.monotonic()
    podman.ok("stop", "-t", "2", "s2")
    assert time.monotonic() - started >= 2
    assert podman.ok("wait", "s2").strip() == "137"


def test_kill_and_wait(podman: Podman) -> None:
    podman.ok("run", "-d", "--name", "k1", "--network", "none", IMAGE, "sleep", "1000")
    podman.ok("kill", "k1")
    assert podman.ok("wait", "k1").strip() == "137"
    podman.ok("run", "-d", "--name", "k2", "--network", "none", IMAGE, "sh", "-c", "sleep 1; exit 7")
    assert podman.ok("wait", "k2").strip() == "7"


def test_rm_force_of_a_running_container(podman: Podman) -> None:
    podman.ok("run", "-d", "--name", "r1", "--network", "none", IMAGE, "sleep", "1000")
    podman.ok("rm", "-f", "-t", "0", "r1")
    assert podman.ok("ps", "-a", "--format", "{{.Names}}") == ""


def wait_for_log(podman: Podman, name: str, text: bytes) -> None:
    deadline = time.monotonic() + 30
    while text not in podman("logs", name).stdout:
        assert time.monotonic() < deadline, f"no {text!r} in {name}'s log"
        time.sleep(0.2)


def test_the_containers_are_on_the_cluster(podman: Podman) -> None:
    """What podman runs is a Proxmox container, found by pveoci's own list under podman's id."""
    cid = podman.ok("run", "-d", "--name", "p1", "--network", "none", IMAGE, "sleep", "1000").strip()
    listed = subprocess.run([sys.executable, "-m", "pveoci", "list", "-o", "json"], capture_output=True, text=True,
                            check=False,
                            env={**podman.env, "XDG_STATE_HOME": str(podman.root / "state")}, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert cid in [c["id"] for c in json.loads(listed.stdout)]
