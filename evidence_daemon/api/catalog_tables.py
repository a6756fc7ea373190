"""The writes to the API node's catalog tables (``writers``, ``events``, ``recordings``,
``case_links`` of ``api.db``), and the reads the indexer decides them from.

Only the indexer calls this module; it is the only writer of those tables (``api.catalog``
and ``api.package`` read them). Methods that take a connection run inside the indexer's
transaction: an event and the recording rows it changes are committed together, so a crash
never leaves a half-updated row. Nothing here decides anything: which entries verify and what
a recording's row says are ``entries`` and ``catalog_row``'s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..custody.chain import GENESIS, Head
from ..state.db import Database
from .catalog_row import RECORDING_COLUMNS, LedgerEvent
from .db import CATALOG_TABLES
from .entries import CheckedEntry

_INSERT_RECORDING = (
    f"INSERT OR REPLACE INTO recordings ({', '.join(RECORDING_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in RECORDING_COLUMNS)})"
)


class CatalogTables:
    """Owner of the catalog tables of one ``api.db``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _one(self, conn: sqlite3.Connection | None, sql: str,
             params: Sequence[Any]) -> sqlite3.Row | None:
        if conn is not None:
            row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
            return row
        return self.database.query_one(sql, params)

    def clear(self, conn: sqlite3.Connection) -> None:
        """Empty every catalog table (users, grants and the node's ledger index stay)."""
        for table in CATALOG_TABLES:
            conn.execute(f"DELETE FROM {table}")

    # -- writers ------------------------------------------------------------------------

    def writers(self) -> dict[str, sqlite3.Row]:
        return {row["writer"]: row for row in self.database.query(
            "SELECT writer, public_key, fingerprint, head_seq, head_hash, problem FROM writers")}

    def writer(self, writer: str) -> sqlite3.Row | None:
        return self.database.query_one(
            "SELECT writer, public_key, fingerprint, head_seq, head_hash, problem FROM writers"
            " WHERE writer = ?", (writer,))

    def pin_key(self, writer: str, pem: str, key_fingerprint: str, *, at: str) -> None:
        """Keep a writer's public key; a key already pinned is never replaced."""
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO writers (writer, public_key, fingerprint, problem, updated_at)"
                " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (writer) DO UPDATE SET"
                " public_key = excluded.public_key, fingerprint = excluded.fingerprint,"
                " problem = NULL, updated_at = excluded.updated_at"
                " WHERE writers.public_key IS NULL",
                (writer, pem, key_fingerprint, at),
            )

    def writer_problem(self, conn: sqlite3.Connection, writer: str) -> str | None:
        row = conn.execute("SELECT problem FROM writers WHERE writer = ?", (writer,)).fetchone()
        return row["problem"] if row is not None else None

    def set_writer_problem(self, conn: sqlite3.Connection, writer: str, problem: str | None,
                           *, at: str) -> None:
        conn.execute(
            "INSERT INTO writers (writer, problem, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (writer) DO UPDATE SET problem = excluded.problem,"
            " updated_at = excluded.updated_at",
            (writer, problem, at),
        )

    def head(self, writer: str, conn: sqlite3.Connection | None = None) -> Head:
        """How far the writer's chain is indexed (the poll watermark)."""
        row = self._one(conn, "SELECT head_seq, head_hash FROM writers WHERE writer = ?", (writer,))
        return Head(int(row["head_seq"]), str(row["head_hash"])) if row is not None else GENESIS

    def move_head(self, conn: sqlite3.Connection, writer: str, head: Head, *, at: str) -> None:
        conn.execute("UPDATE writers SET head_seq = ?, head_hash = ?, updated_at = ?"
                     " WHERE writer = ?", (head.seq, head.hash, at, writer))

    # -- events -------------------------------------------------------------------------

    def insert_entries(self, conn: sqlite3.Connection, checked: Sequence[CheckedEntry]) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO events (writer, seq, entry_hash, prev, time, event, recording,"
            " actor, details, sig, verified, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(item.entry.writer, item.entry.seq, item.entry.entry_hash, item.entry.prev,
              item.entry.time, item.entry.event, item.entry.recording, item.entry.actor,
              item.entry.details_json, item.entry.sig, 1 if item.verified else 0, item.problem)
             for item in checked],
        )

    def is_verified(self, writer: str, seq: int) -> bool:
        return bool(self.database.scalar(
            "SELECT verified FROM events WHERE writer = ? AND seq = ?", (writer, seq)))

    def claimed_role(self, writer: str, conn: sqlite3.Connection | None) -> Any:
        """The role the writer's first verified ``key-registered`` entry names (None: none)."""
        row = self._one(conn, "SELECT details FROM events WHERE writer = ? AND verified = 1 AND"
                        " event = 'key-registered' ORDER BY seq LIMIT 1", (writer,))
        return json.loads(row["details"]).get("role") if row is not None else None

    def first_event(self, writer: str, conn: sqlite3.Connection | None) -> str | None:
        """The writer's first verified event other than ``key-registered``."""
        row = self._one(conn, "SELECT event FROM events WHERE writer = ? AND verified = 1 AND"
                        " event != 'key-registered' ORDER BY seq LIMIT 1", (writer,))
        return str(row["event"]) if row is not None else None

    def unverified(self, conn: sqlite3.Connection, writer: str) -> tuple[int, int, str] | None:
        """How many of the writer's entries do not verify, the first's seq and its problem."""
        count, first = conn.execute(
            "SELECT COUNT(*), MIN(seq) FROM events WHERE writer = ? AND verified = 0",
            (writer,)).fetchone()
        if not count:
            return None
        problem = conn.execute("SELECT problem FROM events WHERE writer = ? AND seq = ?",
                               (writer, first)).fetchone()["problem"]
        return int(count), int(first), str(problem)

    def latest_of_each_writer(self, event: str) -> list[sqlite3.Row]:
        """The newest verified ``event`` entry of every writer (writer, seq, entry_hash, details)."""
        # SQLite takes the bare columns from the row holding MAX(seq).
        return self.database.query(
            "SELECT writer, MAX(seq) AS seq, entry_hash, details FROM events"
            " WHERE event = ? AND verified = 1 GROUP BY writer", (event,))

    def verified_events(self, conn: sqlite3.Connection,
                        recording: str) -> list[tuple[LedgerEvent, str | None]]:
        """A recording's verified events in time order, each with its stored problem."""
        return [(LedgerEvent(row["writer"], row["seq"], row["time"], row["event"],
                             json.loads(row["details"])), row["problem"])
                for row in conn.execute(
                    "SELECT writer, seq, time, event, details, problem FROM events"
                    " WHERE recording = ? AND verified = 1 ORDER BY time, writer, seq",
                    (recording,))]

    def set_event_problem(self, conn: sqlite3.Connection, writer: str, seq: int,
                          problem: str | None) -> None:
        conn.execute("UPDATE events SET problem = ? WHERE writer = ? AND seq = ?",
                     (problem, writer, seq))

    # -- recordings -----------------------------------------------------------------------

    def catalogued(self, recordings: Iterable[str]) -> set[str]:
        """Which of ``recordings`` have a catalog row."""
        wanted = sorted(recordings)
        if not wanted:
            return set()
        return {row["sha256"] for row in self.database.query(
            f"SELECT sha256 FROM recordings WHERE sha256 IN ({', '.join('?' for _ in wanted)})",
            wanted)}

    def recording(self, conn: sqlite3.Connection, recording: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM recordings WHERE sha256 = ?", (recording,)).fetchone()
        return row

    def put_recording(self, conn: sqlite3.Connection, row: dict[str, Any], cases: Sequence[str],
                      *, cases_changed: bool) -> None:
        conn.execute(_INSERT_RECORDING, [row[column] for column in RECORDING_COLUMNS])
        if cases_changed:
            conn.execute("DELETE FROM case_links WHERE sha256 = ?", (row["sha256"],))
            conn.executemany("INSERT INTO case_links (case_id, sha256) VALUES (?, ?)",
                             [(case_id, row["sha256"]) for case_id in cases])

    def remove_recording(self, conn: sqlite3.Connection, recording: str) -> None:
        conn.execute("DELETE FROM recordings WHERE sha256 = ?", (recording,))
        conn.execute("DELETE FROM case_links WHERE sha256 = ?", (recording,))
