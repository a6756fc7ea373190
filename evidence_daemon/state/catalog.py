"""The station's catalog: the ``recordings`` table, one row per distinct content (SHA-256).

This module is the only one that reads or writes ``recordings`` (``tests/test_table_owners.py``
holds every other module to that). A row is entered once, as pending (``archived_at`` NULL)
with its deadline, as soon as its content is spooled; it is marked archived only in the same
transaction that marks its source archived, and only after the original verified and its
manifest and ledger events were stored. Afterwards only its flags grow (``flag_in``: the proxy
maker found it unplayable). A row is never deleted and never entered twice: identical content
from two cards is one recording.

Tables keyed by a recording belong to their own modules (``proxy_jobs`` to ``media.jobs``,
``fixity`` to ``upkeep.jobs``); the questions that join them to ``recordings`` are asked here,
reading only the other table's key and the column they order by.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .db import Database
from .queue import WorkQueue


@dataclass(frozen=True)
class Recording:
    """One row of ``recordings``, its JSON columns decoded."""

    sha256: str
    sm3: str | None
    size_bytes: int
    extension: str
    object_key: str
    device_id: str | None
    officer_id: str | None
    recorded_start: str | None  # ISO 8601 in the station's zone, with its offset
    recorded_end: str | None
    time_source: str | None
    archive_deadline: str | None
    first_seen_at: str
    flags: tuple[str, ...] = ()  # sorted
    flag_reasons: dict[str, str] = field(default_factory=dict)  # flag -> why
    media: dict[str, Any] | None = None
    archived_at: str | None = None  # NULL: pending
    manifest_sha256: str | None = None
    verified_by: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Recording:
        return cls(
            sha256=row["sha256"], sm3=row["sm3"], size_bytes=int(row["size_bytes"]),
            extension=row["extension"], object_key=row["object_key"],
            device_id=row["device_id"], officer_id=row["officer_id"],
            recorded_start=row["recorded_start"], recorded_end=row["recorded_end"],
            time_source=row["time_source"], archive_deadline=row["archive_deadline"],
            first_seen_at=row["first_seen_at"], flags=tuple(json.loads(row["flags"])),
            flag_reasons=json.loads(row["flag_reasons"]),
            media=json.loads(row["media"]) if row["media"] else None,
            archived_at=row["archived_at"], manifest_sha256=row["manifest_sha256"],
            verified_by=row["verified_by"],
        )


class Catalog:
    """Owner of the ``recordings`` table."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, sha256: str) -> Recording | None:
        row = self.db.query_one("SELECT * FROM recordings WHERE sha256 = ?", (sha256,))
        return Recording.from_row(row) if row is not None else None

    def has(self, sha256: str) -> bool:
        return self.db.query_one("SELECT 1 FROM recordings WHERE sha256 = ?", (sha256,)) is not None

    def recordings(self) -> list[Recording]:
        """Every recording, pending and archived, in the order the station first saw them."""
        return [Recording.from_row(row) for row in self.db.query(
            "SELECT * FROM recordings ORDER BY first_seen_at, sha256")]

    def count_archived(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM recordings WHERE archived_at IS NOT NULL"))

    def archived_without_proxy_job(self) -> list[Recording]:
        """Archived recordings that have no ``proxy_jobs`` row yet."""
        return [Recording.from_row(row) for row in self.db.query(
            "SELECT r.* FROM recordings AS r LEFT JOIN proxy_jobs AS j ON j.sha256 = r.sha256"
            " WHERE r.archived_at IS NOT NULL AND j.sha256 IS NULL")]

    def count_archived_without_proxy_job(self) -> int:
        return int(self.db.scalar(
            "SELECT COUNT(*) FROM recordings AS r LEFT JOIN proxy_jobs AS j ON j.sha256 = r.sha256"
            " WHERE r.archived_at IS NOT NULL AND j.sha256 IS NULL"))

    def archived_by_fixity_age(self, limit: int) -> list[Recording]:
        """Up to ``limit`` archived recordings whose original was checked longest ago (by
        ``fixity.checked_at``), the never-checked first."""
        return [Recording.from_row(row) for row in self.db.query(
            "SELECT r.* FROM recordings AS r LEFT JOIN fixity AS f ON f.sha256 = r.sha256"
            " WHERE r.archived_at IS NOT NULL"
            " ORDER BY f.checked_at IS NOT NULL, f.checked_at, r.sha256 LIMIT ?", (limit,))]

    def first_seen(self) -> dict[str, str]:
        """When the station first saw each recording, by SHA-256."""
        return {row["sha256"]: row["first_seen_at"]
                for row in self.db.query("SELECT sha256, first_seen_at FROM recordings")}

    def add_pending(self, recording: Recording) -> None:
        """Enter a spooled recording as pending; a recording already there is kept as it is."""
        self.db.execute(
            "INSERT OR IGNORE INTO recordings (sha256, sm3, size_bytes, extension, object_key,"
            " device_id, officer_id, recorded_start, recorded_end, time_source,"
            " archive_deadline, flags, flag_reasons, media, first_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (recording.sha256, recording.sm3, recording.size_bytes, recording.extension,
             recording.object_key, recording.device_id, recording.officer_id,
             recording.recorded_start, recording.recorded_end, recording.time_source,
             recording.archive_deadline, json.dumps(list(recording.flags)),
             json.dumps(recording.flag_reasons, ensure_ascii=False),
             json.dumps(recording.media, ensure_ascii=False) if recording.media is not None
             else None,
             recording.first_seen_at),
        )

    def mark_archived(self, sha256: str, *, archived_at: str, manifest_sha256: str,
                      verified_by: str | None, source_id: int, at: str) -> None:
        """The recording is archived, and so is the source it was read from: one transaction,
        so a crash leaves both pending (and the next run finds the work done) or both done."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE recordings SET archived_at = ?, manifest_sha256 = ?, verified_by = ?"
                " WHERE sha256 = ?", (archived_at, manifest_sha256, verified_by, sha256))
            WorkQueue.archived_in(conn, source_id, at=at)

    @staticmethod
    def flag_in(conn: sqlite3.Connection, sha256: str, flag: str, reason: str) -> None:
        """Within the caller's transaction: flag the recording, keeping the reason of a flag it
        already has. Nothing happens to a recording that is not in the catalog."""
        row = conn.execute("SELECT flag_reasons FROM recordings WHERE sha256 = ?",
                           (sha256,)).fetchone()
        reasons = json.loads(row["flag_reasons"]) if row else {}
        reasons.setdefault(flag, reason)
        conn.execute("UPDATE recordings SET flags = ?, flag_reasons = ? WHERE sha256 = ?",
                     (json.dumps(sorted(reasons)), json.dumps(reasons, ensure_ascii=False), sha256))
