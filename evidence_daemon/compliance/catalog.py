"""Reads the facts the compliance core needs from the station's SQLite (read-only).

The adapter between ``state.db`` and the pure ``snapshot``/``rules`` functions; it never
writes and never decides anything.
"""

from __future__ import annotations

import json
from ..clock import parse_optional, parse_time
from ..state.db import Database
from .rules import FLAG_TIME_IMPLAUSIBLE
from .snapshot import DeviceFacts, RecordingFacts


def recording_facts(database: Database) -> list[RecordingFacts]:
    return [
        RecordingFacts(
            sha256=row["sha256"],
            deadline=parse_optional(row["archive_deadline"]),
            archived_at=parse_optional(row["archived_at"]),
            recorded_end=parse_optional(row["recorded_end"]),
            first_seen_at=parse_time(row["first_seen_at"]),
            time_implausible=FLAG_TIME_IMPLAUSIBLE in json.loads(row["flags"]),
        )
        for row in database.query(
            "SELECT sha256, archive_deadline, archived_at, recorded_end, first_seen_at, flags"
            " FROM recordings"
        )
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
    return {row["state"]: int(row["n"])
            for row in database.query("SELECT state, COUNT(*) AS n FROM sources GROUP BY state")}


def fixity_failed_count(database: Database) -> int:
    """Archived recordings whose latest fixity check failed."""
    return int(database.scalar("SELECT COUNT(*) FROM fixity WHERE ok = 0"))
