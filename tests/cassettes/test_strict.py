"""The replayer is strict: a request the cassette does not hold fails naming it and the nearest recorded one,
a request made more often than recorded fails, and recorded requests left unused fail the replay."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pveoci
from pveoci.backends.api import ApiLifecycle
from pveoci.testing import Cassette, CassetteMismatch, CassetteUnused, Player
from tests.cassettes.bundle import make_cassette_bundle
from tests.cassettes.scenarios import BY_NAME, NoFaults, Scenario

pytestmark = pytest.mark.usefixtures("no_network")

LIFECYCLE = BY_NAME["lifecycle"]


def number(entries: list[dict[str, Any]], wanted: Callable[[dict[str, Any]], bool]) -> int:
    """The number a message gives the first entry that `wanted` accepts (from 1, as the messages count)."""
    return next(i for i, e in enumerate(entries, 1) if wanted(e))


def recorded() -> Cassette:
    return Cassette.load(LIFECYCLE.cassette)


@pytest.fixture
def replay(replay_dirs: Path) -> Callable[..., None]:
    """Run code against a scenario's cassette (the scenario itself by default), to its end."""
    bundle = make_cassette_bundle(replay_dirs / "bundle")

    def run(scenario: Scenario, code: Callable[[pveoci.Runtime, Path], object] | None = None) -> None:
        with Player(scenario.cassette, auth=scenario.replay_auth, root=replay_dirs / "cache") as play:
            if code is None:
                scenario.run(play.runtime, bundle, NoFaults())
            else:
                code(play.runtime, bundle)

    return run


def test_a_renamed_parameter_fails_the_replay_naming_it(replay: Callable[..., None],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # As if someone renamed `purge` in the API backend's destroy.
    def destroy(self: ApiLifecycle, node: str, vmid: int) -> None:
        self.client.wait(self.client.delete("nodes", node, "lxc", vmid, purged=1,
                                            **{"destroy-unreferenced-disks": 1}))

    monkeypatch.setattr(ApiLifecycle, "destroy", destroy)
    with pytest.raises(CassetteMismatch) as err:
        replay(LIFECYCLE)
    message = str(err.value)
    assert "lifecycle.json: unexpected HTTP DELETE /nodes/pve1/lxc/100?destroy-unreferenced-disks=1&purged=1" \
        in message
    delete = number(recorded().http, lambda e: e["request"]["method"] == "DELETE")
    assert f"nearest recorded (HTTP #{delete}, not used yet): DELETE /nodes/pve1/lxc/100?destroy-unreferenced-disks=1" \
           "&purge=1" in message
    assert "query.purge: recorded 1, not sent" in message
    assert "query.purged: sent 1, not recorded" in message


def test_a_changed_command_on_a_node_fails_naming_it(replay: Callable[..., None]) -> None:
    def code(rt: pveoci.Runtime, bundle: Path) -> None:
        rt.run("web", bundle, node="pve1")
        rt.exec("web", ["cat", "/etc/hostname"], stdout=io.BytesIO())

    with pytest.raises(CassetteMismatch) as err:
        replay(LIFECYCLE, code)
    message = str(err.value)
    assert "lifecycle.json: unexpected SSH exec on pve1 in CT 100: /.pveoci/init exec -- cat /etc/hostname" in message
    cat = number(recorded().ssh, lambda e: e.get("exec", [])[-1:] == ["/etc/os-release"])
    assert f"nearest recorded (SSH #{cat}, not used yet): exec on pve1 in CT 100: /.pveoci/init exec -- cat " \
           "/etc/os-release" in message
    assert 'exec: recorded ["/.pveoci/init", "exec", "--", "cat", "/etc/os-release"], sent [' in message


def test_recorded_requests_left_unused_fail_the_replay(replay: Callable[..., None]) -> None:
    with pytest.raises(CassetteUnused) as err:
        replay(LIFECYCLE, lambda rt, bundle: rt.run("web", bundle, node="pve1"))  # and nothing after
    message = str(err.value)
    # run ends when the container is marked started; everything after that is left (state, exec, kill, ...).
    cassette = recorded()
    started = number(cassette.http, lambda e: "pveoci-started" in str((e["request"]["body"] or {}).get("tags")))
    first_exec = number(cassette.ssh, lambda e: "exec" in e)
    left = len(cassette.http) - started + len(cassette.ssh) - first_exec + 1
    assert message.startswith(f"lifecycle.json: {left} recorded interaction(s) not used:")
    assert f"HTTP #{started + 1} GET /nodes/pve1/lxc/100/status/current" in message
    assert f"SSH #{first_exec} exec on pve1 in CT 100: /.pveoci/init exec -- cat /etc/os-release" in message


def test_a_request_made_more_often_than_recorded_is_refused(replay: Callable[..., None]) -> None:
    def code(rt: pveoci.Runtime, bundle: Path) -> None:
        for _ in range(3):
            rt.nodes()

    expected = "unexpected HTTP GET /cluster/resources\\?type=node\n  it was recorded 3 time\\(s\\)"
    with pytest.raises(CassetteMismatch, match=expected):
        replay(BY_NAME["relogin"], code)


def test_a_mismatch_the_code_swallows_still_fails_the_replay(replay: Callable[..., None]) -> None:
    def code(rt: pveoci.Runtime, bundle: Path) -> None:
        rt.doctor()
        with contextlib.suppress(AssertionError):
            rt.list()  # not in the cassette, and the code under test hides the failure

    with pytest.raises(CassetteMismatch, match="unexpected HTTP GET /cluster/resources\\?type=vm"):
        replay(BY_NAME["doctor"], code)
