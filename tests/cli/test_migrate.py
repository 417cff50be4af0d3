"""`pveoci migrate` on the three-node bed with real containers: restart mode moves a running container and its
process runs again there; HA-managed ones go through HA; an offline or disallowed target is refused before
anything changes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

CHATTY = ["sh", "-c", "echo started on $(hostname); while true; do sleep 1; done"]


def pveoci(bed: Testbed, root: Path, *args: str) -> Result:
    return invoke(["--root", str(root), *args], env=bed.env())


def state(bed: Testbed, root: Path, cid: str) -> dict:  # type: ignore[type-arg]
    done = pveoci(bed, root, "state", cid)
    assert done.code == 0, done.err
    return json.loads(done.out)  # type: ignore[no-any-return]


def changes(bed: Testbed) -> list[str]:
    """The requests that change something (everything but reads) the bed has had."""
    return [f"{method} {path}" for method, path, _ in bed.pve.requests if method != "GET"]


@pytest.fixture
def running(lxc_bed3: Testbed, tmp_path: Path) -> Path:
    bundle = make_busybox_bundle(tmp_path / "b", CHATTY)
    made = pveoci(lxc_bed3, tmp_path, "run", "-d", "-b", str(bundle), "--node", "pve1", "web")
    assert made.code == 0, made.err
    return tmp_path


def wait_for(what: str, path: Path, count: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or path.read_text().count(what) < count:
        assert time.monotonic() < deadline, f"{what!r} not {count} time(s) in {path}"
        time.sleep(0.1)


def test_a_running_container_moves_in_restart_mode_and_runs_there(lxc_bed3: Testbed, running: Path) -> None:
    bed, root = lxc_bed3, running
    vmid = state(bed, root, "web")["pveoci"]["vmid"]
    wait_for("started on", bed.console_log("pve1", vmid))
    moved = pveoci(bed, root, "migrate", "web", "--to", "pve2", "-o", "json")
    assert moved.code == 0, moved.err
    result = json.loads(moved.out)
    assert (result["from"], result["to"], result["mode"], result["result"], result["status"]) == (
        "pve1", "pve2", "restart", "moved", "running")
    after = state(bed, root, "web")
    assert (after["status"], after["pveoci"]["node"], after["pveoci"]["vmid"]) == ("running", "pve2", vmid)
    (ct,) = bed.pve.cts
    assert (ct.node, after["pid"]) == ("pve2", ct.pid)
    # The process runs again on pve2 (the console log came along with the container's files).
    wait_for("started on", bed.console_log("pve2", vmid), count=2)
    inside = pveoci(bed, root, "exec", "web", "--", "cat", "/.pveoci/run/state")
    assert (inside.code, inside.out) == (0, "running"), inside.err
    assert "pveoci-moving" not in str(ct.config.get("tags"))
    assert json.loads(pveoci(bed, root, "state", "--cached", "web").out)["pveoci"]["node"] == "pve2"


def test_an_offline_or_disallowed_target_is_refused_before_any_change(lxc_bed3: Testbed, running: Path) -> None:
    bed, root = lxc_bed3, running
    bed.pve.set_node_offline("pve3")
    before = changes(bed)
    offline = pveoci(bed, root, "migrate", "web", "--to", "pve3")
    assert offline.code == 12
    assert offline.err.splitlines()[-1] == "pveoci: error: node 'pve3' is offline: web stays where it is"
    bed.pve.maintenance = {"pve2"}
    maintained = pveoci(bed, root, "migrate", "web", "--to", "pve2")
    assert maintained.code == 30
    assert maintained.err.splitlines()[-1] == "pveoci: error: cannot move web to pve2: pve2 is in maintenance"
    nowhere = pveoci(bed, root, "migrate", "web")  # auto: pve2 in maintenance, pve3 offline
    assert nowhere.code == 29
    assert changes(bed) == before  # nothing was asked to change
    assert state(bed, root, "web")["pveoci"]["node"] == "pve1"


def test_a_dry_run_prints_the_checks(lxc_bed3: Testbed, running: Path) -> None:
    bed, root = lxc_bed3, running
    before = changes(bed)
    dry = pveoci(bed, root, "migrate", "web", "--to", "pve3", "--dry-run")
    assert dry.code == 0, dry.err
    lines = dry.out.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert "proxmox    pass    Proxmox allows pve3" in dry.out
    assert lines[-1] == "web  pve1 -> pve3  would move (restart)"
    assert changes(bed) == before


def test_an_ha_managed_container_moves_through_ha(lxc_bed3: Testbed, running: Path) -> None:
    bed, root = lxc_bed3, running
    (ct,) = bed.pve.cts
    ct.ha_state = "started"
    bed.pve.ha_move_delay = 1.0  # the HA task ends at once; the container moves a second later
    moved = pveoci(bed, root, "migrate", "web", "--to", "pve3", "-o", "json")
    assert moved.code == 0, moved.err
    assert json.loads(moved.out)["mode"] == "ha"
    assert any("/lxc/" in c and c.endswith("/migrate") for c in changes(bed))
    after = state(bed, root, "web")
    assert (after["status"], after["pveoci"]["node"]) == ("running", "pve3")
    inside = pveoci(bed, root, "exec", "web", "--", "cat", "/.pveoci/run/state")
    assert (inside.code, inside.out) == (0, "running"), inside.err


def test_the_task_log_is_the_progress(lxc_bed3: Testbed, running: Path) -> None:
    import pveoci as api

    notes: list[str] = []

    class Notes:
        def note(self, message: str) -> None:
            notes.append(message)

        def transfer(self, name: str, total: int | None):  # type: ignore[no-untyped-def]
            return lambda n: None

        def done(self, name: str) -> None:
            return None

    with api.connect(config=lxc_bed3.config_path, root=running) as rt:
        moved = rt.migrate("web", "pve2", progress=Notes())
    assert moved.result == "moved"
    assert notes[0] == f"moving web (CT {moved.vmid}) from pve1 to pve2 (restart)"
    assert f"starting migration of CT {moved.vmid} to node 'pve2'" in notes
