"""Cassettes: record a session's Proxmox API traffic and SSH commands once, replay them offline in tests.

- `Recorder(path, profile)` / `Player(path)`: sessions whose `connect()` gives Runtimes bound to a cassette
  (pveoci.testing.recorder); the format is described in pveoci.testing.cassette.
- The pytest plugin (pveoci.testing.plugin, registered as a pytest11 entry point): the `pve_cassette`
  fixture and marker, and `pytest --pve-record PROFILE`. See docs/testing.md.

Replaying needs the `responses` library (`pip install 'pveoci[testing]'`); nothing here is imported by
pveoci itself, and nothing heavy is imported until a session starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pveoci.testing.cassette import Cassette, CassetteError
    from pveoci.testing.match import CassetteMismatch, CassetteUnused
    from pveoci.testing.recorder import Player, Recorder

__all__ = ["Cassette", "CassetteError", "CassetteMismatch", "CassetteUnused", "Player", "Recorder"]

_EXPORTS = {"Cassette": "cassette", "CassetteError": "cassette", "CassetteMismatch": "match",
            "CassetteUnused": "match", "Player": "recorder", "Recorder": "recorder"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pveoci.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"pveoci.testing.{module}"), name)
