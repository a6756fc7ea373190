"""The work queue: the ``sources`` table, one row per file seen on a device or in an inbox.

This module is the only one that reads or writes ``sources`` (``tests/test_table_owners.py``
holds every other module to that); the moves it makes are the ones ``state.transitions`` allows. A row is changed only after the side effect it records is
durable (the spool copy fsync'd and renamed before ``spooled``; the original verified, its
manifest stored and its ledger events written before ``archived``, which ``Catalog.mark_archived``
commits together with the recording). A row is never deleted: a source's history is evidence
of what the station did with the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from ..clock import format_time
from ..errors import IngestError
from .db import Database
from .transitions import FAILED, SKIPPED, SPOOLED, SourceState, can_move
from ..i18n import _, untranslated

_BATCH = 500  # ids per ``IN (...)``: far below SQLite's limit on bound parameters


@dataclass(frozen=True)
class Source:
    """One row of ``sources``."""

    id: int
    source_key: str  # origin, path, size and mtime hashed: the same file seen again
    origin: str
    root: str
    rel_path: str  # as shown (undecodable bytes escaped); ``rel_path_b64`` holds the bytes
    rel_path_b64: str | None
    device_id: str | None
    officer_id: str | None
    size_bytes: int | None
    mtime_ns: int | None
    state: SourceState
    reason: str | None
    reported: bool  # a failed/skipped source's ``quarantined`` event is in the ledger
    sha256: str | None  # its recording, once spooled
    sm3: str | None
    spool_path: str | None
    acquired_at: str | None
    discovered_at: str
    updated_at: str
    attempts: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Source:
        values = {item.name: row[item.name] for item in fields(cls)}
        values["state"] = SourceState(values["state"])
        values["reported"] = bool(values["reported"])
        return cls(**values)

    def custody_details(self) -> dict[str, Any]:
        """What the ledger events and the manifest say about where the file came from."""
        details: dict[str, Any] = {
            "source_key": self.source_key,
            "path": self.rel_path,
            "root": self.root,
            "device_id": self.device_id,
            "officer_id": self.officer_id,
            "size_bytes": self.size_bytes,
            "mtime": format_time(datetime.fromtimestamp(self.mtime_ns / 1e9, tz=timezone.utc))
            if self.mtime_ns is not None else None,
            "acquired_at": self.acquired_at,
        }
        if self.rel_path_b64:
            details["path_b64"] = self.rel_path_b64
        return details


@dataclass(frozen=True)
class QueuedSource:
    """A source as the upload order sees it: with its recording's deadline once catalogued."""

    id: int
    sha256: str | None
    size_bytes: int | None
    rel_path: str
    mtime_ns: int | None
    discovered_at: str
    archive_deadline: str | None  # NULL until the recording is catalogued


@dataclass(frozen=True)
class SourceArchival:
    """A source with the time its recording was verified in the archive (None: not yet)."""

    source: Source
    archived_at: str | None


# Spooled, or failed/skipped without their ``quarantined`` event: what a later run must finish.
_UNFINISHED = "s.state = ? OR (s.state IN (?, ?) AND s.reported = 0)"
_UNFINISHED_STATES = (SPOOLED, FAILED, SKIPPED)
# On its way to the archive: proxies wait while such a source was touched lately.
_IN_FLIGHT_STATES = (SourceState.DISCOVERED, SPOOLED)


class WorkQueue:
    """Owner of the ``sources`` table."""

    def __init__(self, database: Database) -> None:
        self.db = database

    # -- reading ------------------------------------------------------------------------

    def get(self, source_id: int) -> Source | None:
        row = self.db.query_one("SELECT * FROM sources WHERE id = ?", (source_id,))
        return Source.from_row(row) if row is not None else None

    def find(self, source_key: str) -> Source | None:
        row = self.db.query_one("SELECT * FROM sources WHERE source_key = ?", (source_key,))
        return Source.from_row(row) if row is not None else None

    def of_origin(self, origin: str) -> list[Source]:
        """Every source of one origin (a device id or an inbox) that reached the spool."""
        return [Source.from_row(row) for row in self.db.query(
            "SELECT * FROM sources WHERE origin = ? AND sha256 IS NOT NULL ORDER BY id", (origin,))]

    def with_content(self) -> list[Source]:
        """Every source that reached the spool (it names a recording), oldest first."""
        return [Source.from_row(row) for row in self.db.query(
            "SELECT * FROM sources WHERE sha256 IS NOT NULL ORDER BY id")]

    def _with_archival(self, where: str, params: Sequence[Any]) -> list[SourceArchival]:
        # Reads ``recordings`` (owned by ``state.catalog``) for the archival time only.
        return [SourceArchival(Source.from_row(row), row["archived_at"]) for row in self.db.query(
            "SELECT s.*, r.archived_at FROM sources AS s"
            " LEFT JOIN recordings AS r ON r.sha256 = s.sha256 WHERE " + where, params)]

    def of_origin_with_archival(self, origin: str) -> list[SourceArchival]:
        """``of_origin`` with each recording's archival time, read together (device wipe)."""
        return self._with_archival("s.origin = ? AND s.sha256 IS NOT NULL ORDER BY s.id", (origin,))

    def at_path_with_archival(self, root: str, rel_path: str,
                              rel_path_b64: str | None) -> list[SourceArchival]:
        """The sources of one path under ``root``, newest first, with their recording's
        archival time (inbox release)."""
        return self._with_archival(
            "s.root = ? AND s.rel_path = ? AND s.rel_path_b64 IS ? ORDER BY s.id DESC",
            (root, rel_path, rel_path_b64))

    def _queued(self, where: str, params: Sequence[Any]) -> list[QueuedSource]:
        # Reads ``recordings`` (owned by ``state.catalog``) for the deadline only.
        return [QueuedSource(int(row["id"]), row["sha256"], row["size_bytes"], row["rel_path"],
                             row["mtime_ns"], row["discovered_at"], row["archive_deadline"])
                for row in self.db.query(
                    "SELECT s.id, s.sha256, s.size_bytes, s.rel_path, s.mtime_ns, s.discovered_at,"
                    " r.archive_deadline FROM sources AS s"
                    " LEFT JOIN recordings AS r ON r.sha256 = s.sha256 WHERE " + where, params)]

    def left_by_earlier_runs(self) -> list[QueuedSource]:
        """Sources still spooled, or failed/skipped without their ``quarantined`` event."""
        return self._queued(_UNFINISHED, _UNFINISHED_STATES)

    def count_left_by_earlier_runs(self) -> int:
        """How many sources ``left_by_earlier_runs`` would return."""
        return int(self.db.scalar(
            "SELECT COUNT(*) FROM sources AS s WHERE " + _UNFINISHED, _UNFINISHED_STATES))

    def queued(self, source_id: int) -> QueuedSource | None:
        """One source as the upload order sees it."""
        found = self._queued("s.id = ?", (source_id,))
        return found[0] if found else None

    def waiting_for_upload(self) -> list[QueuedSource]:
        """Sources whose copy waits in the spool for the archive."""
        return self._queued("s.state = ? AND s.sha256 IS NOT NULL", (SPOOLED,))

    def count_spooled(self, source_ids: Sequence[int]) -> int:
        """How many of ``source_ids`` are still spooled."""
        count = 0
        for start in range(0, len(source_ids), _BATCH):
            batch = source_ids[start:start + _BATCH]
            count += int(self.db.scalar(
                f"SELECT COUNT(*) FROM sources WHERE state = ? AND id IN ({','.join('?' * len(batch))})",
                (SPOOLED, *batch),
            ))
        return count

    def spooled_copies_of(self, sha256: str) -> int:
        """Sources of this content still waiting in the spool (it is released at 0)."""
        return int(self.db.scalar(
            "SELECT COUNT(*) FROM sources WHERE sha256 = ? AND state = ?", (sha256, SPOOLED)))

    def in_flight_since(self, since: str) -> bool:
        """A source on its way to the archive (discovered or spooled) was touched at or after
        ``since``."""
        return self.db.scalar(
            "SELECT 1 FROM sources WHERE state IN (?, ?) AND updated_at >= ? LIMIT 1",
            (*_IN_FLIGHT_STATES, since)) is not None

    def counts_by_state(self) -> dict[str, int]:
        """How many sources are in each state (states without a source are left out)."""
        return {row["state"]: int(row["n"]) for row in self.db.query(
            "SELECT state, COUNT(*) AS n FROM sources GROUP BY state")}

    def oldest_discovered(self, states: Sequence[SourceState]) -> str | None:
        """When the longest-waiting source in one of ``states`` was first seen."""
        marks = ", ".join("?" for _ in states)
        value = self.db.scalar(
            f"SELECT MIN(discovered_at) FROM sources WHERE state IN ({marks})", tuple(states))
        return str(value) if value is not None else None

    # -- writing ------------------------------------------------------------------------

    def add(self, *, source_key: str, origin: str, root: str, rel_path: str,
            rel_path_b64: str | None, device_id: str | None, officer_id: str | None,
            size_bytes: int, mtime_ns: int, at: str) -> int:
        """Register a newly seen file as ``discovered``; returns its id."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO sources (source_key, origin, root, rel_path, rel_path_b64,"
                " device_id, officer_id, size_bytes, mtime_ns, state, discovered_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source_key, origin, root, rel_path, rel_path_b64, device_id, officer_id,
                 size_bytes, mtime_ns, SourceState.DISCOVERED, at, at),
            )
            return int(cursor.lastrowid or 0)

    def move(self, source_id: int, state: SourceState, reason: str | None, *, at: str,
             count_attempt: bool = False) -> None:
        """Move a source to ``state``; IngestError when ``transitions`` does not allow it.
        A source that becomes failed or skipped is reported (``quarantined``) again."""
        reason = untranslated(reason)  # stored reasons are English (i18n)
        with self.db.transaction() as conn:
            current = conn.execute("SELECT state FROM sources WHERE id = ?", (source_id,)).fetchone()
            if current["state"] != state and not can_move(current["state"], state):
                raise IngestError(_("source {source_id}: cannot move from {state} to {state2}").format(
                    source_id=source_id, state=current['state'], state2=state))
            conn.execute(
                "UPDATE sources SET state = ?, reason = ?, reported = CASE WHEN ? THEN 0 ELSE reported END,"
                " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (state, reason, state in (FAILED, SKIPPED), 1 if count_attempt else 0, at, source_id),
            )

    def mark_spooled(self, source_id: int, *, sha256: str, sm3: str | None, spool_path: str,
                     at: str) -> None:
        """The source's spool copy is durable: it waits for the archive."""
        self.db.execute(
            "UPDATE sources SET state = ?, reason = NULL, sha256 = ?, sm3 = ?, spool_path = ?,"
            " acquired_at = ?, updated_at = ? WHERE id = ?",
            (SPOOLED, sha256, sm3, spool_path, at, at, source_id),
        )

    def note(self, source_id: int, reason: str, *, at: str | None = None,
             count_attempt: bool = False) -> None:
        """Record why a source did not move on, leaving its state as it is."""
        reason = untranslated(reason)
        if at is not None:
            self.db.execute(
                "UPDATE sources SET reason = ?, attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (reason, 1 if count_attempt else 0, at, source_id))
        else:
            self.db.execute(
                "UPDATE sources SET reason = ?, attempts = attempts + ? WHERE id = ?",
                (reason, 1 if count_attempt else 0, source_id))

    def fail_spooled_copies(self, sha256: str, reason: str, *, at: str) -> None:
        """The spool copy of this content was damaged and dropped: its spooled sources are
        failed, to be read again from the device."""
        reason = untranslated(reason)
        self.db.execute(
            "UPDATE sources SET state = ?, reason = ?, reported = 0, attempts = attempts + 1,"
            " updated_at = ? WHERE sha256 = ? AND state = ?",
            (FAILED, reason, at, sha256, SPOOLED),
        )

    def mark_reported(self, source_id: int) -> None:
        self.db.execute("UPDATE sources SET reported = 1 WHERE id = ?", (source_id,))

    @staticmethod
    def archived_in(conn: sqlite3.Connection, source_id: int, *, at: str) -> None:
        """Within ``Catalog.mark_archived``'s transaction: the source is archived."""
        conn.execute("UPDATE sources SET state = ?, reason = NULL, updated_at = ? WHERE id = ?",
                     (SourceState.ARCHIVED, at, source_id))
