"""Narrow unit tests of the session's retry and re-login rules, with `responses` (no network)."""

from __future__ import annotations

import pytest
import requests
import responses

from pveoci import errors
from pveoci.pve.client import PveClient
from pveoci.pve.transport import PveSession, TicketAuth, TokenAuth

BASE = "https://pve.test:8006/api2/json"


def client(auth: TokenAuth | TicketAuth, retries: int = 3) -> PveClient:
    session = PveSession(BASE, auth, retries=retries, sleep=lambda _s: None)
    return PveClient(session, endpoint="https://pve.test:8006", task_timeout=5)


def token() -> TokenAuth:
    return TokenAuth("u@pve!t", "the-secret", verify=True, timeout=5)


def ticket() -> TicketAuth:
    return TicketAuth("root@pam", "pw", verify=True, timeout=5)


def login_ok(n: int) -> responses.BaseResponse:
    return responses.post(f"{BASE}/access/ticket", json={"data": {
        "ticket": f"PVE:root@pam:{n}", "CSRFPreventionToken": f"csrf{n}", "username": "root@pam"}})


@responses.activate
def test_read_is_retried_after_gateway_errors() -> None:
    for status in (503, 595, 502):
        responses.get(f"{BASE}/version", status=status)
    responses.get(f"{BASE}/version", json={"data": {"version": "9.0.10"}})
    assert client(token()).version()["version"] == "9.0.10"
    assert len(responses.calls) == 4


@responses.activate
def test_read_is_retried_after_connection_errors() -> None:
    responses.get(f"{BASE}/nodes", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/nodes", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/nodes", json={"data": [{"node": "pve1"}]})
    assert client(token()).nodes() == [{"node": "pve1"}]


@responses.activate
def test_read_gives_up_after_the_retry_budget() -> None:
    for _ in range(4):
        responses.get(f"{BASE}/nodes", body=requests.ConnectionError("Connection refused"))
    with pytest.raises(errors.ConnectError, match=r"cannot reach the Proxmox API at https://pve.test:8006"):
        client(token(), retries=3).nodes()
    assert len(responses.calls) == 4


@responses.activate
def test_write_is_never_retried_after_a_connection_error() -> None:
    responses.post(f"{BASE}/nodes/pve1/lxc", body=requests.ConnectionError("reset"))
    responses.post(f"{BASE}/nodes/pve1/lxc", json={"data": "UPID:..."})
    with pytest.raises(errors.ConnectError):
        client(token()).post("nodes", "pve1", "lxc", vmid=100)
    assert len(responses.calls) == 1


@responses.activate
def test_write_is_never_retried_after_a_gateway_error() -> None:
    responses.post(f"{BASE}/nodes/pve1/lxc", status=503)
    with pytest.raises(errors.ConnectError, match="unavailable"):
        client(token()).post("nodes", "pve1", "lxc", vmid=100)
    assert len(responses.calls) == 1


@responses.activate
def test_token_header_is_sent_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="pveoci")
    responses.get(f"{BASE}/version", json={"data": {}})
    client(token()).version()
    assert responses.calls[0].request.headers["Authorization"] == "PVEAPIToken=u@pve!t=the-secret"
    assert "the-secret" not in caplog.text


@responses.activate
def test_ticket_login_then_cookie_and_csrf_on_writes() -> None:
    login_ok(1)
    responses.get(f"{BASE}/version", json={"data": {}})
    responses.put(f"{BASE}/nodes/pve1/lxc/100/config", json={"data": None})
    c = client(ticket())
    c.version()
    c.put("nodes", "pve1", "lxc", 100, "config", memory=256)
    get, put = responses.calls[1].request, responses.calls[2].request
    assert "PVEAuthCookie=PVE:root@pam:1" in get.headers["Cookie"]
    assert "CSRFPreventionToken" not in get.headers
    assert put.headers["CSRFPreventionToken"] == "csrf1"


@responses.activate
def test_expired_ticket_logs_in_again_once_and_retries_even_a_write() -> None:
    login_ok(1)
    responses.post(f"{BASE}/nodes/pve1/lxc/100/status/start", status=401)
    login_ok(2)
    responses.post(f"{BASE}/nodes/pve1/lxc/100/status/start", json={"data": "UPID:x"})
    assert client(ticket()).post("nodes", "pve1", "lxc", 100, "status", "start") == "UPID:x"
    assert responses.calls[3].request.headers["CSRFPreventionToken"] == "csrf2"


@responses.activate
def test_a_second_401_is_an_auth_error() -> None:
    login_ok(1)
    responses.get(f"{BASE}/version", status=401)
    login_ok(2)
    responses.get(f"{BASE}/version", status=401)
    with pytest.raises(errors.AuthError, match="refused the credentials of root@pam"):
        client(ticket()).version()


@responses.activate
def test_wrong_password_is_an_auth_error_without_the_password() -> None:
    responses.post(f"{BASE}/access/ticket", status=401)
    with pytest.raises(errors.AuthError, match="wrong user or password") as err:
        client(ticket()).version()
    assert "pw" not in str(err.value).split("password")[-1]


@responses.activate
def test_token_auth_refused_is_an_auth_error_naming_the_token() -> None:
    responses.get(f"{BASE}/version", status=401)
    with pytest.raises(errors.AuthError, match=r"u@pve!t"):
        client(token()).version()
    assert len(responses.calls) == 1


@responses.activate
def test_path_segments_are_quoted_so_a_volid_stays_one_segment() -> None:
    responses.delete(f"{BASE}/nodes/pve1/storage/local/content/local:vztmpl%2Fa%20b.tar.zst", json={"data": "U"})
    assert client(token()).delete("nodes", "pve1", "storage", "local", "content", "local:vztmpl/a b.tar.zst") == "U"
