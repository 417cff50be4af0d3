"""The runtime over the in-memory backend: fast unit tests of the use cases (the bed stays the test of record).
The in-memory cluster and its Runtimes (memory, make_runtime, rt) are tests/inmemory.py's, for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.inmemory import THREE, MakeRuntime, tiny_bundle

__all__ = ["THREE", "MakeRuntime", "tiny_bundle"]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return tiny_bundle(tmp_path / "bundle")


@pytest.fixture(autouse=True)
def _work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Packing works in the user's cache directory: keep it inside the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    os.makedirs(tmp_path / "xdg-cache", exist_ok=True)
