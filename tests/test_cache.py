"""The local cache: entries per (cluster, id), schema migrations, facts with an age, threads and processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pveoci import cache as cache_mod
from pveoci.cache import Cache, Record
from pveoci.errors import ConfigError

# The schema pveoci 0.1.0 wrote (user_version 0), verbatim from its pveoci/cache.py.
SCHEMA_0_1_0 = """
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

HOOKS = {"prestart": [{"path": "/usr/bin/true", "args": ["true"]}]}


def write_0_1_0_cache(root: Path) -> None:
    """A cache as 0.1.0 left it: one container entry, a finished create and one killed after `allocate`."""
    root.mkdir(mode=0o700)
    db = sqlite3.connect(root / "cache.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_0_1_0)
    # Cache.put of 0.1.0: the Record's fields, annotations and hooks as JSON.
    db.execute("INSERT OR REPLACE INTO containers (id, cluster, node, vmid, bundle, template, created, status, pid, "
               "annotations, stop_signal, hooks, seen) VALUES (:id, :cluster, :node, :vmid, :bundle, :template, "
               ":created, :status, :pid, :annotations, :stop_signal, :hooks, :seen)",
               {"id": "web", "cluster": "lab", "node": "pve1", "vmid": 101, "bundle": "/srv/web",
                "template": "local:vztmpl/web.tar.zst", "created": "2025-01-02T03:04:05Z", "status": "running",
                "pid": 4242, "annotations": json.dumps({"org.example": "yes"}, sort_keys=True),
                "stop_signal": "SIGQUIT", "hooks": json.dumps(HOOKS, sort_keys=True), "seen": 1700000000.0})
    # Cache.begin and Cache.step of 0.1.0.
    for cid in ("done", "victim"):
        db.execute("INSERT INTO journal (kind, id, cluster, step, node, vmid, host, pid, started, updated) "
                   "VALUES (?, ?, ?, 'begin', ?, NULL, ?, ?, ?, ?)",
                   ("create", cid, "lab", "pve2", "ws1", 999999, 1700000000.0, 1700000000.0))
    db.execute("UPDATE journal SET step = :step, updated = :now, vmid = :vmid WHERE op = :op",
               {"step": "allocate", "now": 1700000001.0, "op": 2, "vmid": 105})
    db.execute("DELETE FROM journal WHERE op = ?", (1,))  # Cache.finish
    db.close()
    os.chmod(root / "cache.db", 0o644)  # what 0.1.0 got with the usual umask


def record(cid: str, cluster: str = "lab", **kw: object) -> Record:
    values: dict[str, object] = {"node": "pve1", "vmid": 100, "bundle": f"/srv/{cid}", "template": "local:vztmpl/t",
                                 "created": "2025-01-01T00:00:00Z", "status": "created"}
    values.update(kw)
    return Record(id=cid, cluster=cluster, **values)  # type: ignore[arg-type]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(tmp_path / "cache")
    yield c
    c.close()


def raw(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / "cache.db", isolation_level=None)


# ------------------------------------------------------------------ keys


def test_two_clusters_keep_their_own_container_of_the_same_id(cache: Cache) -> None:
    cache.put(record("web", "lab", node="pve1", vmid=100))
    cache.put(record("web", "prod", node="px7", vmid=900))

    lab, prod = cache.get("web", "lab"), cache.get("web", "prod")
    assert lab is not None
    assert (lab.node, lab.vmid) == ("pve1", 100)
    assert prod is not None
    assert (prod.node, prod.vmid) == ("px7", 900)
    assert [r.vmid for r in cache.all("lab")] == [100]

    cache.drop("web", "lab")
    assert cache.get("web", "lab") is None
    assert cache.get("web", "prod") == prod


def test_every_record_field_comes_back(cache: Cache) -> None:
    put = record("web", pid=7, annotations={"a": "b"}, stop_signal="SIGINT", hooks=HOOKS, rootfs="/srv/web/rootfs",
                 marker_version=2)
    cache.put(put)
    got = cache.get("web", "lab")
    assert got is not None
    assert got.seen > 0
    got.seen = put.seen
    assert got == put


def test_unknown_stored_keys_are_ignored_and_missing_ones_take_their_default(tmp_path: Path) -> None:
    Cache(tmp_path).close()
    stored = {"bundle": "/srv/web", "template": "t", "created": "c", "status": "stopped", "from_the_future": [1]}
    with raw(tmp_path) as db:
        db.execute("INSERT INTO containers (cluster, id, node, vmid, seen, data) VALUES (?, ?, ?, ?, ?, ?)",
                   ("lab", "web", "pve1", 100, 1.0, json.dumps(stored)))
    got = Cache(tmp_path).get("web", "lab")
    assert got == Record(id="web", cluster="lab", node="pve1", vmid=100, bundle="/srv/web", template="t",
                         created="c", status="stopped", seen=1.0)


# ------------------------------------------------------------ the schema


def test_a_cache_written_by_0_1_0_keeps_its_entries_and_journal(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    write_0_1_0_cache(root)

    cache = Cache(root)

    assert cache.get("web", "lab") == Record(
        id="web", cluster="lab", node="pve1", vmid=101, bundle="/srv/web", template="local:vztmpl/web.tar.zst",
        created="2025-01-02T03:04:05Z", status="running", pid=4242, annotations={"org.example": "yes"},
        stop_signal="SIGQUIT", hooks=HOOKS, seen=1700000000.0, rootfs="", marker_version=1)
    [step] = cache.pending("lab")
    assert (step.op, step.kind, step.id, step.step, step.node, step.vmid, step.host, step.pid) == (
        2, "create", "victim", "allocate", "pve2", 105, "ws1", 999999)
    assert cache.pending("lab", "victim") == [step]
    # The migrated file works as a new one: same id in another cluster, journal numbers going on.
    cache.put(record("web", "prod"))
    assert cache.get("web", "lab") is not None
    assert cache.begin("create", "new", "lab", "pve1") == 3
    cache.finish(step.op)
    assert [s.id for s in cache.pending("lab")] == ["new"]
    assert raw(root).execute("PRAGMA user_version").fetchone() == (cache_mod.SCHEMA_VERSION,)


def test_a_new_cache_has_the_latest_schema(tmp_path: Path) -> None:
    Cache(tmp_path).close()
    assert raw(tmp_path).execute("PRAGMA user_version").fetchone() == (cache_mod.SCHEMA_VERSION,)
    assert cache_mod.SCHEMA_VERSION == len(cache_mod.MIGRATIONS) >= 1


def test_a_schema_newer_than_this_pveoci_is_refused(tmp_path: Path) -> None:
    Cache(tmp_path).close()
    newer = cache_mod.SCHEMA_VERSION + 1
    raw(tmp_path).execute(f"PRAGMA user_version = {newer}")

    with pytest.raises(ConfigError, match="upgrade pveoci") as caught:
        Cache(tmp_path)
    assert "\n" not in str(caught.value)
    assert raw(tmp_path).execute("PRAGMA user_version").fetchone() == (newer,)  # left as it was


def test_a_file_that_is_not_a_database_gives_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "cache.db").write_bytes(b"this is not a SQLite database, it is a text file\n" * 100)

    with pytest.raises(ConfigError, match="delete it") as caught:
        Cache(tmp_path)
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------- facts


def test_remember_and_recall_honour_max_age(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    cache.remember("lab", "storages", [{"storage": "local", "content": ["vztmpl"]}])
    cache.remember("lab", "version", "8.2.4")
    cache.remember("prod", "version", "7.4")

    monkeypatch.setattr(time, "time", lambda: now + 60)
    assert cache.recall("lab", "storages", max_age=60) == [{"storage": "local", "content": ["vztmpl"]}]
    assert cache.recall("lab", "storages", max_age=59) is None
    assert cache.recall("lab", "nodes", max_age=3600) is None

    cache.forget("lab", "storages")
    assert cache.recall("lab", "storages", max_age=3600) is None
    assert cache.recall("lab", "version", max_age=3600) == "8.2.4"
    cache.forget("lab")
    assert cache.recall("lab", "version", max_age=3600) is None
    assert cache.recall("prod", "version", max_age=3600) == "7.4"


def test_a_step_keeps_what_it_was_given(cache: Cache) -> None:
    op = cache.begin("create", "web", "lab", "pve1")
    cache.step(op, "allocate", vmid=104)
    cache.step(op, "upload", volid="local:vztmpl/web.tar.zst")
    [step] = cache.pending("lab", "web")
    assert (step.step, step.node, step.vmid, step.data) == ("upload", "pve1", 104,
                                                            {"volid": "local:vztmpl/web.tar.zst"})


# ------------------------------------------------------ threads, processes


def test_eight_threads_share_one_cache(cache: Cache) -> None:
    rounds = 25
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(rounds):
                cid = f"t{t}-{i}"
                op = cache.begin("create", cid, "lab", "pve1")
                cache.step(op, "create", vmid=1000 * t + i)
                cache.put(record(cid, vmid=1000 * t + i))
                cache.finish(op)
                got = cache.get(cid, "lab")
                assert got is not None
                assert got.vmid == 1000 * t + i
                assert cid in {r.id for r in cache.all("lab")}
                if i % 2:
                    cache.drop(cid, "lab")
            cache.remember("lab", f"thread{t}", t)
        except BaseException as exc:
            failures.append(exc)
        finally:
            cache.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert {r.id: r.vmid for r in cache.all("lab")} == {f"t{t}-{i}": 1000 * t + i
                                                       for t in range(8) for i in range(0, rounds, 2)}
    assert cache.pending("lab") == []
    assert [cache.recall("lab", f"thread{t}", max_age=60) for t in range(8)] == list(range(8))


def test_close_closes_only_the_callers_connection(cache: Cache) -> None:
    cache.put(record("web"))
    other = threading.Thread(target=cache.close)
    other.start()
    other.join()
    assert cache.get("web", "lab") is not None
    cache.close()
    assert cache.get("web", "lab") is not None  # reopened on demand


def test_opening_a_new_file_waits_while_another_process_writes_it(tmp_path: Path) -> None:
    # A file not yet in WAL mode, write-locked by another connection: SQLite refuses the switch to WAL at
    # once, without its busy handler (two processes opening a new cache together hit this).
    other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    try:
        cache = Cache(tmp_path)
    finally:
        release.join()
        other.close()
    cache.put(record("web"))
    assert cache.get("web", "lab") is not None


WRITER = """
import sys, time
from pathlib import Path
from pveoci.cache import Cache, Record

root, go, name, rounds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
cache = Cache(root)  # both open a file that does not exist yet: creating and migrating race too
for i in range(rounds):
    cid = f"{name}-{i}"
    op = cache.begin("create", cid, "lab", "pve1")
    cache.step(op, "create", vmid=i)
    cache.put(Record(id=cid, cluster="lab", node="pve1", vmid=i, bundle="/b", template="t", created="c",
                     status="created"))
    cache.finish(op)
    cache.remember("lab", cid, i)
cache.close()
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    root, go, rounds = tmp_path / "cache", tmp_path / "go", 150
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(root), str(go), name, str(rounds)],
                              env=env, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    time.sleep(0.5)  # both interpreters started and waiting
    go.touch()
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]

    assert results == [(0, ""), (0, "")]
    cache = Cache(root)
    assert {r.id for r in cache.all("lab")} == {f"{n}-{i}" for n in "ab" for i in range(rounds)}
    assert cache.pending("lab") == []
    assert all(cache.recall("lab", f"{n}-{i}", max_age=600) == i for n in "ab" for i in range(rounds))


# ------------------------------------------------------------ file modes


def test_the_cache_directory_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    root = tmp_path / "state" / "pveoci"
    umask = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        cache = Cache(root)
        cache.put(record("web"))  # makes the WAL files
        assert oct(root.stat().st_mode & 0o777) == oct(0o700)
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            assert oct((root / name).stat().st_mode & 0o777) == oct(0o600), name
        cache.close()
    finally:
        os.umask(umask)


def test_a_0_1_0_database_file_is_made_private(tmp_path: Path) -> None:
    write_0_1_0_cache(tmp_path / "cache")
    Cache(tmp_path / "cache").close()
    assert oct((tmp_path / "cache" / "cache.db").stat().st_mode & 0o777) == oct(0o600)


def test_facts_age_by_the_caches_own_clock_when_it_has_one(tmp_path: Path) -> None:
    now = [1000.0]
    cache = Cache(tmp_path / "clocked", clock=lambda: now[0])
    cache.remember("lab", "nodes", ["pve1"])
    now[0] += 15
    assert cache.recall("lab", "nodes", max_age=15) == ["pve1"]
    now[0] += 1
    assert cache.recall("lab", "nodes", max_age=15) is None
