"""pveoci's own scenarios replayed from fixtures/cassettes/, offline (the network blocked), through the pytest
plugin as a user would use it. Re-record them on the bed: `sudo .venv/bin/python -m tests.cassettes`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from pveoci.testing.recorder import Session
from tests.cassettes.bundle import make_cassette_bundle
from tests.cassettes.conftest import NetworkUsed
from tests.cassettes.scenarios import SCENARIOS, NoFaults, Scenario

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.pve_cassette(s.cassette, auth=s.replay_auth), id=s.name) for s in SCENARIOS])
def test_scenario_replays_offline(scenario: Scenario, pve_cassette: Session, replay_dirs: Path) -> None:
    scenario.run(pve_cassette.runtime, make_cassette_bundle(replay_dirs / "bundle"), NoFaults())


def test_every_scenario_has_its_cassette() -> None:
    assert sorted(p.stem for p in SCENARIOS[0].cassette.parent.glob("*.json")) == sorted(s.name for s in SCENARIOS)


def test_the_network_guard_refuses_connections(no_network: list[str]) -> None:
    with pytest.raises(NetworkUsed, match="tried to use the network"):
        requests.get("https://192.0.2.1:8006/api2/json/version", timeout=1)
    with pytest.raises(NetworkUsed):
        socket.create_connection(("192.0.2.1", 22), timeout=1)
    with pytest.raises(NetworkUsed):
        socket.socket().connect(("192.0.2.1", 22))
    assert len(no_network) == 3
