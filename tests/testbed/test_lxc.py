"""The bed's containers run for real (LXC), driven through the API as on PVE; `pct exec` works over SSH."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pveoci import errors
from pveoci.settings import SshSettings
from pveoci.ssh import SshConnector, run
from pveoci.template.pack import Packed, pack
from tests.conftest import need
from tests.testbed import Testbed, parts
from tests.testbed.bundle import make_busybox_bundle
from tests.testbed.lxc import LxcError, host_features, lxc_config

pytestmark = pytest.mark.bed

SCRIPTS = {
    # Prints, then sleeps as PID 1 (which ignores SIGPWR: a clean shutdown times out, as on PVE).
    "run": "echo hello from the entrypoint\necho to stderr >&2\nexec sleep 1000\n",
    "fail": "echo 'boom: no config file'\nexit 3\n",
    "short": "echo bye\nsleep 2\n",
    # Ends cleanly on lxc-stop's SIGPWR.
    "graceful": "trap 'echo shutting down; exit 0' PWR TERM\necho ready\nwhile :; do sleep 0.1; done\n",
}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    """A busybox template with the scripts above in /bin, packed once for the module."""
    need(parts.missing_for_busybox())
    base = tmp_path_factory.mktemp("lxc-template")
    rootfs = make_busybox_bundle(base / "bundle") / "rootfs"
    for name, body in SCRIPTS.items():
        script = rootfs / "bin" / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    return pack(rootfs, base / "out")


@pytest.fixture
def template(lxc_bed: Testbed, packed: Packed) -> str:
    """The template on pve1's `local` storage (reset() removes it after the test); its volid."""
    shutil.copyfile(packed.path, lxc_bed.template_dir("pve1") / packed.name)
    return f"local:vztmpl/{packed.name}"


@pytest.fixture
def client(connect):  # type: ignore[no-untyped-def]
    return connect()


def create(client: Any, vmid: int, template: str, entrypoint: str = "/bin/run", node: str = "pve1",
           **options: Any) -> None:
    client.wait(client.post("nodes", node, "lxc", vmid=vmid, ostemplate=template, rootfs="local-lvm:1",
                            entrypoint=entrypoint, **options))


def start(client: Any, vmid: int, node: str = "pve1") -> None:
    client.wait(client.post("nodes", node, "lxc", vmid, "status", "start"))


def status(client: Any, vmid: int, node: str = "pve1") -> dict[str, Any]:
    data: dict[str, Any] = client.get("nodes", node, "lxc", vmid, "status", "current")
    return data


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def alive(pid: int) -> bool:
    """True while the host process runs (a zombie, ended but not yet reaped, counts as gone)."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return False


@pytest.fixture
def ssh(lxc_bed: Testbed) -> Iterator[Callable[..., Any]]:
    """Run a command line on a node over SSH (as pveoci does): (exit status, stdout, stderr)."""
    settings = SshSettings(user="root", port=lxc_bed.ssh_port, agent=False, key_files=[lxc_bed.client_key],
                           known_hosts=lxc_bed.known_hosts)
    connector = SshConnector(settings, lxc_bed.addresses)
    clients: dict[str, Any] = {}

    def call(argv: list[str], node: str = "pve1", stdin: bytes | None = None) -> tuple[int, str, str]:
        if node not in clients:
            clients[node] = connector.connect(node)
        result = run(clients[node], argv, stdin=stdin, timeout=30)
        return result.status, result.stdout.decode(), result.stderr.decode()

    yield call
    for c in clients.values():
        c.close()


# ------------------------------------------------------------------------ lifecycle


def test_start_runs_the_entrypoint_and_stop_ends_it(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 700, template)
    assert (lxc_bed.ct_dir("pve1", 700) / "rootfs" / "bin" / "busybox").is_file()
    assert status(client, 700)["status"] == "stopped"
    start(client, 700)
    current = status(client, 700)
    assert current["status"] == "running"
    pid = current["pid"]
    assert alive(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"1000"]
    assert eventually(lambda: "hello from the entrypoint" in lxc_bed.console_log("pve1", 700).read_text())
    assert "to stderr" in lxc_bed.console_log("pve1", 700).read_text()
    listed = {c["vmid"]: c for c in client.get("nodes", "pve1", "lxc")}
    assert (listed[700]["status"], listed[700]["pid"]) == ("running", pid)
    resources = {r["vmid"]: r for r in client.get("cluster", "resources", type="vm")}
    assert resources[700]["status"] == "running"
    config = (lxc_bed.lxc_path("pve1") / "700" / "config").read_text()
    assert "lxc.init.cmd = /bin/run\n" in config
    assert "lxc.net.0.type = empty\n" in config

    client.wait(client.post("nodes", "pve1", "lxc", 700, "status", "stop"))
    current = status(client, 700)
    assert current["status"] == "stopped"
    assert "pid" not in current
    assert eventually(lambda: not alive(pid))
    with pytest.raises(errors.PveociError, match="CT 700 not running"):
        client.post("nodes", "pve1", "lxc", 700, "status", "stop")


def test_create_with_start_runs_it(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 718, template, start=1)
    current = status(client, 718)
    assert current["status"] == "running"
    assert alive(current["pid"])


def test_an_entrypoint_that_exits_at_once_fails_the_start(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 701, template, entrypoint="/bin/fail")
    with pytest.raises(errors.TaskFailed) as failed:
        start(client, 701)
    assert failed.value.exitstatus == "startup for container '701' failed"
    assert "console: boom: no config file" in failed.value.log_tail
    assert status(client, 701)["status"] == "stopped"


def test_a_process_that_ends_by_itself_is_reported_stopped(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 702, template, entrypoint="/bin/short")
    start(client, 702)
    assert status(client, 702)["status"] == "running"
    assert eventually(lambda: status(client, 702)["status"] == "stopped")
    assert "pid" not in status(client, 702)
    resources = {r["vmid"]: r for r in client.get("cluster", "resources", type="vm")}
    assert resources[702]["status"] == "stopped"
    start(client, 702)  # not "already running": PVE knows it ended
    assert eventually(lambda: lxc_bed.console_log("pve1", 702).read_text().count("bye") == 2)


def test_shutdown_of_a_sleep_times_out_unless_forced(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 703, template)
    start(client, 703)
    pid = status(client, 703)["pid"]
    with pytest.raises(errors.TaskFailed) as failed:
        client.wait(client.post("nodes", "pve1", "lxc", 703, "status", "shutdown", timeout=1))
    assert failed.value.exitstatus == "container did not stop"
    assert (status(client, 703)["status"], status(client, 703)["pid"]) == ("running", pid)
    client.wait(client.post("nodes", "pve1", "lxc", 703, "status", "shutdown", timeout=1, forceStop=1))
    assert status(client, 703)["status"] == "stopped"
    assert eventually(lambda: not alive(pid))


def test_shutdown_of_a_process_that_handles_sigpwr_is_clean(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 704, template, entrypoint="/bin/graceful")
    start(client, 704)
    client.wait(client.post("nodes", "pve1", "lxc", 704, "status", "shutdown", timeout=10))
    assert status(client, 704)["status"] == "stopped"
    assert "shutting down" in lxc_bed.console_log("pve1", 704).read_text()


def test_suspend_freezes_and_resume_thaws(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 705, template)
    start(client, 705)
    client.wait(client.post("nodes", "pve1", "lxc", 705, "status", "suspend"))
    assert status(client, 705)["status"] == "running"  # as PVE reports a frozen container
    assert lxc_bed.pve.lxc.state("pve1", 705, fresh=True)[0] == "FROZEN"
    client.wait(client.post("nodes", "pve1", "lxc", 705, "status", "resume"))
    assert lxc_bed.pve.lxc.state("pve1", 705, fresh=True)[0] == "RUNNING"
    with pytest.raises(errors.PveociError, match="CT 705 already running"):
        client.post("nodes", "pve1", "lxc", 705, "status", "resume")


def test_destroy_removes_the_container_and_its_files(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 706, template)
    start(client, 706)
    pid = status(client, 706)["pid"]
    with pytest.raises(errors.PveociError, match="unable to destroy CT 706 - container is running"):
        client.delete("nodes", "pve1", "lxc", 706)
    client.wait(client.delete("nodes", "pve1", "lxc", 706, force=1))
    assert eventually(lambda: not alive(pid))
    assert not lxc_bed.ct_dir("pve1", 706).exists()
    assert not (lxc_bed.lxc_path("pve1") / "706").exists()
    assert [ct.vmid for ct in lxc_bed.pve.cts] == []


def test_migrate_with_restart_runs_it_on_the_target(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 707, template)
    start(client, 707)
    old_pid = status(client, 707)["pid"]
    client.wait(client.post("nodes", "pve1", "lxc", 707, "migrate", target="pve2", restart=1, timeout=1))
    assert not lxc_bed.ct_dir("pve1", 707).exists()
    assert (lxc_bed.ct_dir("pve2", 707) / "rootfs").is_dir()
    current = status(client, 707, node="pve2")
    assert current["status"] == "running"
    assert current["pid"] != old_pid
    assert alive(current["pid"])
    assert not alive(old_pid)


def test_config_changes_apply_at_the_next_start(lxc_bed: Testbed, template: str, client: Any, ssh: Any) -> None:
    create(client, 708, template, env="A=1")
    client.put("nodes", "pve1", "lxc", 708, "config", env="A=2", hostname="changed", memory=256)
    start(client, 708)
    code, out, _ = ssh(["pct", "exec", "708", "--", "/bin/cat", "/proc/1/environ"])
    assert (code, "A=2" in out.split("\0")) == (0, True)
    assert ssh(["pct", "exec", "708", "--", "/bin/hostname"])[1] == "changed\n"
    if host_features().memory == "v1":  # the limit, read from the host's view of the container's cgroup
        pid = status(client, 708)["pid"]
        line = next(x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ":memory:" in x)
        limit = Path("/sys/fs/cgroup/memory" + line.split(":", 2)[2]) / "memory.limit_in_bytes"
        assert limit.read_text() == f"{256 * 1024 * 1024}\n"


def test_read_only_rootfs(lxc_bed: Testbed, template: str, client: Any, ssh: Any) -> None:
    client.wait(client.post("nodes", "pve1", "lxc", vmid=709, ostemplate=template, rootfs="local-lvm:1,ro=1",
                            entrypoint="/bin/run"))
    start(client, 709)
    code, _out, err = ssh(["pct", "exec", "709", "--", "/bin/mkdir", "/new-dir"])
    assert code != 0
    assert "Read-only file system" in err


# ----------------------------------------------------------------------- pct exec


def test_env_reaches_the_process_and_pct_exec_passes_everything_through(
        lxc_bed: Testbed, template: str, client: Any, ssh: Any) -> None:
    create(client, 710, template, env="GREETING=hello world\0EMPTY=\0PATH=/bin", hostname="web1")
    start(client, 710)
    code, out, _ = ssh(["pct", "exec", "710", "--", "/bin/cat", "/proc/1/environ"])
    assert code == 0
    assert {"GREETING=hello world", "EMPTY=", "PATH=/bin"} <= set(out.split("\0"))
    assert ssh(["pct", "exec", "710", "--", "/bin/sh", "-c", "exit 7"])[0] == 7
    assert ssh(["pct", "exec", "710", "--", "/bin/sh", "-c", "echo out; echo err >&2"]) == (0, "out\n", "err\n")
    assert ssh(["pct", "exec", "710", "--", "/bin/cat"], stdin=b"piped in\n") == (0, "piped in\n", "")
    assert ssh(["pct", "exec", "710", "--", "/bin/hostname"])[1] == "web1\n"
    # Words reach the container as they were quoted: nothing is re-split or expanded on the way.
    assert ssh(["pct", "exec", "710", "--", "/bin/echo", "a  b", "$HOME", "*"])[1] == "a  b $HOME *\n"


def test_pct_refuses_what_it_cannot_do(lxc_bed: Testbed, template: str, client: Any, ssh: Any) -> None:
    code, _out, err = ssh(["pct", "frobnicate", "711"])
    assert (code, err) == (255, "ERROR: unknown command 'pct frobnicate'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]\n")
    assert ssh(["pct", "exec", "711", "--", "/bin/true"])[0] == 255  # no such CT on this node
    create(client, 711, template)
    code, _out, err = ssh(["pct", "exec", "711", "--", "/bin/true"])
    assert (code, err) == (255, "CT 711 not running\n")
    start(client, 711)
    assert ssh(["pct", "exec", "711", "--", "/bin/true"], node="pve2")[0] == 255  # it lives on pve1


def test_lxc_tools_on_a_node_act_on_its_own_containers(lxc_bed: Testbed, template: str, client: Any,
                                                       ssh: Any) -> None:
    create(client, 717, template)
    start(client, 717)
    assert ssh(["lxc-info", "-n", "717", "-s"])[1].split() == ["State:", "RUNNING"]
    assert ssh(["lxc-freeze", "-n", "717"])[0] == 0
    assert lxc_bed.pve.lxc.state("pve1", 717, fresh=True)[0] == "FROZEN"
    assert ssh(["lxc-unfreeze", "-n", "717"])[0] == 0
    assert ssh(["lxc-info", "-n", "717", "-s"], node="pve2")[0] != 0  # pve2 has no such container
    # The pid PVE reports is the host's: `kill` on the node reaches the container's init.
    pid = status(client, 717)["pid"]
    assert ssh(["kill", "-s", "KILL", str(pid)])[0] == 0
    assert eventually(lambda: status(client, 717)["status"] == "stopped")


# ------------------------------------------------------------------------ failures


def test_create_from_a_template_the_node_lacks_fails(lxc_bed: Testbed, template: str, client: Any) -> None:
    with pytest.raises(errors.TaskFailed, match=r"unable to create CT 712 - volume '.*' does not exist"):
        create(client, 712, template, node="pve2")
    assert not lxc_bed.ct_dir("pve2", 712).exists()
    assert [ct.vmid for ct in lxc_bed.pve.cts] == []


def test_a_broken_template_fails_the_create_and_leaves_nothing(lxc_bed: Testbed, client: Any) -> None:
    (lxc_bed.template_dir("pve1") / "broken.tar.zst").write_bytes(b"not a tarball")
    with pytest.raises(errors.TaskFailed, match=r"unable to create CT 713 - unable to unpack broken.tar.zst"):
        create(client, 713, "local:vztmpl/broken.tar.zst")
    assert not lxc_bed.ct_dir("pve1", 713).exists()
    assert [ct.vmid for ct in lxc_bed.pve.cts] == []


def test_an_entrypoint_with_quotes_is_refused(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 714, template, entrypoint="/bin/sh -c 'echo hi'")
    with pytest.raises(errors.TaskFailed, match=r"has quotes: LXC splits lxc\.init\.cmd on spaces"):
        start(client, 714)
    assert status(client, 714)["status"] == "stopped"


def test_lxc_config_refuses_what_would_break_it(tmp_path: Path) -> None:
    with pytest.raises(LxcError, match="not KEY=VALUE"):
        lxc_config(1, {"env": "HOME"}, tmp_path)  # LXC would copy the host's HOME
    with pytest.raises(LxcError, match="control character"):
        lxc_config(1, {"env": "A=1\nlxc.init.cmd = /bin/evil"}, tmp_path)


# ------------------------------------------------------------------------- cleanup


def test_reset_stops_every_container_and_forgets_it(lxc_bed: Testbed, template: str, client: Any) -> None:
    create(client, 715, template)
    start(client, 715)
    pid = status(client, 715)["pid"]
    create(client, 716, template)
    start(client, 716)
    # A shutdown that would take a minute is still running when the test ends.
    upid = client.post("nodes", "pve1", "lxc", 716, "status", "shutdown", timeout=60)
    began = time.monotonic()
    lxc_bed.reset()
    assert time.monotonic() - began < 10
    assert lxc_bed.pve.tasks[upid]["exitstatus"] == "interrupted: the test bed was reset"
    assert eventually(lambda: not alive(pid))
    assert lxc_bed.pve.cts == []
    assert not any((lxc_bed.root / "nodes" / "pve1" / "ct").iterdir())
    assert not lxc_bed.pve.lxc_enabled  # back to the bed's default
