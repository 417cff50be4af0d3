"""What a create asks of an image's tree, kept beside the store: a second create of the image reads no layer.

A create looks a few things up in the merged tree of the image's layers (the program's mode along PATH,
/etc/passwd and /etc/group, /sbin for old Proxmox) and needs its size; merging reads every layer's headers
(seconds for a real image). The answers are a function of the image alone, so they are kept under its digest
and architecture, and the tree is merged again only for a question not asked before, or for a pack.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

FILE_MAX = 1 << 20


class Tree(Protocol):
    """What answers: an image's merged layers (layers.Merged), or what a node reported of it (nodetree.NodeTree)."""

    size: int

    def mode(self, path: str) -> int | None: ...

    def kind(self, path: str) -> str | None: ...

    def resolve(self, path: str) -> str | None: ...

    def read_file(self, path: str, limit: int = ...) -> bytes | None: ...


class Lookups:
    """The tree's answers, from `path` (a JSON file) when asked before, else from the tree (`merge()`)."""

    def __init__(self, path: Path, merge: Callable[[], Tree]) -> None:
        self._path, self._merge = path, merge
        self._known: dict[str, Any] = _read(path)

    def _answer(self, question: str, ask: Callable[[Tree], Any]) -> Any:
        if question not in self._known:
            self._known[question] = ask(self._merge())
            self._save()
        return self._known[question]

    @property
    def size(self) -> int:
        return int(self._answer("size", lambda m: m.size))

    def mode(self, path: str) -> int | None:
        found = self._answer(f"mode:{path}", lambda m: m.mode(path))
        return int(found) if found is not None else None

    def kind(self, path: str) -> str | None:
        found = self._answer(f"kind:{path}", lambda m: m.kind(path))
        return str(found) if found is not None else None

    def resolve(self, path: str) -> str | None:
        found = self._answer(f"resolve:{path}", lambda m: m.resolve(path))
        return str(found) if found is not None else None

    def read_file(self, path: str) -> bytes | None:
        def read(m: Tree) -> str | None:
            data = m.read_file(path, FILE_MAX)
            return base64.b64encode(data).decode() if data is not None else None

        found = self._answer(f"file:{path}", read)
        return base64.b64decode(found) if isinstance(found, str) else None

    def _save(self) -> None:
        """Keep what was learnt (atomically: another create of the image may write the same at once); a store
        that cannot be written only costs the next create a merge."""
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            partial = self._path.with_name(f".{self._path.name}.{os.getpid()}")
            partial.write_text(json.dumps(self._known, sort_keys=True))
            os.replace(partial, self._path)


def _read(path: Path) -> dict[str, Any]:
    """What is kept there; nothing for a file that is missing or not what this module writes."""
    with contextlib.suppress(OSError, ValueError):
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            return value
    return {}
