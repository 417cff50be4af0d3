"""Waiting for Proxmox tasks: on the UPID's node, adaptive polling, warnings, failures with the log tail."""

from __future__ import annotations

import itertools

import pytest

from pveoci import errors
from pveoci.pve.tasks import Upid
from pveoci.retry import TASK_POLL
from tests.testbed import Testbed
from tests.testbed.pve import TaskError

pytestmark = pytest.mark.bed


def put_template(bed: Testbed, node: str, name: str = "pveoci-test.tar.zst") -> str:
    (bed.template_dir(node) / name).write_bytes(b"not really a tarball")
    return f"local:vztmpl/{name}"


def test_upid_parts() -> None:
    upid = Upid.parse("UPID:pve2:000003E8:00001B58:6756A1B2:vzcreate:105:pveoci@pve!bed:")
    assert (upid.node, upid.type, upid.id, upid.user) == ("pve2", "vzcreate", "105", "pveoci@pve!bed")
    with pytest.raises(errors.ApiError, match="not a Proxmox task id"):
        Upid.parse("UPID:broken")


def test_polling_starts_fast_and_backs_off_to_a_second() -> None:
    delays = list(itertools.islice(TASK_POLL.delays(), 12))
    assert delays[0] == pytest.approx(0.05)
    assert delays == sorted(delays)
    assert delays[-1] == 1.0



class _SlowTask:
    """A task that ends at `ends` seconds on a fake clock; counts how often its status is asked."""

    def __init__(self, ends: float) -> None:
        self.now = 0.0
        self.ends = ends
        self.asked = 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def get(self, *path: object, **params: object) -> dict[str, str]:
        self.asked += 1
        return {"status": "stopped", "exitstatus": "OK"} if self.now >= self.ends else {"status": "running"}


@pytest.mark.parametrize(("expect", "ends", "most"), [(1.0, 0.9, 1), (1.0, 1.5, 4), (4.0, 6.0, 4), (0.0, 0.3, 6)])
def test_a_task_later_than_expected_is_asked_on_the_scale_of_its_expected_time(expect: float, ends: float,
                                                                            most: int) -> None:
    from pveoci.pve import tasks

    task = _SlowTask(ends)
    tasks.wait(task, "UPID:pve1:000003E8:00001B58:6756A1B2:vzcreate:105:root@pam:", timeout=60, expect=expect,
               sleep=task.sleep, clock=lambda: task.now)
    assert task.asked <= most
    assert task.now < ends + max(0.15 * ends, 0.4)   # found done soon after it ended


def test_successful_task_on_another_node_is_polled_there(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    template = put_template(cluster, "pve2")
    client = connect()
    upid = client.post("nodes", "pve2", "lxc", vmid=950, ostemplate=template, rootfs="local-lvm:1")
    try:
        result = client.wait(upid)
        assert result.exitstatus == "OK"
        assert any(path.startswith("/api2/json/nodes/pve2/tasks/UPID:pve2:") for _m, path, _b in cluster.pve.requests)
    finally:
        client.wait(client.delete("nodes", "pve2", "lxc", 950))


def test_failed_task_raises_with_the_log_tail(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    put_template(cluster, "pve1", "only-on-pve1.tar.zst")
    upid = client.post("nodes", "pve2", "lxc", vmid=951, ostemplate="local:vztmpl/only-on-pve1.tar.zst",
                       rootfs="local-lvm:1")
    with pytest.raises(errors.TaskFailed) as err:
        client.wait(upid)
    assert err.value.message == ("Proxmox task vzcreate 951 on pve2 failed: unable to create CT 951 - "
                                 "volume 'local:vztmpl/only-on-pve1.tar.zst' does not exist")
    assert err.value.log_tail[-1].startswith("TASK ERROR: unable to create CT 951")
    assert err.value.upid == upid


def test_warnings_count_as_success(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        raise TaskError("WARNINGS: 2")

    upid = cluster.call(cluster.pve.task("pve1", "vzstart", "952", "pveoci@pve!bed", body,
                                         log=["WARN: something odd", "WARN: something else"]))
    result = connect().wait(upid)
    assert (result.exitstatus, result.warnings) == ("WARNINGS: 2", 2)


def test_log_lines_reach_the_callback_in_order(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    async def body() -> str:
        return "extracting archive"

    upid = cluster.call(cluster.pve.task("pve1", "vzcreate", "953", "pveoci@pve!bed", body,
                                         log=["starting", "allocating"]))
    seen: list[str] = []
    connect().wait(upid, on_log=seen.append)
    assert seen == ["starting", "allocating", "extracting archive", "TASK OK"]


def test_a_task_that_outlives_the_timeout_is_an_operation_timeout(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.time_scale = 0.1
    cluster.pve.ct_secs["create"] = 8   # 0.8 s: past the timeout, and over soon after
    template = put_template(cluster, "pve1")
    client = connect()
    upid = client.post("nodes", "pve1", "lxc", vmid=954, ostemplate=template, rootfs="local-lvm:1")
    try:
        with pytest.raises(errors.OperationTimeout, match=r"task vzcreate 954 on pve1 is still running after 0.3 s"):
            client.wait(upid, timeout=0.3)
    finally:
        cluster.pve.ct_secs["create"] = 0
        client.wait(upid)
        client.wait(client.delete("nodes", "pve1", "lxc", 954))
