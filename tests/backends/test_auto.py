"""`backend = auto`: the API unless it cannot be reached; an authorization error is not an outage."""

from __future__ import annotations

import logging

import pytest

from pveoci import errors
from pveoci.backends.auto import AutoBackend
from pveoci.backends.memory import MemoryBackend


class Api(MemoryBackend):
    name = "api"

    def __init__(self, problem: errors.PveociError | None) -> None:
        super().__init__(nodes=("pve1",))
        self.problem = problem
        self.closed = False

    def version(self) -> tuple[int, int]:
        if self.problem is not None:
            raise self.problem
        return super().version()

    def close(self) -> None:
        self.closed = True


class Pct(MemoryBackend):
    name = "pct"


def auto(problem: errors.PveociError | None) -> tuple[AutoBackend, list[Api], list[Pct]]:
    """An auto backend over in-memory stand-ins, and the backends it made so far."""
    apis: list[Api] = []
    pcts: list[Pct] = []

    def make_api() -> Api:
        apis.append(Api(problem))
        return apis[-1]

    def make_pct() -> Pct:
        pcts.append(Pct())
        return pcts[-1]

    return AutoBackend(make_api, make_pct), apis, pcts  # type: ignore[arg-type]  # a stand-in for PctBackend


@pytest.mark.parametrize("down", [
    errors.ConnectError("cannot reach the Proxmox API at https://pve1:8006: connection refused"),
    errors.TlsError("TLS certificate of https://pve1:8006 is not trusted"),
    errors.ConnectError("the Proxmox API is unavailable (503 Service Unavailable) for GET /version"),
])
def test_an_unreachable_api_falls_back_to_pct_and_says_so_once(down: errors.PveociError,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    backend, apis, pcts = auto(down)
    with caplog.at_level(logging.WARNING, logger="pveoci.backend"):
        backend.guests()
        backend.nodes()
        backend.next_vmid()
    assert backend.fell_back
    assert len(pcts) == 1
    assert pcts[0].calls == ["guests", "nodes", "next_vmid"]
    assert apis[0].closed
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert said[0].startswith("the Proxmox API cannot be reached (")
    assert said[0].endswith("; using pct over SSH instead")


@pytest.mark.parametrize("refusal", [
    errors.AuthError("the Proxmox API refused the credentials of pveoci@pve!x (authentication failure)"),
    errors.PermissionDenied("permission denied: x lacks Sys.Audit on /"),
    errors.NodeOffline("node 'pve1' is offline or unreachable from the API (No route to host)"),
])
def test_an_api_that_answers_is_used_even_when_it_refuses(refusal: errors.PveociError) -> None:
    backend, _apis, pcts = auto(refusal)
    with pytest.raises(type(refusal)):
        backend.guests()
    assert pcts == []


def test_a_working_api_is_used_and_decided_once() -> None:
    backend, apis, pcts = auto(None)
    backend.guests()
    backend.nodes()
    assert not backend.fell_back
    assert len(apis) == 1
    assert apis[0].calls == ["version", "guests", "nodes"]
    assert pcts == []


def test_nothing_is_asked_before_the_first_call() -> None:
    _backend, apis, pcts = auto(None)
    assert (apis, pcts) == ([], [])
