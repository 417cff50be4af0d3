"""The seam is written once: every operation of the protocols (backends.base) is reached on every backend, with
the protocol's parameters, through the parts a backend is made of (backends.assembled) or, for auto, the
backend it chose; nothing lists the operations but the protocols."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from pveoci.backends.api import ApiBackend
from pveoci.backends.assembled import ROUTES, Assembled
from pveoci.backends.auto import OPERATIONS, AutoBackend
from pveoci.backends.base import Backend, operations
from pveoci.backends.memory import MemoryBackend
from pveoci.backends.pct import PctBackend
from pveoci.settings import Profile, Settings
from tests.backends.fake_runner import FakeRunner


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults: what a caller relies on (annotations are checked by mypy)."""
    found = list(inspect.signature(function).parameters.values())
    if found and found[0].name == "self":
        found = found[1:]
    return [(p.name, p.kind, p.default) for p in found]


def settings(tmp_path: Path, backend: str) -> Settings:
    return Settings(Profile(name="t", host="pve1.example", backend=backend), tmp_path / "x.toml")


def assembled(tmp_path: Path) -> list[Assembled]:
    return [ApiBackend(object(), settings(tmp_path, "api")),  # type: ignore[arg-type]  # never asked here
            PctBackend(settings(tmp_path, "pct"), runner=FakeRunner())]


def test_every_operation_is_routed_to_one_part() -> None:
    assert set(ROUTES) | {"checks", "close"} == set(operations(Backend))
    assert len(operations(Backend)) == 41


@pytest.mark.parametrize("name", operations(Backend))
def test_every_operation_of_an_assembled_backend_is_its_part_s_with_the_protocol_s_parameters(
        name: str, tmp_path: Path) -> None:
    for backend in assembled(tmp_path):
        found = getattr(backend, name)
        assert parameters(found) == parameters(getattr(Backend, name)), f"{type(backend).__name__}.{name}"
        if name in ROUTES:
            assert found.__self__ is getattr(backend, ROUTES[name])


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_auto_hands_every_operation_to_the_backend_it_chose(name: str) -> None:
    chosen = MemoryBackend()
    auto = AutoBackend(lambda: chosen, lambda: pytest.fail("the API answered"))  # type: ignore[arg-type, return-value]
    assert getattr(auto, name) == getattr(chosen, name)
    assert parameters(getattr(auto, name)) == parameters(getattr(Backend, name))


def test_the_memory_backend_has_every_operation_with_the_protocol_s_parameters() -> None:
    memory = MemoryBackend()
    for name in operations(Backend):
        assert parameters(getattr(memory, name)) == parameters(getattr(Backend, name)), name


def test_what_no_protocol_declares_is_not_made_up(tmp_path: Path) -> None:
    for backend in [*assembled(tmp_path), AutoBackend(MemoryBackend, MemoryBackend)]:  # type: ignore[arg-type]
        with pytest.raises(AttributeError, match="no attribute 'strat'"):
            backend.strat  # type: ignore[attr-defined]  # noqa: B018
