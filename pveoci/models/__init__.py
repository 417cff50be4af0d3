"""The typed values pveoci's API returns and its backends report: containers, nodes, storages, templates.

Plain frozen dataclasses, no behaviour beyond a few derived properties and `to_json()` (the
shape `-o json` prints, stable across releases). Import them from here: `from pveoci.models import State`.
Those of a container's state (models/state.py) and of placement and moves (models/placements.py) are imported
when first asked for, so that a command builds only the dataclasses it uses (a dataclass costs about a
millisecond to build at import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pveoci.models.core import (
    OCI_VERSION,
    Check,
    Completed,
    Destination,
    Guest,
    MigrationCheck,
    Node,
    PushResult,
    Status,
    Storage,
    Template,
    UnpackedImage,
)

if TYPE_CHECKING:
    from pveoci.models.placements import Migration as Migration
    from pveoci.models.placements import MoveMode as MoveMode
    from pveoci.models.placements import MoveReport as MoveReport
    from pveoci.models.placements import MoveResult as MoveResult
    from pveoci.models.placements import NodeScore as NodeScore
    from pveoci.models.placements import Placement as Placement
    from pveoci.models.state import GcReport as GcReport
    from pveoci.models.state import ProcessTable as ProcessTable
    from pveoci.models.state import StandIn as StandIn
    from pveoci.models.state import State as State
    from pveoci.models.state import Stats as Stats

#: The names imported on first use, and the module of each.
LATER = {**dict.fromkeys(("State", "StandIn", "Stats", "GcReport", "ProcessTable"), "pveoci.models.state"),
         **dict.fromkeys(("NodeScore", "Placement", "Migration", "MoveReport", "MoveResult", "MoveMode"),
                         "pveoci.models.placements")}

__all__ = ["OCI_VERSION", "Check", "Completed", "Destination", "GcReport", "Guest", "Migration", "MigrationCheck",
           "MoveMode", "MoveReport", "MoveResult", "Node", "NodeScore", "Placement", "ProcessTable", "PushResult",
           "StandIn", "State", "Stats", "Status", "Storage", "Template", "UnpackedImage"]


def __getattr__(name: str) -> object:
    module = LATER.get(name)
    if module is None:
        raise AttributeError(f"module 'pveoci.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value   # asked once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LATER))
