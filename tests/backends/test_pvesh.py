"""pvesh and pct as programs: argv built word by word, their output read as they print it, their failures typed by
Proxmox's own wording (pve-common CLIHandler/RESTEnvironment/Exception, pve-manager PVE/CLI/pvesh.pm)."""

from __future__ import annotations

import pytest

from pveoci import errors
from pveoci.backends.pvesh import Pvesh, failure, last_json, options
from pveoci.backends.runner import ENTRY
from pveoci.models import Completed
from pveoci.runtime.vmids import is_race
from tests.backends.fake_runner import FakeRunner, said

UPID = "UPID:pve1:0001E240:000D3AE0:6751B2C3:imgdel:local:root@pam:"


def test_options_are_one_word_each_and_never_split() -> None:
    words = options({"hostname": "web", "description": "line 1\nline 2; $(x)", "start": True, "unprivileged": False,
                     "memory": 512, "swap": None, "mp0": "-rf /,mp=/x"})
    assert words == ["--hostname=web", "--description=line 1\nline 2; $(x)", "--start=1", "--unprivileged=0",
                     "--memory=512", "--mp0=-rf /,mp=/x"]


def test_a_nul_byte_is_refused_before_anything_runs() -> None:
    runner = FakeRunner()
    with pytest.raises(errors.Unsupported, match="NUL byte cannot be passed on a command line"):
        Pvesh(runner, task_timeout=5).get("nodes", env="A=1\0B=2")
    assert runner.calls == []


def test_an_option_name_must_look_like_one() -> None:
    with pytest.raises(errors.InvalidParameter):
        options({"x --force": 1})


def test_the_task_log_printed_before_the_json_is_skipped() -> None:
    # Proxmox bug 4333: pvesh create prints the worker's output first.
    out = b"extracting archive '/var/lib/vz/template/cache/x.tar.zst'\nTotal bytes read: 1\n" + f'"{UPID}"\n'.encode()
    assert last_json(out) == UPID
    assert last_json(b'[{"vmid":100}]\n') == [{"vmid": 100}]
    assert last_json(b'"105"\n') == "105"  # nextid: a number Perl made a string


def test_no_json_at_all_is_an_error() -> None:
    with pytest.raises(errors.ApiError, match="no JSON answer"):
        last_json(b"something else\n")


def fails(stderr: str, status: int = 255) -> errors.PveociError | None:
    return failure("pct", "node pve1", Completed(status, b"", stderr.encode()))


@pytest.mark.parametrize(("stderr", "kind", "words"), [
    ("CT 105 already exists on node 'pve2'\n", errors.AlreadyExists, "already exists"),
    ("unable to create CT 105 - close (rename) atomic file '/etc/pve/nodes/pve1/lxc/105.conf' failed: File exists\n",
     errors.AlreadyExists, "File exists"),
    ("can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout\n", errors.Locked, "got timeout"),
    ("CT is locked (create)\n", errors.Locked, "locked"),
    ("cluster not ready - no quorum?\n", errors.NoQuorum, "no quorum"),
    ("Configuration file 'nodes/pve1/lxc/105.conf' does not exist\n", errors.NotFound, "does not exist"),
    # pvesh's proxy to the node that owns the path: the remote error, or ssh's (PVE::Cmd::run with errmsg)
    ("proxy handler failed: Configuration file 'nodes/pve2/lxc/105.conf' does not exist\n", errors.NotFound, "pve2"),
    ("proxy handler failed: ssh: connect to host 10.0.0.2 port 22: No route to host\n", errors.NodeOffline,
     "10.0.0.2"),
    ("400 Parameter verification failed.\nhostname: invalid format - value does not look like a valid DNS name\n"
     "pct create <vmid> <ostemplate> [OPTIONS]\n", errors.InvalidParameter, "hostname: invalid format"),
    ("403 Permission check failed (/vms/105, VM.Allocate)\n", errors.PermissionDenied, "lacks VM.Allocate"),
    ("501 not implemented\n", errors.ApiError, "error 501"),
    ("WARN: something\nCT 105 already exists on node 'pve2'\n", errors.AlreadyExists, "already exists"),
])
def test_proxmox_wording_becomes_the_same_typed_error_as_through_the_api(stderr: str, kind: type,
                                                                          words: str) -> None:
    found = fails(stderr)
    assert type(found) is kind
    assert found is not None
    assert words in found.message


def test_lost_vmid_races_worded_by_pct_are_races() -> None:
    for text in ("CT 105 already exists on node 'pve2'", "can't lock file '/run/lock/lxc/pve-config-105.lock' - got "
                 "timeout", "unable to create CT 105 - close (rename) atomic file '/etc/pve/nodes/pve1/lxc/105.conf' "
                 "failed: File exists"):
        found = fails(text + "\n")
        assert found is not None, text
        assert is_race(found), text


def test_parameter_errors_keep_each_parameter() -> None:
    found = fails("400 Parameter verification failed.\nvmid: VM 105 already exists\nmemory: value must be at least 16\n"
                  "pct create <vmid> <ostemplate> [OPTIONS]\n")
    assert isinstance(found, errors.InvalidParameter)
    assert found.errors == {"vmid": "VM 105 already exists", "memory": "value must be at least 16"}


def test_missing_tools_and_sudo_say_what_to_do() -> None:
    missing = fails("sh: 1: pct: not found\n", 127)
    assert isinstance(missing, errors.ConfigError)
    assert "pct is not on node pve1" in missing.message
    sudo = fails("sudo: a password is required\n", 1)
    assert isinstance(sudo, errors.PermissionDenied)
    assert "without a password" in sudo.message


def test_other_wording_is_left_to_the_caller() -> None:
    assert fails("startup for container '105' failed\n") is None


def test_get_runs_pvesh_at_the_entry_with_json_output() -> None:
    runner = FakeRunner().on("pvesh", "get", answer=said(0, '[{"type":"lxc","vmid":100}]\n'))
    assert Pvesh(runner, task_timeout=5).get("cluster", "resources", type="vm") == [{"type": "lxc", "vmid": 100}]
    assert runner.calls == [(ENTRY, ["pvesh", "get", "/cluster/resources", "--type=vm", "--output-format=json"])]


def test_an_offline_node_is_named_from_the_path() -> None:
    runner = FakeRunner().on("pvesh", answer=said(255, stderr="proxy handler failed: ssh: connect to host 10.0.0.2 "
                                                          "port 22: No route to host\n"))
    with pytest.raises(errors.NodeOffline) as err:
        Pvesh(runner, task_timeout=5, label="pve1.example").get("nodes", "pve2", "lxc", 105, "status", "current")
    assert err.value.node == "pve2"
    assert err.value.message.startswith("node 'pve2' is offline or unreachable from pve1.example (proxy handler")


def tasked(exitstatus: str, answer: str = f'"{UPID}"\n', stderr: str = "") -> FakeRunner:
    """pvesh that runs a task: exit 0 whatever became of it; the task's status and log on request."""
    log = '[{"n":1,"t":"trying to remove"},{"n":2,"t":"TASK ERROR: ' + exitstatus + '"}]\n'
    return (FakeRunner()
            .on("pvesh", "delete", answer=said(0, "trying to remove\n" + answer, stderr))
            .on("pvesh", "get", f"/nodes/pve1/tasks/{UPID}/status",
                answer=said(0, '{"status":"stopped","exitstatus":"' + exitstatus + '"}\n'))
            .on("pvesh", "get", f"/nodes/pve1/tasks/{UPID}/log", answer=said(0, log)))


def test_a_task_that_failed_under_pvesh_fails_though_pvesh_exits_0() -> None:
    runner = tasked("volume 'local:vztmpl/x.tar.zst' does not exist", stderr="volume 'local:vztmpl/x.tar.zst' does "
                    "not exist\n")
    with pytest.raises(errors.TaskFailed) as err:
        Pvesh(runner, task_timeout=5).task("delete", "nodes", "pve1", "storage", "local", "content",
                                           "local:vztmpl/x.tar.zst")
    assert err.value.upid == UPID
    assert err.value.message == ("Proxmox task imgdel local on pve1 failed: volume 'local:vztmpl/x.tar.zst' does "
                                 "not exist")
    deleted = runner.calls[0][1]
    assert deleted[:3] == ["pvesh", "delete", "/nodes/pve1/storage/local/content/local:vztmpl/x.tar.zst"]


def test_a_task_that_ended_well_gives_its_upid() -> None:
    assert Pvesh(tasked("OK"), task_timeout=5).task("delete", "nodes", "pve1", "x") == UPID
    assert Pvesh(tasked("WARNINGS: 2"), task_timeout=5).task("delete", "nodes", "pve1", "x") == UPID


def test_a_task_through_pvesh_s_proxy_is_found_in_the_string_it_answers() -> None:
    # The proxy reads the remote pvesh's lines without their ends and cannot decode them: one JSON string.
    proxied = '"Removed volume \'local:vztmpl/x.tar.zst\'\\"' + UPID + '\\""\n'
    assert Pvesh(tasked("OK", answer=proxied), task_timeout=5).task("delete", "nodes", "pve1", "x") == UPID
