"""The bed's `pct` and `pvesh` (tests/testbed/nodetools.py) print and exit as Proxmox VE's own tools do, reached over
each node's real sshd (docs/testing.md lists what is modelled)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from pveoci import settings
from pveoci.ssh import CommandResult, SshConnector, run
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

OnNode = Callable[..., CommandResult]


@pytest.fixture
def on(cluster: Testbed) -> Iterator[OnNode]:
    """on(node, *argv, stdin=None): run argv on the node over SSH, as pveoci's pct backend does."""
    connector = SshConnector(settings.load(config_path=cluster.config_path, env={}).profile.ssh, cluster.addresses)
    clients: dict[str, object] = {}

    def call(node: str, *argv: str, stdin: bytes | None = None) -> CommandResult:
        if node not in clients:
            clients[node] = connector.connect(node)
        return run(clients[node], list(argv), stdin=stdin, timeout=120)  # type: ignore[arg-type]

    yield call
    for client in clients.values():
        client.close()  # type: ignore[attr-defined]


def test_pvesh_get_prints_one_line_of_canonical_json(on: OnNode) -> None:
    done = on("pve1", "pvesh", "get", "/version", "--output-format", "json")
    assert (done.status, done.stderr) == (0, b"")
    assert done.stdout == b'{"release":"9.1","repoid":"fakepve","version":"9.1.2"}\n'
    assert on("pve1", "pvesh", "get", "/cluster/nextid", "--output-format=json").stdout == b'"100"\n'


def test_cluster_status_says_which_node_answered(on: OnNode) -> None:
    for node in ("pve1", "pve2"):
        status = json.loads(on(node, "pvesh", "get", "/cluster/status", "--output-format=json").stdout)
        assert [n["name"] for n in status if n.get("local")] == [node]


def test_a_task_under_pvesh_prints_its_log_first_and_exits_0_even_when_it_failed(on: OnNode,
                                                                                 cluster: Testbed) -> None:
    (cluster.template_dir("pve1") / "pveoci-x.tar.zst").write_bytes(b"x")
    gone = on("pve1", "pvesh", "delete", "/nodes/pve1/storage/local/content/local:vztmpl/pveoci-x.tar.zst",
              "--output-format=json")
    assert (gone.status, gone.stderr) == (0, b"")
    log, answer = gone.stdout.decode().splitlines()
    assert log == "Removed volume 'local:vztmpl/pveoci-x.tar.zst'"
    assert json.loads(answer).startswith("UPID:pve1:")
    again = on("pve1", "pvesh", "delete", "/nodes/pve1/storage/local/content/local:vztmpl/pveoci-x.tar.zst",
               "--output-format=json")
    assert again.status == 0  # Proxmox bug 4333: the task failed, pvesh did not
    assert again.stderr == b"volume 'local:vztmpl/pveoci-x.tar.zst' does not exist\n"
    assert json.loads(again.stdout.decode().splitlines()[-1]).startswith("UPID:pve1:")


def test_a_task_on_another_node_comes_back_through_pvesh_s_proxy_as_one_string(on: OnNode,
                                                                               cluster: Testbed) -> None:
    (cluster.template_dir("pve2") / "pveoci-y.tar.zst").write_bytes(b"y")
    done = on("pve1", "pvesh", "delete", "/nodes/pve2/storage/local/content/local:vztmpl/pveoci-y.tar.zst",
              "--output-format=json")
    assert done.status == 0
    answer = json.loads(done.stdout)
    assert answer.startswith("Removed volume 'local:vztmpl/pveoci-y.tar.zst'\"UPID:pve2:")


def test_a_failed_pct_task_exits_255_with_its_error_on_stderr(on: OnNode) -> None:
    done = on("pve1", "pct", "create", "100", "local:vztmpl/none.tar.zst", "--rootfs=local-lvm:1")
    assert done.status == 255
    assert done.stderr == b"unable to create CT 100 - volume 'local:vztmpl/none.tar.zst' does not exist\n"


def test_failures_before_a_task_exit_255_in_pve_s_words(on: OnNode, cluster: Testbed) -> None:
    missing = on("pve1", "pct", "start", "999")
    assert (missing.status, missing.stderr) == (255, b"Configuration file 'nodes/pve1/lxc/999.conf' does not exist\n")
    bad = on("pve1", "pct", "create", "101", "local:vztmpl/x.tar.zst", "--hostname=no_underscores")
    assert bad.status == 255
    assert bad.stderr == (b"400 Parameter verification failed.\n"
                          b"hostname: invalid format - value does not look like a valid DNS name\n"
                          b"pct create <vmid> <ostemplate> [OPTIONS]\n")
    cluster.pve.fail("POST", "/nodes/pve1/lxc", 500, "unable to create CT 102 - close (rename) atomic file "
                     "'/etc/pve/nodes/pve1/lxc/102.conf' failed: File exists", times=1)
    raced = on("pve1", "pct", "create", "102", "local:vztmpl/x.tar.zst")
    assert (raced.status, raced.stderr) == (255, b"unable to create CT 102 - close (rename) atomic file "
                                                 b"'/etc/pve/nodes/pve1/lxc/102.conf' failed: File exists\n")


def test_pct_knows_only_its_own_node_s_containers(on: OnNode, cluster: Testbed) -> None:
    cluster.pve.add_ct(120, node="pve2", status="running")
    status = on("pve2", "pct", "status", "120")
    assert status.stdout == b"status: running\n", status.stderr
    elsewhere = on("pve1", "pct", "status", "120")
    assert (elsewhere.status, elsewhere.stderr) == (255, b"Configuration file 'nodes/pve1/lxc/120.conf' does not "
                                                         b"exist\n")
    stop = on("pve1", "pct", "stop", "120")  # vm_stop checks "running" on its own node first
    assert (stop.status, stop.stderr) == (255, b"CT 120 not running\n")


def test_a_node_the_cluster_calls_offline_is_ssh_s_failure_through_pvesh(on: OnNode, cluster: Testbed) -> None:
    cluster.pve.set_node_offline("pve2")
    done = on("pve1", "pvesh", "get", "/nodes/pve2/lxc", "--output-format=json")
    assert done.status == 255
    assert done.stderr == (f"proxy handler failed: ssh: connect to host {cluster.addresses['pve2']} port 22: "
                           "No route to host\n").encode()


def test_every_call_is_logged_word_for_word(on: OnNode, cluster: Testbed) -> None:
    word = "a b; $(touch x) `y` 'z'\nnext"
    on("pve1", "pct", "set", "999", f"--description={word}")
    assert cluster.tool_calls("pve1")[-1] == {"tool": "pct", "argv": ["set", "999", f"--description={word}"]}
