"""Matching what a replay asks against what was recorded: the same request, the first not yet used.

When nothing matches, the error names the request and the recorded one nearest to it, with what
differs (a path, a parameter missing, another value), so a renamed parameter reads as such.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Callable
from typing import Any

from pveoci.testing.cassette import CassetteError

SHOWN = 160  # characters of a value shown in a message


class CassetteMismatch(CassetteError):
    """The code asked something the cassette does not hold (or more often than recorded)."""


class CassetteUnused(CassetteError):
    """The code did not ask everything the cassette holds."""


def short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def differences(live: dict[str, Any], recorded: dict[str, Any], where: str = "") -> list[str]:
    """What differs between two requests (or bodies), field by field, recorded value first."""
    out = []
    for key in sorted(set(live) | set(recorded), key=str):
        name = f"{where}{key}"
        if key not in live:
            out.append(f"{name}: recorded {short(recorded[key])}, not sent")
        elif key not in recorded:
            out.append(f"{name}: sent {short(live[key])}, not recorded")
        elif live[key] != recorded[key]:
            if isinstance(live[key], dict) and isinstance(recorded[key], dict):
                out.extend(differences(live[key], recorded[key], f"{name}."))
            else:
                out.append(f"{name}: recorded {short(recorded[key])}, sent {short(live[key])}")
    return out


class Tape:
    """Recorded entries handed out in order, each once: the first unused one whose key equals the request's."""

    def __init__(self, name: str, label: str, entries: list[dict[str, Any]],
                 key: Callable[[dict[str, Any]], dict[str, Any]], show: Callable[[dict[str, Any]], str]) -> None:
        self.name = name
        self.label = label  # HTTP or SSH
        self.entries = entries
        self._key = key
        self._show = show
        self.used = [False] * len(entries)
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def take(self, asked: dict[str, Any]) -> dict[str, Any]:
        """The recorded entry for this request; CassetteMismatch (also kept for the end) if there is none."""
        with self._lock:
            for i, entry in enumerate(self.entries):
                if not self.used[i] and self._key(entry) == asked:
                    self.used[i] = True
                    return entry
            message = self._unexpected(asked)
            self.problems.append(message)
        raise CassetteMismatch(message)

    def peek(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The first entry not used yet that `wanted` accepts; it stays unused."""
        with self._lock:
            return next((e for i, e in enumerate(self.entries) if not self.used[i] and wanted(e)), None)

    def _unexpected(self, asked: dict[str, Any]) -> str:
        lines = [f"{self.name}: unexpected {self.label} {self._show(asked)}"]
        same = sum(1 for e in self.entries if self._key(e) == asked)
        if same:
            lines.append(f"  it was recorded {same} time(s) and has been used up: the code asks it more often now")
            return "\n".join(lines)
        nearest = self._nearest(asked)
        if nearest is None:
            lines.append("  the cassette holds nothing like it")
            return "\n".join(lines)
        i, entry = nearest
        state = "used" if self.used[i] else "not used yet"
        lines.append(f"  nearest recorded ({self.label} #{i + 1}, {state}): {self._show(self._key(entry))}")
        lines += [f"    {d}" for d in differences(asked, self._key(entry))]
        return "\n".join(lines)

    def _nearest(self, asked: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        best: tuple[float, int] | None = None
        for i, entry in enumerate(self.entries):
            score = _distance(asked, self._key(entry)) + (0.5 if self.used[i] else 0.0)
            if best is None or score < best[0]:
                best = (score, i)
        return None if best is None else (best[1], self.entries[best[1]])

    def unused(self) -> list[str]:
        with self._lock:
            return [f"{self.label} #{i + 1} {self._show(self._key(e))}" for i, e in enumerate(self.entries)
                    if not self.used[i]]


def _distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Fields that differ, the identifying ones (method, path, node, command) weighing most."""
    score = 0.0
    for key in set(a) | set(b):
        if a.get(key) == b.get(key):
            continue
        weight = 10.0 if key in ("method", "path", "node", "run", "exec", "upload", "check", "claim", "sweep") else 1.0
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            score += weight * 0.1 + _distance(x, y)
        elif isinstance(x, (str, list)) and isinstance(y, type(x)):
            score += weight * (1.0 - difflib.SequenceMatcher(None, x, y).ratio())
        else:
            score += weight
    return score
