"""The models of placement and moves: scores, placements, migrations (pveoci.models re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pveoci.models.core import Check
from pveoci.models.state import State


@dataclass(frozen=True)
class NodeScore:
    """One node as placement saw it: its score and the points of each criterion, or why it was rejected."""

    node: str
    score: float | None                                 # None: rejected
    parts: dict[str, float] = field(default_factory=dict)   # criterion -> points (memory, cpu, storage, ...)
    notes: tuple[str, ...] = ()                         # the facts behind the points, or why it was rejected

    @property
    def rejected(self) -> bool:
        return self.score is None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "score": None if self.score is None else round(self.score, 2),
                "rejected": self.rejected, "parts": {k: round(v, 2) for k, v in self.parts.items()},
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Placement:
    """Where a container goes, and every node's score (best first, rejected ones last)."""

    node: str
    scores: tuple[NodeScore, ...]

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "nodes": [s.to_json() for s in self.scores]}


#: What became of one container of a migrate, drain or rebalance.
MoveResult = Literal["moved", "would move", "unchanged", "refused", "failed"]
#: How Proxmox moves it: restart mode (running), offline (stopped), through HA; none when it does not move.
MoveMode = Literal["restart", "offline", "ha", "none"]


@dataclass(frozen=True)
class Migration:
    """One container's move: from where to where, how (restart, offline, through HA), and what happened."""

    id: str
    vmid: int
    source: str
    target: str
    mode: MoveMode
    result: MoveResult
    checks: tuple[Check, ...] = ()                      # the preflight, every check (fail ones refused it)
    error: str | None = None                            # why it was refused or failed
    seconds: float = 0.0
    state: State | None = None                          # its state afterwards (moved or unchanged)

    @property
    def ok(self) -> bool:
        return self.result in ("moved", "would move", "unchanged")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "vmid": self.vmid, "from": self.source, "to": self.target, "mode": self.mode,
                "result": self.result, "status": self.state.status if self.state is not None else None,
                "error": self.error, "seconds": round(self.seconds, 2),
                "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class MoveReport:
    """What a drain or a rebalance did (or, dry, would do): one Migration per container it meant to move."""

    kind: Literal["drain", "rebalance"]
    moves: tuple[Migration, ...]
    dry_run: bool = False
    node: str | None = None                             # the drained node
    spread_before: float | None = None                  # rebalance: best minus worst node score, before and
    spread_after: float | None = None                   # after (as planned)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.moves)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "dry_run": self.dry_run, "ok": self.ok,
                                "moves": [m.to_json() for m in self.moves]}
        if self.node is not None:
            data["node"] = self.node
        if self.spread_before is not None:
            data["spread_before"] = round(self.spread_before, 2)
            data["spread_after"] = round(self.spread_after or 0.0, 2)
        return data
