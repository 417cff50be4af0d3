"""containerd (Debian's 1.6, io.containerd.runc.v2) running tasks on the bed through pveoci as its runc: `ctr run
--runc-binary`, which sets the runc shim's BinaryName option (what a configured runtime's `BinaryName` sets;
containerd 1.6 reads that only for CRI clients, and Debian 12 has none). Each test is what a user types."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import need
from tests.engines import containerd as engine
from tests.engines.containerd import IMAGE, Containerd
from tests.engines.terminal import in_terminal
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def containerd_session(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    need(engine.missing())
    bed.enable_lxc()
    made = engine.start(bed, tmp_path_factory.mktemp("containerd"))
    yield made
    made.close()


@pytest.fixture
def ctr(containerd_session: Containerd, lxc_bed: Testbed) -> Iterator[Containerd]:
    yield containerd_session
    containerd_session.clean()


def test_run_rm_prints_the_output_and_exits_with_the_status(ctr: Containerd) -> None:
    done = ctr("run", "--rm", "--runc-binary", str(ctr.launcher), IMAGE, "c1", "sh", "-c",
               "echo hi; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"hi\n", b"err\n")
    assert ctr.ok("container", "ls", "-q") == ""
    assert any(" create " in call and call.endswith(" c1") for call in ctr.calls())


def test_run_passes_the_input(ctr: Containerd) -> None:
    """ctr 1.6 never closes a task's stdin (with runc too: `cat` would wait for ever), so the process reads lines."""
    done = ctr("run", "--rm", "--runc-binary", str(ctr.launcher), IMAGE, "c5", "sh", "-c",
               "read a; read b; echo got=$a,$b", input=b"line1\nline2\n")
    assert (done.returncode, done.stdout) == (0, b"got=line1,line2\n"), done.stderr


def test_run_t_gets_a_terminal_of_the_users_size(ctr: Containerd) -> None:
    """ctr sends the terminal's size once `start` returned (with runc as well): the process asks for its size a
    second later."""
    code, shown = in_terminal(ctr.argv("run", "-t", "--rm", "--runc-binary", str(ctr.launcher), IMAGE, "c6", "sh",
                                       "-c", "tty; sleep 1; echo ready; read x; stty size; echo got=$x; exit 5"),
                              ctr.env, rows=33, cols=77, typed=b"hello\r", after=b"ready")
    assert code == 5, shown
    assert b"/dev/pts/" in shown
    assert b"33 77" in shown
    assert b"got=hello" in shown


def test_detached_task_exec_ps_metrics_kill_delete(ctr: Containerd) -> None:
    ctr.ok("run", "-d", "--runc-binary", str(ctr.launcher), IMAGE, "c3", "sleep", "1000")
    assert "RUNNING" in ctr.ok("task", "ls")
    executed = ctr("task", "exec", "--exec-id", "e1", "c3", "sh", "-c", "echo execout; echo execerr >&2; exit 4")
    assert (executed.returncode, executed.stdout, executed.stderr) == (4, b"execout\n", b"execerr\n")
    assert ctr.ok("task", "ps", "c3").splitlines()[0].split()[0] == "PID"
    assert ctr("task", "metrics", "c3").returncode == 0
    ctr.ok("task", "kill", "-s", "KILL", "c3")
    deadline = time.monotonic() + 30
    while "STOPPED" not in ctr.ok("task", "ls"):
        assert time.monotonic() < deadline, ctr.ok("task", "ls")
        time.sleep(0.2)
    ctr.ok("task", "delete", "c3")
    ctr.ok("container", "delete", "c3")


def test_task_delete_force_of_a_running_task(ctr: Containerd) -> None:
    ctr.ok("run", "-d", "--runc-binary", str(ctr.launcher), IMAGE, "c4", "sleep", "1000")
    ctr.ok("task", "delete", "--force", "c4")          # kill --all 9, delete, delete --force
    assert ctr.ok("task", "ls", "-q") == ""
    ctr.ok("container", "delete", "c4")
