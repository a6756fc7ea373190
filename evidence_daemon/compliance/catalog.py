"""Reads the facts the compliance core needs from the station's SQLite (read-only).

The adapter between the station's tables (``recordings`` and ``sources`` through their owners,
``state.catalog`` and ``state.queue``; ``devices`` and ``fixity`` directly) and the pure
``snapshot``/``rules`` functions; it never writes and never decides anything.
"""

from __future__ import annotations

from ..clock import parse_optional, parse_time
from ..state.catalog import Catalog
from ..state.db import Database
from ..state.queue import WorkQueue
from .rules import FLAG_TIME_IMPLAUSIBLE
from .snapshot import DeviceFacts, RecordingFacts


def recording_facts(database: Database) -> list[RecordingFacts]:
    return [
        RecordingFacts(
            sha256=recording.sha256,
            deadline=parse_optional(recording.archive_deadline),
            archived_at=parse_optional(recording.archived_at),
            recorded_end=parse_optional(recording.recorded_end),
            first_seen_at=parse_time(recording.first_seen_at),
            time_implausible=FLAG_TIME_IMPLAUSIBLE in recording.flags,
        )
        for recording in Catalog(database).recordings()
    ]


def device_facts(database: Database) -> list[DeviceFacts]:
    return [
        DeviceFacts(
            device_id=row["device_id"],
            registered_at=parse_time(row["registered_at"]),
            last_docked_at=parse_optional(row["last_docked_at"]),
            in_service=bool(row["in_service"]),
        )
        for row in database.query(
            "SELECT device_id, registered_at, last_docked_at, in_service FROM devices ORDER BY device_id"
        )
    ]


def queue_depth(database: Database) -> dict[str, int]:
    """Source files by work-queue state."""
    return WorkQueue(database).counts_by_state()


def fixity_failed_count(database: Database) -> int:
    """Archived recordings whose latest fixity check failed."""
    return int(database.scalar("SELECT COUNT(*) FROM fixity WHERE ok = 0"))
