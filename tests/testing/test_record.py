"""Recording, with `responses` standing in for a live cluster: polls, secrets, and the cassette's text."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import responses

from pveoci.pve import tasks
from pveoci.testing import Cassette, Player, Recorder
from pveoci.testing.scrub import Secrets

BASE = "https://pve.test:8006/api2/json"
UPID = "UPID:pve1:0001E240:0A2B3C4D:6756A1B2:vzcreate:100:u@pve!t:"
STAND_IN = "UPID:pve1:00000001:00000000:00000000:vzcreate:100:u@pve!t:"
TOKEN_SECRET = "0f3c5e1a-token-secret-9d2b"
PASSWORD = "correct horse battery staple"


def config(tmp_path: Path, *, password: bool = False) -> Path:
    secret = tmp_path / "secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (PASSWORD if password else TOKEN_SECRET).encode() + b"\n")
    os.close(fd)
    auth = f'password_file = "{secret}"' if password else f'token_id = "u@pve!t"\ntoken_secret_file = "{secret}"'
    path = tmp_path / "config.toml"
    path.write_text(f'[profiles.live]\nhost = "pve.test"\n{auth}\nretries = 0\n')
    return path


def test_only_the_round_that_ended_a_poll_is_kept_and_a_replay_does_not_wait(tmp_path: Path) -> None:
    status = re.compile(re.escape(f"{BASE}/nodes/pve1/tasks/{UPID}/status"))
    with responses.RequestsMock() as live:
        for state in ("running", "running", "stopped"):
            live.get(status, json={"data": {"status": state, "exitstatus": "OK" if state == "stopped" else None,
                                            "upid": UPID, "pid": 123456, "starttime": 1733730738}})
        with Recorder(tmp_path / "poll.json", "live", config=config(tmp_path)) as rec:
            result = tasks.wait(rec.runtime.backend.client, UPID, timeout=10,  # type: ignore[attr-defined]
                                sleep=lambda _s: None)
        assert result.exitstatus == "OK"
        assert len(live.calls) == 3
    recorded = Cassette.load(tmp_path / "poll.json").http
    assert [e["response"]["json"]["data"] for e in recorded] == [
        {"status": "stopped", "exitstatus": "OK", "upid": STAND_IN, "pid": 4194305, "starttime": 0}]
    assert recorded[0]["request"]["path"] == f"/nodes/pve1/tasks/{STAND_IN}/status"

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the replay waited {seconds} s")

    with Player(tmp_path / "poll.json") as play:
        replayed = tasks.wait(play.runtime.backend.client, STAND_IN, timeout=10,  # type: ignore[attr-defined]
                              sleep=no_sleep)
    assert replayed.exitstatus == "OK"


def test_no_secret_reaches_the_cassette_and_a_token_replays_a_password_recording(tmp_path: Path) -> None:
    ticket, csrf = "PVE:root@pam:6756A1B2::c2VjcmV0IHRpY2tldA==", "6756A1B2:Y3NyZiB0b2tlbg"
    with responses.RequestsMock() as live:
        live.post(f"{BASE}/access/ticket", json={"data": {"ticket": ticket, "CSRFPreventionToken": csrf,
                                                          "username": "root@pam"}})
        # An answer that quotes the secrets back (a careless proxy, an error message): they are masked too.
        live.get(f"{BASE}/version", json={"data": {"version": "9.1.2", "echo": f"{PASSWORD} {ticket} {csrf}"}})
        with Recorder(tmp_path / "login.json", "live", config=config(tmp_path, password=True)) as rec:
            assert rec.runtime.backend.version() == (9, 1)
    text = (tmp_path / "login.json").read_text()
    for secret in (PASSWORD, ticket, csrf, ticket.split("::")[1]):
        assert secret not in text
    login = json.loads(text)["http"][0]
    assert login["request"]["body"] == {"username": "root@pam", "password": "********"}
    assert login["response"]["json"]["data"]["ticket"] == "********"
    assert json.loads(text)["auth"] == "ticket"
    with Player(tmp_path / "login.json", auth="token") as play:
        assert play.runtime.backend.version() == (9, 1)


def test_a_cassette_that_still_holds_a_secret_is_refused() -> None:
    secrets = Secrets([TOKEN_SECRET])
    secrets.check('{"ok": "nothing here"}')
    with pytest.raises(RuntimeError, match="a secret of the recording is still in the cassette") as err:
        secrets.check(f'{{"echo": "{TOKEN_SECRET}"}}')
    assert TOKEN_SECRET not in str(err.value)


def test_a_cassette_reads_back_to_the_same_text(tmp_path: Path) -> None:
    from tests.cassettes.scenarios import BY_NAME

    original = BY_NAME["lifecycle"].cassette.read_text()
    cassette = Cassette.loads(original)
    cassette.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == original
    assert oct((tmp_path / "again.json").stat().st_mode & 0o777) == "0o644"


def test_facts_the_runtime_keeps_do_not_age_within_a_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pveoci.runtime import facts

    started = time.time()
    with responses.RequestsMock() as live:
        live.get(f"{BASE}/cluster/resources", json={"data": [{"type": "node", "node": "pve1", "status": "online"}]})
        live.get(f"{BASE}/nodes", json={"data": [{"node": "pve1", "status": "online"}]})
        live.get(f"{BASE}/nodes/pve1/storage", json={"data": []})
        with Recorder(tmp_path / "facts.json", "live", config=config(tmp_path)) as rec:
            ctx = rec.runtime._ctx
            assert [n.name for n in facts.nodes(ctx)] == ["pve1"]
            # A slow cluster: placement's node list (kept 15 s) would be asked again, but a replay runs at once.
            monkeypatch.setattr(time, "time", lambda: started + 3600)
            assert [n.name for n in facts.nodes(ctx)] == ["pve1"]
        assert len(live.calls) == 3  # the nodes (HA state, then the list) and pve1's storages, once
    with Player(tmp_path / "facts.json") as play:
        assert [n.name for n in facts.nodes(play.runtime._ctx)] == ["pve1"]
        assert [n.name for n in facts.nodes(play.runtime._ctx)] == ["pve1"]
