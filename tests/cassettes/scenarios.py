"""pveoci's own main scenarios, each a script on the Python API that checks what a user would see.

The same function runs twice: recording against the test bed (`python -m tests.cassettes`), with the
faults it needs injected into the bed, and replaying the cassette offline (tests/cassettes/test_replay.py),
where the faults are already in the recording.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

import pveoci
from tests.cassettes.bundle import OS_RELEASE

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cassettes"


class Faults(Protocol):
    """What a scenario does to the cluster behind pveoci's back (fakepve's fault controls)."""

    def fail(self, method: str, suffix: str, **how: Any) -> None: ...

    def lose_quorum(self) -> None: ...

    def revoke_tickets(self) -> None: ...


class NoFaults:
    """Replaying: the faults happened during the recording; the cassette holds what they did."""

    def fail(self, method: str, suffix: str, **how: Any) -> None:
        return None

    def lose_quorum(self) -> None:
        return None

    def revoke_tickets(self) -> None:
        return None


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[pveoci.Runtime, Path, Faults], None]
    lxc: bool = False         # real containers (their process runs, exec works)
    auth: str = "token"       # how the recording logs in
    replay_auth: str = "token"

    @property
    def cassette(self) -> Path:
        return FIXTURES / f"{self.name}.json"


def doctor(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    checks = {c.name: c.status for c in rt.doctor()}
    assert checks.pop("packer") in ("pass", "warn")   # this machine's, not the cluster's: not in the cassette
    assert checks.pop("node pull") in ("pass", "skip")   # optional: as the recording's token has Sys.AccessNetwork
    assert checks == {"api": "pass", "auth": "pass", "privileges": "pass", "quorum": "pass", "node pve1": "pass",
                      "node pve2": "pass", "ssh pve1": "pass", "ssh pve2": "pass"}, checks


def lifecycle(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """run, state, exec, kill, wait, delete: the container runs for real on the bed."""
    state = rt.run("web", bundle, node="pve1")
    assert (state.status, state.node, state.bundle) == ("running", "pve1", str(bundle.resolve())), state
    assert rt.state("web").status == "running"
    out = io.BytesIO()
    assert rt.exec("web", ["cat", "/etc/os-release"], stdout=out) == 0
    assert out.getvalue().decode() == OS_RELEASE
    assert rt.exec("web", ["sh", "-c", "echo oops >&2; exit 3"], stderr=(err := io.BytesIO())) == 3
    assert err.getvalue() == b"oops\n"
    rt.kill("web", "TERM")
    assert rt.wait("web", timeout=60) == 128 + 15  # TERM ended its sh
    rt.delete("web")
    assert rt.list() == []


def template_push(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """A template is uploaded once per node-local storage: the second push to pve1 sends nothing; pve2 gets it
    through the upload API."""
    first = rt.templates.push(bundle, node="pve1")
    assert first.uploaded
    assert first.bytes_sent == first.size > 0
    again = rt.templates.push(bundle, node="pve1")
    assert (again.uploaded, again.bytes_sent, again.volid) == (False, 0, first.volid)
    other = rt.templates.push(bundle, node="pve2", transport="api")
    assert other.uploaded
    listed = rt.templates.list()
    assert sorted((t.node, t.volid, t.size) for t in listed) == [("pve1", first.volid, first.size),
                                                                 ("pve2", first.volid, first.size)], listed


def nextid_race(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """Another client takes the VMID nextid gave: the create is retried with a new one."""
    faults.fail("POST", "/nodes/pve1/lxc", status=500, message="CT 100 already exists on node 'pve1'", times=1)
    state = rt.create("racer", bundle, node="pve1")
    assert (state.status, state.vmid) == ("created", 100), state
    rt.delete("racer", force=True)
    assert rt.list() == []


def task_failure(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """A Proxmox task fails after its request succeeded: TaskFailed with the log's tail; nothing is lost."""
    state = rt.create("doomed", bundle, node="pve1")
    faults.fail("POST", f"/nodes/pve1/lxc/{state.vmid}/status/stop", error="did_not_stop", times=1)
    with pytest.raises(pveoci.TaskFailed) as failed:
        rt.delete("doomed", force=True)
    assert failed.value.exitstatus == "container did not stop"
    assert failed.value.log_tail[-1] == "TASK ERROR: container did not stop"
    assert rt.state("doomed").status == "created"
    rt.delete("doomed", force=True)
    assert rt.list() == []


def relogin(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """The login ticket is refused (401): pveoci logs in again once and repeats the request."""
    assert [n.name for n in rt.nodes()] == ["pve1", "pve2"]
    auth = rt.backend.client.session.auth  # type: ignore[attr-defined]
    logins = auth.login_count
    faults.revoke_tickets()
    assert [n.name for n in rt.nodes()] == ["pve1", "pve2"]
    assert auth.login_count == logins + 1


def no_quorum(rt: pveoci.Runtime, bundle: Path, faults: Faults) -> None:
    """The cluster lost quorum: doctor says so, a create fails with NoQuorum and leaves nothing behind."""
    faults.lose_quorum()
    checks = {c.name: c for c in rt.doctor()}
    assert checks["quorum"].status == "fail", checks["quorum"]
    with pytest.raises(pveoci.NoQuorum, match="quorum"):
        rt.create("stuck", bundle, node="pve1")
    assert rt.list() == []


SCENARIOS = (
    Scenario("doctor", doctor, auth="ticket"),  # recorded with a password, replayed with a token
    Scenario("lifecycle", lifecycle, lxc=True),
    Scenario("template_push", template_push),
    Scenario("nextid_race", nextid_race),
    Scenario("task_failure", task_failure),
    Scenario("relogin", relogin, auth="ticket", replay_auth="ticket"),
    Scenario("no_quorum", no_quorum),
)
BY_NAME = {s.name: s for s in SCENARIOS}
