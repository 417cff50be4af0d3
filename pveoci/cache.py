"""The local cache: a SQLite mirror of pveoci's containers, a journal of create (and image update) steps, and
facts about clusters.

The cluster is the source of truth; the cache makes `state` one request, answers when the
cluster cannot be reached (saying so), and lets the next command finish or undo a create that
was killed half-way. Entries are keyed by (cluster, id): the cluster is the profile's name.

Threads and processes: a `Cache` object may be shared by threads. Each thread gets its own
SQLite connection, opened on its first call; `close()` closes the calling thread's connection
only (a thread that used the cache should call it when done; a connection left open is closed
when its thread ends). Many pveoci processes can share one file: WAL mode, a busy timeout and
`BEGIN IMMEDIATE` for every write. A connection must not cross a fork.

The schema version is `PRAGMA user_version`; `MIGRATIONS[n]` takes a file from version n to
n + 1, one transaction each. pveoci 0.1.0 wrote version 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pveoci import errors

log = logging.getLogger("pveoci.cache")

FILENAME = "cache.db"
#: Seconds a statement waits for another connection's write lock before giving up.
BUSY_TIMEOUT = 30.0
#: Seconds Cache.lock waits for another holder.
LOCK_TIMEOUT = 120.0


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
    rootfs: str = ""  # absolute path of the bundle's rootfs
    marker_version: int = 1


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
    # What a step recorded beyond node and vmid (`Cache.step(op, name, key=value)`).
    data: dict[str, Any] = field(default_factory=dict)
    running_here: bool = False   # a thread of this process is making it now (Cache.begin until Cache.settle)

    def in_progress(self) -> bool:
        """True if it is being made on this machine: by another process that still runs, or by a thread of
        this one."""
        return self.alive()

    def alive(self) -> bool:
        """True if the process that wrote it still runs here and has not given it up (then it is in progress,
        not abandoned): for this process, if one of its threads is still making it."""
        if self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return self.running_here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


# The creates this process is making now, as (journal file, op): another thread's recover() must not take
# them for abandoned ones.
_RUNNING: set[tuple[str, int]] = set()
_RUNNING_LOCK = threading.Lock()


# ---------------------------------------------------------------- schema

# A Record's fields with a column of their own (for lookups); the others are kept as JSON in `data`,
# so a new field needs no migration.
RECORD_COLUMNS = ("cluster", "id", "node", "vmid", "seen")
# A journal row's columns that step() may set; other keys go to its `data`.
STEP_COLUMNS = ("node", "vmid")

CONTAINERS_V1 = """
CREATE TABLE containers (
    cluster TEXT NOT NULL,
    id TEXT NOT NULL,
    node TEXT NOT NULL,
    vmid INTEGER NOT NULL,
    seen REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (cluster, id)
) WITHOUT ROWID
"""

JOURNAL_V1 = """
CREATE TABLE journal (
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
    updated REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
)
"""

FACTS_V1 = """
CREATE TABLE facts (
    cluster TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (cluster, key)
) WITHOUT ROWID
"""


def _to_v1(db: sqlite3.Connection) -> None:
    """Containers keyed by (cluster, id) with the rest of the Record as JSON; journal `data`; a facts table.

    Makes a new file, or converts one written by 0.1.0 (containers keyed by id alone, one column
    per Record field), keeping its entries and its journal.
    """
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "containers" in tables:
        db.execute("ALTER TABLE containers RENAME TO containers_0")
    db.execute(CONTAINERS_V1)
    if "containers" in tables:
        for row in db.execute("SELECT * FROM containers_0").fetchall():
            old = dict(zip(row.keys(), tuple(row), strict=True))
            data = {k: v for k, v in old.items() if k not in RECORD_COLUMNS}
            data["annotations"] = json.loads(data.get("annotations") or "{}")
            data["hooks"] = json.loads(data.get("hooks") or "{}")
            db.execute("INSERT INTO containers (cluster, id, node, vmid, seen, data) VALUES (?, ?, ?, ?, ?, ?)",
                       (old["cluster"], old["id"], old["node"], old["vmid"], old["seen"], json.dumps(data)))
        db.execute("DROP TABLE containers_0")
    if "journal" in tables:
        db.execute("ALTER TABLE journal ADD COLUMN data TEXT NOT NULL DEFAULT '{}'")
        db.execute("DROP INDEX IF EXISTS journal_id")
    else:
        db.execute(JOURNAL_V1)
    db.execute("CREATE INDEX journal_cluster_id ON journal(cluster, id)")
    db.execute(FACTS_V1)


#: MIGRATIONS[n] takes the schema from version n to n + 1, inside the caller's transaction.
#: Append only: a released migration never changes.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_to_v1]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class ClusterFacts:
    """One cluster's facts in the cache, as a backend keeps them (backends.base.Facts)."""

    cache: Cache
    cluster: str

    def recall(self, key: str, max_age: float) -> Any | None:
        return self.cache.recall(self.cluster, key, max_age)

    def remember(self, key: str, value: Any) -> None:
        self.cache.remember(self.cluster, key, value)

    def forget(self, key: str) -> None:
        self.cache.forget(self.cluster, key)


class Cache:
    def __init__(self, root: Path, *, clock: Callable[[], float] | None = None) -> None:
        """`clock` (default: time.time) dates facts and tells their age; pveoci.testing stops it, so a recording
        does not depend on how long the cluster took."""
        self.root = root
        self.clock = clock
        self.path = root / FILENAME
        self._local = threading.local()
        try:
            _private_dir(root)
            _private_files(self.path)
        except OSError as exc:
            raise errors.ConfigError(f"cannot open the cache in {root}: {exc}") from None
        self._db()  # fail here, not at first use, when the file cannot be used

    def close(self) -> None:
        """Close this thread's connection; the next call from this thread opens a new one."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            db.close()

    # ----------------------------------------------------------- containers

    def put(self, record: Record) -> None:
        data = asdict(record)
        row = {k: data.pop(k) for k in RECORD_COLUMNS}
        row.update(seen=time.time(), data=json.dumps(data, sort_keys=True))
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO containers (cluster, id, node, vmid, seen, data) "
                       "VALUES (:cluster, :id, :node, :vmid, :seen, :data)", row)

    def get(self, cid: str, cluster: str) -> Record | None:
        rows = self._read("SELECT * FROM containers WHERE cluster = ? AND id = ?", (cluster, cid))
        return _record(rows[0]) if rows else None

    def all(self, cluster: str) -> list[Record]:
        rows = self._read("SELECT * FROM containers WHERE cluster = ? ORDER BY id", (cluster,))
        return [r for r in map(_record, rows) if r is not None]

    def drop(self, cid: str, cluster: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM containers WHERE cluster = ? AND id = ?", (cluster, cid))

    # -------------------------------------------------------------- journal

    def begin(self, kind: str, cid: str, cluster: str, node: str | None) -> int:
        now = time.time()
        with self._tx() as db:
            cur = db.execute("INSERT INTO journal (kind, id, cluster, step, node, vmid, host, pid, started, updated) "
                             "VALUES (?, ?, ?, 'begin', ?, NULL, ?, ?, ?, ?)",
                             (kind, cid, cluster, node, socket.gethostname(), os.getpid(), now, now))
            op = int(cur.lastrowid or 0)
        with _RUNNING_LOCK:
            _RUNNING.add((str(self.path), op))
        return op

    def settle(self, op: int) -> None:
        """This process no longer works on `op` (it finished, rolled back, or gave up: then it is abandoned)."""
        with _RUNNING_LOCK:
            _RUNNING.discard((str(self.path), op))

    def step(self, op: int, step: str, **data: Any) -> None:
        """Record that create `op` reached `step`; node= and vmid= set those columns, other keys go to its data."""
        columns = {k: v for k, v in data.items() if k in STEP_COLUMNS}
        extra = {k: v for k, v in data.items() if k not in STEP_COLUMNS}
        sets = "".join(f", {k} = :{k}" for k in columns)  # keys from STEP_COLUMNS only
        with self._tx() as db:
            if extra:
                found = db.execute("SELECT data FROM journal WHERE op = ?", (op,)).fetchone()
                merged = {**json.loads(found["data"]), **extra} if found else extra
                columns["data"] = json.dumps(merged, sort_keys=True)
                sets += ", data = :data"
            db.execute(f"UPDATE journal SET step = :step, updated = :now{sets} WHERE op = :op",  # noqa: S608
                       {"step": step, "now": time.time(), "op": op, **columns})

    def finish(self, op: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM journal WHERE op = ?", (op,))
        self.settle(op)

    def pending(self, cluster: str, cid: str | None = None) -> list[Step]:
        query = "SELECT op, kind, id, cluster, step, node, vmid, host, pid, data FROM journal WHERE cluster = ?"
        args: tuple[Any, ...] = (cluster,)
        if cid is not None:
            query += " AND id = ?"
            args += (cid,)
        rows = self._read(query + " ORDER BY op", args)
        with _RUNNING_LOCK:
            running = {op for path, op in _RUNNING if path == str(self.path)}
        return [Step(op=row["op"], kind=row["kind"], id=row["id"], cluster=row["cluster"], step=row["step"],
                     node=row["node"], vmid=row["vmid"], host=row["host"], pid=row["pid"],
                     data=json.loads(row["data"]), running_here=row["op"] in running) for row in rows]

    # ---------------------------------------------------------------- locks

    @contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[bool]:
        """Hold an exclusive lock among the threads and processes that share this cache (e.g. "placement": one
        create at a time picks its node and journals it). Yields True; False if it was not had within timeout
        (the caller goes on without it rather than hang behind a stuck process)."""
        import fcntl

        fd = os.open(self.root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        log.warning("the %s lock of %s stayed taken for %.0fs; going on without it", name,
                                    self.root, timeout)
                        held = False
                        break
                    time.sleep(0.02)
            yield held
        finally:
            os.close(fd)  # releases the lock

    # ---------------------------------------------------------------- facts

    def remember(self, cluster: str, key: str, value: Any) -> None:
        """Keep a fact about a cluster that rarely changes (its version, storages, nodes); `value` is JSON-able."""
        text = json.dumps(value, sort_keys=True)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO facts (cluster, key, value, stored) VALUES (?, ?, ?, ?)",
                       (cluster, key, text, self._now()))

    def _now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    def recall(self, cluster: str, key: str, max_age: float) -> Any | None:
        """The fact, or None when it was never kept, was forgotten, or is older than max_age seconds."""
        rows = self._read("SELECT value, stored FROM facts WHERE cluster = ? AND key = ?", (cluster, key))
        if not rows:
            return None
        age = self._now() - rows[0]["stored"]
        if not 0 <= age <= max_age:  # a negative age: the clock went back, so the age is unknown
            return None
        return json.loads(rows[0]["value"])

    def facts(self, cluster: str, prefix: str = "") -> list[tuple[str, Any]]:
        """Every fact kept about a cluster whose key starts with `prefix`, as (key, value)."""
        rows = self._read("SELECT key, value FROM facts WHERE cluster = ? AND substr(key, 1, ?) = ?",
                          (cluster, len(prefix), prefix))
        return [(str(row["key"]), json.loads(row["value"])) for row in rows]

    def forget(self, cluster: str, key: str | None = None) -> None:
        """Drop one fact about a cluster, or (key None) all of them."""
        with self._tx() as db:
            if key is None:
                db.execute("DELETE FROM facts WHERE cluster = ?", (cluster,))
            else:
                db.execute("DELETE FROM facts WHERE cluster = ? AND key = ?", (cluster, key))

    # ------------------------------------------------------------ connections

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._errors():
                db = self._open()
            self._local.db = db
        return db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            _wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        while True:
            version = _user_version(db)
            if version > SCHEMA_VERSION:
                raise errors.ConfigError(f"the cache {self.path} has schema {version}, this pveoci knows up to "
                                         f"{SCHEMA_VERSION}: upgrade pveoci, or use another --root")
            if version == SCHEMA_VERSION:
                return
            with _transaction(db):
                if _user_version(db) != version:
                    continue  # another process migrated meanwhile: look again
                log.info("cache %s: schema %d to %d", self.path, version, version + 1)
                try:
                    MIGRATIONS[version](db)
                except (ValueError, KeyError, TypeError) as exc:
                    raise errors.ConfigError(f"cannot migrate the cache {self.path} to schema {version + 1} "
                                             f"({exc}): delete it, or use another --root") from None
                db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        with self._errors(), _transaction(db):
            yield db

    def _read(self, query: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        db = self._db()
        with self._errors():
            rows: list[sqlite3.Row] = db.execute(query, args).fetchall()
            return rows

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors that the user can act on, as pveoci's (others are bugs: they propagate)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise errors.OperationTimeout(f"the cache {self.path} stayed locked by another process for "
                                              f"{BUSY_TIMEOUT:.0f}s: try again") from None
            raise errors.ConfigError(f"cannot use the cache {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError, ...: a bug
                raise
            raise errors.ConfigError(f"the cache {self.path} is damaged ({exc}): delete it "
                                     "(`pveoci cache sync` refills it from the cluster)") from None


def _record(row: sqlite3.Row) -> Record | None:
    """The Record in a row: keys it does not know are ignored, missing ones take their default."""
    try:
        data = json.loads(row["data"])
        known = {f.name for f in fields(Record)}
        values = {k: v for k, v in data.items() if k in known}
        values.update((k, row[k]) for k in RECORD_COLUMNS)
        return Record(**values)
    except (ValueError, TypeError, AttributeError) as exc:
        # A mirror entry that cannot be read is as good as none: the cluster is asked instead.
        log.warning("cache entry %s/%s ignored: %s", row["cluster"], row["id"], exc)
        return None


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock now, waiting up to the busy timeout, rather than failing at the first write.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _wal(db: sqlite3.Connection) -> None:
    """Switch to WAL (kept in the file, so once per file)."""
    # While another connection switches a new file, SQLite answers BUSY at once, without its busy handler.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _busy(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    if name:
        return str(name).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return "locked" in str(exc) or "busy" in str(exc)


def _private_dir(root: Path) -> None:
    """Make the cache directory 0700 if it is missing; a directory the user chose is left as it is."""
    if root.is_dir():
        return
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)  # mkdir's mode is filtered by the umask


def _private_files(path: Path) -> None:
    """The database (and its WAL files) readable by its owner only: it keeps hooks that run on this machine."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = name.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode != 0o600:  # e.g. a file written by 0.1.0 with the umask's mode
            os.chmod(name, 0o600)
