"""Replays run with the network blocked: any socket connect or name lookup fails the test."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Block connects and lookups for the test (monkeypatch undoes it); the attempts it refused."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what}{args[1:] if what == 'connect' else args}")
            raise NetworkUsed(f"a replay tried to use the network: {attempts[-1]}")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


@pytest.fixture
def replay_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Templates are packed in the user's cache directory: keep it inside the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path
