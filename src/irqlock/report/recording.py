"""A recording: every record of a run in one SQLite file, to be reported on later.

The file is written in WAL mode (a rollback journal on file systems without the
shared memory WAL needs, such as 9p and NFS) and committed every second, so a run
cut short (SIGKILL, power loss) still opens with everything up to its last commit.
A finished recording is left in rollback mode: one file, readable anywhere.  The
records are the JSON lines of docs/records.md, stored as they were printed, except
that stacks are kept once in their own table and referred to by id (the same
stack comes back thousands of times).  Aggregates that change while the run
goes on (the per-lock statistics) are replaced as a whole at each snapshot.

Schema version 1:

    meta(key TEXT PRIMARY KEY, value TEXT)         schema_version, started_ns, ...
    stacks(id INTEGER PRIMARY KEY, frames TEXT UNIQUE)   a JSON list of frames
    records(id INTEGER PRIMARY KEY, type TEXT, time_ns INTEGER, body TEXT)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from irqlock.errors import IrqlockError

SCHEMA_VERSION = 1
COMMIT_EVERY_S = 1.0
# WAL first (readers never block the writer, a killed run keeps what was committed), then
# a rollback journal where the file system cannot share memory.
JOURNAL_MODES = ("WAL", "DELETE")
# Records that are snapshots of aggregates: a new snapshot replaces the last one.
SNAPSHOT_TYPES = ("lock",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stacks (id INTEGER PRIMARY KEY, frames TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    time_ns INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_type ON records (type);
"""


def _is_stack_field(key: str) -> bool:
    return key == "stack" or key.endswith("_stack")


def record_time(record: dict[str, Any]) -> int | None:
    """When a record happened, for ordering and timelines (None for aggregates)."""
    for key in ("start_ns", "detected_ns", "since_ns", "time_ns"):
        value = record.get(key)
        if isinstance(value, int):
            return value
    return None


class RecordingWriter:
    """Appends records to a new recording; commits at least every second."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        if path.exists():
            raise IrqlockError(f"{path} exists: give a new file (a recording is never overwritten)")
        self.path = path
        self.db = self._create(path)
        self._stack_ids: dict[str, int] = {}
        self._last_commit = time.monotonic()
        self.counts: dict[str, int] = {}
        self.set_meta(schema_version=SCHEMA_VERSION, started_ns=time.monotonic_ns(),
                      started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), finished=0, **meta)
        self.db.commit()

    @staticmethod
    def _create(path: Path) -> sqlite3.Connection:
        """The new file, in WAL mode where the file system allows it: network file systems
        (9p, NFS) lack the shared memory WAL needs, and get a rollback journal instead."""
        failure = None
        for journal in JOURNAL_MODES:
            db = None
            try:
                db = sqlite3.connect(path)
                db.execute(f"PRAGMA journal_mode={journal}")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                db.commit()
                return db
            except sqlite3.Error as exc:
                failure = exc
                if db is not None:
                    db.close()
                for leftover in (path, path.with_name(path.name + "-wal"),
                                 path.with_name(path.name + "-shm"),
                                 path.with_name(path.name + "-journal")):
                    leftover.unlink(missing_ok=True)
        raise IrqlockError(f"cannot create a recording at {path}: {failure}")

    def set_meta(self, **values: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in values.items()])

    def _stack_id(self, frames: list[str]) -> int:
        text = json.dumps(frames)
        found = self._stack_ids.get(text)
        if found is None:
            cursor = self.db.execute("INSERT OR IGNORE INTO stacks (frames) VALUES (?)", (text,))
            found = cursor.lastrowid if cursor.rowcount else self.db.execute(
                "SELECT id FROM stacks WHERE frames = ?", (text,)).fetchone()[0]
            assert found is not None
            self._stack_ids[text] = found
        return found

    def _pack(self, value: Any) -> Any:
        """Stacks (lists under a *stack key) become stack ids, at any depth."""
        if isinstance(value, dict):
            return {k: self._stack_id(v) if _is_stack_field(k) and isinstance(v, list)
                    else self._pack(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._pack(v) for v in value]
        return value

    def add(self, record: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO records (type, time_ns, body) VALUES (?, ?, ?)",
                        (record["type"], record_time(record), json.dumps(self._pack(record))))
        self.counts[record["type"]] = self.counts.get(record["type"], 0) + 1
        self.commit_if_due()

    def replace_snapshot(self, kind: str, records: list[dict[str, Any]]) -> None:
        """The latest aggregate records of one type, replacing the previous snapshot."""
        self.db.execute("DELETE FROM records WHERE type = ?", (kind,))
        self.counts[kind] = 0
        for record in records:
            self.add(record)
        self.commit()

    def commit_if_due(self) -> None:
        """Commit when the last commit is a second old (call it often, records or not)."""
        if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        self.db.commit()
        self._last_commit = time.monotonic()

    def close(self, finished: bool = True) -> None:
        self.set_meta(finished=int(finished), finished_ns=time.monotonic_ns())
        self.db.commit()
        # A finished recording needs no -wal or -shm beside it: it can be copied as one
        # file and read where WAL cannot work.
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()


class RecordingReader:
    """Reads a recording back as the JSON records it was made of."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise IrqlockError(f"no recording {path}")
        try:
            # Opened read-write although only read: a run cut short left its last commits
            # in the WAL file, and only a writable connection can recover them.
            self.db = sqlite3.connect(path)
            self.meta = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
            self._stacks = {i: json.loads(f) for i, f in self.db.execute(
                "SELECT id, frames FROM stacks")}
        except (sqlite3.Error, json.JSONDecodeError) as exc:
            raise IrqlockError(f"{path} is not an irqlock recording ({exc})") from None
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise IrqlockError(f"{path}: recording schema {version}, this irqlock reads "
                               f"{SCHEMA_VERSION}")
        self.path = path

    def _unpack(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._stacks.get(v, []) if _is_stack_field(k) and isinstance(v, int)
                    else self._unpack(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._unpack(v) for v in value]
        return value

    def records(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in the order they were recorded (optionally of one type)."""
        query = "SELECT body FROM records" + (" WHERE type = ?" if kind else "") + " ORDER BY id"
        try:
            for (body,) in self.db.execute(query, (kind,) if kind else ()):
                yield self._unpack(json.loads(body))
        except (sqlite3.Error, json.JSONDecodeError) as exc:
            raise IrqlockError(f"{self.path}: damaged recording ({exc})") from None

    def close(self) -> None:
        self.db.close()
