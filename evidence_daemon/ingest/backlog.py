"""Reads what waits in the spool for an upload, in the order it will go (``priority``).

The adapter between the ``sources``/``recordings`` tables and the pure forecast
(``compliance.forecast``): one entry per recording (identical content on two cards is one
upload), keyed by the most urgent of its sources, as the pipeline's queue would take it.
Read-only; it never writes and decides nothing but the order the pipeline itself follows.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from ..clock import parse_time
from ..compliance.forecast import Waiting
from ..state.db import Database
from ..state.queue import WorkQueue
from .priority import OrderRules, UploadKey, estimated_deadline, is_important, upload_key


def read_backlog(database: Database, rules: OrderRules) -> list[Waiting]:
    """Recordings waiting in the spool, in upload order, with their (estimated) deadlines."""
    waiting: dict[str, tuple[UploadKey, int, datetime | None, bool]] = {}
    # Rows as dicts keyed like the columns (``QueuedSource``'s fields).
    for row in map(asdict, WorkQueue(database).waiting_for_upload()):
        deadline = (parse_time(row["archive_deadline"]) if row["archive_deadline"]
                    else estimated_deadline(row["rel_path"], row["mtime_ns"], rules=rules,
                                            seen_at=parse_time(row["discovered_at"])))
        important = is_important(row["rel_path"], rules.priority_patterns)
        key = upload_key(important=important, deadline=deadline, first_seen=int(row["id"]))
        known = waiting.get(row["sha256"])
        if known is None or key < known[0]:
            waiting[row["sha256"]] = (key, int(row["size_bytes"] or 0), deadline, important)
    return [Waiting(size_bytes=size, deadline=deadline, important=important)
            for _, size, deadline, important in sorted(waiting.values(), key=lambda entry: entry[0])]
