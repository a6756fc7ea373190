"""The station's local state: SQLite in WAL mode under ``state_dir``.

Holds the work queue (one row per source file, explicit states), the local catalog of
recordings, an index of the ledger entries this station has written, the registry of docked
devices with their officer assignments, and device events still waiting for the archive. None of it is the
system of record — the archive is — so every row is committed only after the side effect it
describes is durable (spool file fsync'd, object verified, ledger entry stored).

Schema changes are numbered migrations applied in order; ``PRAGMA user_version`` says which
ran. A database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StateError
from ..i18n import _

# The index of the entries one ledger writer has stored (custody.ledger.LedgerWriter reads
# and writes it); stations and API nodes both have one.
LEDGER_INDEX_SCHEMA = """
    CREATE TABLE ledger (
        writer      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        entry_hash  TEXT NOT NULL,
        time        TEXT NOT NULL,
        event       TEXT NOT NULL,
        recording   TEXT,
        actor       TEXT NOT NULL,
        details     TEXT NOT NULL,
        dedupe_key  TEXT,
        PRIMARY KEY (writer, seq)
    );
    CREATE UNIQUE INDEX ledger_dedupe ON ledger (writer, dedupe_key) WHERE dedupe_key IS NOT NULL
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: work queue, catalog, ledger index
    """
    CREATE TABLE recordings (
        sha256            TEXT PRIMARY KEY,
        sm3               TEXT,
        size_bytes        INTEGER NOT NULL,
        extension         TEXT NOT NULL,
        object_key        TEXT NOT NULL,
        device_id         TEXT,
        officer_id        TEXT,
        recorded_start    TEXT,
        recorded_end      TEXT,
        time_source       TEXT,
        archive_deadline  TEXT,
        archived_at       TEXT,
        flags             TEXT NOT NULL DEFAULT '[]',
        flag_reasons      TEXT NOT NULL DEFAULT '{}',
        media             TEXT,
        manifest_sha256   TEXT,
        verified_by       TEXT,
        first_seen_at     TEXT NOT NULL
    );
    CREATE INDEX recordings_pending ON recordings (archive_deadline) WHERE archived_at IS NULL;

    CREATE TABLE sources (
        id             INTEGER PRIMARY KEY,
        source_key     TEXT NOT NULL UNIQUE,
        origin         TEXT NOT NULL,
        root           TEXT NOT NULL,
        rel_path       TEXT NOT NULL,
        rel_path_b64   TEXT,
        device_id      TEXT,
        officer_id     TEXT,
        size_bytes     INTEGER,
        mtime_ns       INTEGER,
        state          TEXT NOT NULL,
        reason         TEXT,
        reported       INTEGER NOT NULL DEFAULT 0,
        sha256         TEXT,  -- its recording, once spooled (the row may follow a moment later)
        sm3            TEXT,
        spool_path     TEXT,
        acquired_at    TEXT,
        discovered_at  TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sources_state ON sources (state);
    CREATE INDEX sources_sha256 ON sources (sha256);

    """ + LEDGER_INDEX_SCHEMA + """;
    CREATE INDEX ledger_recording ON ledger (recording);
    """,
    # 2: device registry, officer assignments, ledger events waiting for the archive
    """
    CREATE TABLE devices (
        device_id        TEXT PRIMARY KEY,
        model            TEXT,
        role             TEXT,
        serial           TEXT,
        fs_uuid          TEXT,
        fs_label         TEXT,
        registered_at    TEXT NOT NULL,
        first_docked_at  TEXT,  -- NULL: registered by an assignment, not docked yet
        last_docked_at   TEXT,
        docks            INTEGER NOT NULL DEFAULT 0,
        in_service       INTEGER NOT NULL DEFAULT 1
    );

    CREATE TABLE assignments (
        id          INTEGER PRIMARY KEY,
        device_id   TEXT NOT NULL REFERENCES devices (device_id),
        officer_id  TEXT NOT NULL,
        valid_from  TEXT NOT NULL,
        valid_to    TEXT,  -- NULL: open-ended
        created_at  TEXT NOT NULL,
        note        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX assignments_device ON assignments (device_id, valid_from);
    CREATE UNIQUE INDEX assignments_open ON assignments (device_id) WHERE valid_to IS NULL;

    CREATE TABLE ledger_outbox (
        id          INTEGER PRIMARY KEY,
        event       TEXT NOT NULL,
        recording   TEXT,
        actor       TEXT NOT NULL,
        details     TEXT NOT NULL,  -- JSON, with a unique source_key: appended once-only
        created_at  TEXT NOT NULL
    );
    """,
    # 3: media proxies: one job per archived recording (see media/proxy.py)
    """
    CREATE TABLE proxy_jobs (
        sha256           TEXT PRIMARY KEY REFERENCES recordings (sha256),
        state            TEXT NOT NULL,  -- pending|running|done|failed|unplayable|skipped
        kind             TEXT,           -- video|audio|none
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT,
        last_error       TEXT,
        proxy_key        TEXT,
        proxy_sha256     TEXT,
        proxy_size_bytes INTEGER,
        poster_key       TEXT,
        poster_sha256    TEXT,
        created_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX proxy_jobs_state ON proxy_jobs (state, next_attempt_at)
    """,
    # 4: compliance upkeep: fixity audit results and the last run of each scheduled job
    """
    CREATE TABLE fixity (
        sha256      TEXT PRIMARY KEY REFERENCES recordings (sha256),
        checked_at  TEXT NOT NULL,
        ok          INTEGER NOT NULL,
        detail      TEXT
    );
    CREATE INDEX fixity_checked ON fixity (checked_at);

    CREATE TABLE upkeep_runs (
        job          TEXT PRIMARY KEY,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        result       TEXT
    );
    """,
    # 5 (recorder clocks): what the device's clock seemed to say at its latest dock: the
    # newest file's mtime on it, and that minus the dock time. (No comments inside an ALTER:
    # SQLite appends the column text, comment and all, to the stored CREATE TABLE.)
    """
    ALTER TABLE devices ADD COLUMN last_newest_file_at TEXT;
    ALTER TABLE devices ADD COLUMN last_clock_offset_s REAL
    """,
)


# Below this much free space an SQLite I/O error is most likely the disk being full (SQLite
# reports a failed WAL or shared-memory file extension as "disk I/O error").
_LOW_SPACE_BYTES = 1024 * 1024


class Database:
    """One SQLite connection shared by the threads of one process, serialised by a lock.

    Writes are small and rare next to the copying and uploading they describe, so one
    connection is simpler than a pool and keeps every transaction strictly ordered.
    """

    def __init__(
        self, path: Path, *, migrations: Sequence[str] = MIGRATIONS, what: str = "state database"
    ) -> None:
        self.path = path
        self.what = what
        self.migrations = tuple(migrations)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(_("cannot open {what} {path}: {exc}{hint}").format(
                what=what, path=path, exc=exc, hint=self._hint(exc))) from exc
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(self.migrations):
                raise StateError(
                    _("{what} {path} has schema {version}, newer than this evidence-daemon "
                      "({count}); upgrade the software").format(
                          what=self.what, path=self.path, version=version, count=len(self.migrations))
                )
            for number, script in enumerate(self.migrations[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, so concurrent processes queue instead of deadlocking."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"{self.what} {self.path}: {exc}{self._hint(exc)}") from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:  # SQLite may keep it open: never leave it so
                    self._conn.execute("ROLLBACK")
                raise StateError(
                    _("{what} {path}: commit failed: {exc}{hint}").format(
                        what=self.what, path=self.path, exc=exc, hint=self._hint(exc))
                ) from exc

    def _hint(self, exc: BaseException) -> str:
        """What the operator can do about a database error, when we know."""
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "I/O error" in text):
            try:
                stats = os.statvfs(self.path.parent)
                free_bytes = stats.f_bavail * stats.f_frsize
            except OSError:
                free_bytes = -1
            if "full" in text or 0 <= free_bytes < _LOW_SPACE_BYTES:
                return (f" (the disk of {self.path.parent} is full: {max(free_bytes, 0):,} bytes "
                        "free. Free space there; what was committed is kept and the run can be "
                        "repeated)")
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return (f" (the file is damaged. Move it aside, keeping it for examination — e.g. "
                    f"mv {self.path} {self.path}.damaged — and run again: the state is rebuilt "
                    "from the archive and the devices, and nothing archived is stored twice)")
        return ""

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"{self.what} {self.path}: {exc}") from exc

    def query_one(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self.query_one(sql, params)
        return row[0] if row is not None else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
