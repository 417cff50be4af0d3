"""The local cache: a SQLite mirror of pveoci's containers and a journal of create steps.

The cluster is the source of truth; the cache makes `state` one request, answers when the
cluster cannot be reached (saying so), and lets the next command finish or undo a create that
was killed half-way. WAL mode and a busy timeout make it safe with many pveoci processes.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pveoci import errors

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    node TEXT NOT NULL,
    vmid INTEGER NOT NULL,
    bundle TEXT NOT NULL,
    template TEXT NOT NULL,
    created TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    annotations TEXT NOT NULL DEFAULT '{}',
    stop_signal TEXT NOT NULL DEFAULT 'SIGTERM',
    hooks TEXT NOT NULL DEFAULT '{}',
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    op INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    step TEXT NOT NULL,
    node TEXT,
    vmid INTEGER,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_id ON journal(id);
"""


def default_root() -> Path:
    from platformdirs import user_state_path

    return user_state_path("pveoci")


@dataclass
class Record:
    """What the cache knows of a container (as last seen on the cluster)."""

    id: str
    cluster: str
    node: str
    vmid: int
    bundle: str
    template: str
    created: str
    status: str
    pid: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    # The bundle's hooks, run on this machine: kept from create, as later edits to config.json must not count.
    hooks: dict[str, Any] = field(default_factory=dict)
    seen: float = 0.0


@dataclass
class Step:
    """One create in progress (or abandoned): how far it got."""

    op: int
    kind: str
    id: str
    cluster: str
    step: str
    node: str | None
    vmid: int | None
    host: str
    pid: int

    def alive(self) -> bool:
        """True if the process that wrote it still runs here (then it is in progress, not abandoned)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.pid != os.getpid()


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(root / "cache.db", timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise errors.ConfigError(f"cannot open the cache in {root}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ----------------------------------------------------------- containers

    def put(self, record: Record) -> None:
        data = asdict(record)
        data["annotations"] = json.dumps(record.annotations, sort_keys=True)
        data["hooks"] = json.dumps(record.hooks, sort_keys=True)
        data["seen"] = time.time()
        with self._tx() as db:
            columns = ", ".join(data)
            values = ", ".join(f":{k}" for k in data)
            db.execute(f"INSERT OR REPLACE INTO containers ({columns}) VALUES ({values})", data)  # noqa: S608

    def get(self, cid: str, cluster: str) -> Record | None:
        row = self._db.execute("SELECT * FROM containers WHERE id = ? AND cluster = ?", (cid, cluster)).fetchone()
        return self._record(row) if row else None

    def all(self, cluster: str) -> list[Record]:
        rows = self._db.execute("SELECT * FROM containers WHERE cluster = ? ORDER BY id", (cluster,)).fetchall()
        return [self._record(r) for r in rows]

    def drop(self, cid: str, cluster: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM containers WHERE id = ? AND cluster = ?", (cid, cluster))

    def _record(self, row: tuple[Any, ...]) -> Record:
        cols = [d[0] for d in self._db.execute("SELECT * FROM containers LIMIT 0").description]
        data = dict(zip(cols, row, strict=True))
        data["annotations"] = json.loads(data["annotations"])
        data["hooks"] = json.loads(data["hooks"])
        return Record(**data)

    # -------------------------------------------------------------- journal

    def begin(self, kind: str, cid: str, cluster: str, node: str | None) -> int:
        now = time.time()
        with self._tx() as db:
            cur = db.execute("INSERT INTO journal (kind, id, cluster, step, node, vmid, host, pid, started, updated) "
                             "VALUES (?, ?, ?, 'begin', ?, NULL, ?, ?, ?, ?)",
                             (kind, cid, cluster, node, socket.gethostname(), os.getpid(), now, now))
            return int(cur.lastrowid or 0)

    def step(self, op: int, step: str, **data: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in data)
        with self._tx() as db:
            db.execute(f"UPDATE journal SET step = :step, updated = :now{', ' + sets if sets else ''} "  # noqa: S608
                       "WHERE op = :op", {"step": step, "now": time.time(), "op": op, **data})

    def finish(self, op: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM journal WHERE op = ?", (op,))

    def pending(self, cluster: str, cid: str | None = None) -> list[Step]:
        query = "SELECT op, kind, id, cluster, step, node, vmid, host, pid FROM journal WHERE cluster = ?"
        args: tuple[Any, ...] = (cluster,)
        if cid is not None:
            query += " AND id = ?"
            args += (cid,)
        return [Step(*row) for row in self._db.execute(query + " ORDER BY op", args).fetchall()]
