"""Reading the API node's catalog: search, one recording, its custody, access trails, reports.

Queries over the index ``indexer`` keeps (``api.db``); nothing here writes or touches the
archive. Every function that takes an id from a request validates it first, and the officer
restriction is applied in the query itself, so a page can never contain a row the caller may
not see.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from ..clock import format_time, parse_time
from ..custody.chain import Event
from ..errors import ConflictError, NotFoundError, UsageError
from ..state.db import Database
from .auth import OFFICER, User, may_see
from ..i18n import _

_ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")
_SEARCH_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")
COMPLIANCE_STATES = ("on_time", "late")


def parse_instant(text: str, what: str) -> str:
    """An ISO 8601 instant as the catalog's UTC text (naive means UTC)."""
    try:
        return format_time(parse_time(text))
    except ValueError:
        raise UsageError(_("{what}: not an ISO 8601 date/time: {text!r}").format(
            what=what, text=text)) from None


def check_id(text: str) -> str:
    lowered = text.lower()
    if not _ID_PREFIX.fullmatch(lowered):
        raise UsageError(_("recording id {text!r}: give the SHA-256, or at least 12 of its hex "
                           "digits").format(text=text))
    return lowered


def missing_content_problem(sha256: str, kind: str, key: str, catalogued_size: int | None,
                            stored_size: int | None) -> str | None:
    """Why a recording's ``kind`` cannot be served as the catalog describes it, or None.
    ``stored_size`` is what the archive holds at ``key`` (None: nothing), ``catalogued_size``
    what the catalog expects (None: not known for viewing copies)."""
    what = f"the {kind} of recording {sha256[:12]} ({key})"
    if stored_size is None:
        return f"{what} is missing from the archive"
    if catalogued_size is not None and stored_size != catalogued_size:
        return f"{what} is {stored_size} bytes in the archive, not the {catalogued_size} catalogued"
    return None


@dataclass(frozen=True)
class SearchFilters:
    officer: str | None = None
    device: str | None = None
    station: str | None = None
    start_from: str | None = None  # UTC text, inclusive
    start_to: str | None = None  # UTC text, exclusive
    compliance: str | None = None
    case: str | None = None
    flag: str | None = None
    held: bool | None = None
    id_prefix: str | None = None


def time_window(column: str, start_from: str | None, start_to: str | None
                ) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) for ``start_from <= column < start_to``, either
    bound left open when None."""
    where: list[str] = []
    params: list[Any] = []
    for bound, operator in ((start_from, ">="), (start_to, "<")):
        if bound is not None:
            where.append(f"{column} {operator} ?")
            params.append(bound)
    return where, params


def encode_cursor(sort_time: str, sha256: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort_time, sha256]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise UsageError(_("cursor: not a cursor this API returned")) from None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(part, str) for part in value)):
        raise UsageError(_("cursor: not a cursor this API returned"))
    return value[0], value[1]


_SUMMARY_COLUMNS = ("station", "device_id", "officer_id", "recorded_start", "recorded_end",
                    "time_source", "archived_at", "archive_deadline", "compliance",
                    "size_bytes", "extension")


def summary(row: Any) -> dict[str, Any]:
    """A catalog row as a search result (``bodies.RecordingSummary``)."""
    media = json.loads(row["media"]) if row["media"] else None
    duration = media.get("duration_s") if isinstance(media, dict) else None
    return {
        "id": row["sha256"],
        "short_id": row["sha256"][:12],
        **{column: row[column] for column in _SUMMARY_COLUMNS},
        "flags": json.loads(row["flags"]),
        "cases": json.loads(row["cases"]),
        "held": bool(row["held"]),
        "has_proxy": row["proxy_key"] is not None,
        "has_poster": row["poster_key"] is not None,
        "duration_s": float(duration) if isinstance(duration, (int, float)) else None,
    }


def event_dict(row: Any) -> dict[str, Any]:
    """One indexed ledger entry as the API shows it (custody timeline, audit trail)."""
    return {"writer": row["writer"], "seq": row["seq"], "time": row["time"],
            "event": row["event"], "actor": row["actor"], "recording": row["recording"],
            "details": json.loads(row["details"]), "entry_hash": row["entry_hash"],
            "verified": bool(row["verified"]), "problem": row["problem"]}


class Catalog:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- recordings ------------------------------------------------------------------

    def search(self, user: User, filters: SearchFilters, *, limit: int,
               cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        where: list[str] = []
        params: list[Any] = []
        if user.role == OFFICER:
            where.append("r.officer_id = ?")
            params.append(user.officer_id)
        for column, value in (("r.officer_id", filters.officer), ("r.device_id", filters.device),
                              ("r.station", filters.station)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        window, window_params = time_window("r.sort_time", filters.start_from, filters.start_to)
        where += window
        params += window_params
        if filters.compliance is not None:
            if filters.compliance not in COMPLIANCE_STATES:
                raise UsageError(_("compliance: must be one of {join}").format(
                    join=', '.join(COMPLIANCE_STATES)))
            where.append("r.compliance = ?")
            params.append(filters.compliance)
        if filters.case is not None:
            where.append("r.sha256 IN (SELECT sha256 FROM case_links WHERE case_id = ?)")
            params.append(filters.case)
        if filters.flag is not None:
            # "flags != '[]'" matches the partial index recordings_flagged
            where.append("r.flags != '[]' AND EXISTS (SELECT 1 FROM json_each(r.flags) WHERE value = ?)")
            params.append(filters.flag)
        if filters.held is not None:
            where.append("r.held = ?")
            params.append(1 if filters.held else 0)
        if filters.id_prefix is not None:
            prefix = filters.id_prefix.lower()
            if not _SEARCH_PREFIX.fullmatch(prefix):
                raise UsageError(_("id: give at least 4 hex digits of a recording id"))
            where.append("r.sha256 >= ? AND r.sha256 < ?")
            params.extend([prefix, prefix + "g"])
        if cursor is not None:
            after_time, after_sha = decode_cursor(cursor)
            # A row value, so SQLite seeks the (sort_time, sha256) index: page 1000 costs
            # what page 2 does.
            where.append("(r.sort_time, r.sha256) < (?, ?)")
            params.extend([after_time, after_sha])
        sql = "SELECT r.* FROM recordings r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.sort_time DESC, r.sha256 DESC LIMIT ?"
        params.append(limit + 1)
        rows = self.database.query(sql, params)
        items = [summary(row) for row in rows[:limit]]
        next_cursor = (encode_cursor(rows[limit - 1]["sort_time"], rows[limit - 1]["sha256"])
                       if len(rows) > limit else None)
        return items, next_cursor

    def resolve(self, user: User, id_text: str) -> Any:
        """The catalog row of a recording the user may see; 404 for anything else."""
        prefix = check_id(id_text)
        rows = self.database.query(
            "SELECT * FROM recordings WHERE sha256 >= ? AND sha256 < ? ORDER BY sha256 LIMIT 2",
            (prefix, prefix + "g"),
        )
        if user.role == OFFICER:
            rows = [row for row in rows if row["officer_id"] == user.officer_id]
        if not rows:
            raise NotFoundError(_("no recording {id_text}").format(id_text=id_text))
        if len(rows) > 1:
            raise ConflictError(_("recording id {id_text} is ambiguous: give more digits").format(
                id_text=id_text))
        return rows[0]

    def visible(self, user: User, id_text: str) -> Any:
        """``resolve``, and 404 too for a role that may not read recordings at all."""
        row = self.resolve(user, id_text)
        if not may_see(user, row["officer_id"]):
            raise NotFoundError(_("no recording {id_text}").format(id_text=id_text))
        return row

    def events_of(self, sha256: str) -> list[dict[str, Any]]:
        return [event_dict(row) for row in self.database.query(
            "SELECT * FROM events WHERE recording = ? ORDER BY time, writer, seq", (sha256,))]

    def detail(self, row: Any) -> dict[str, Any]:
        events = self.events_of(row["sha256"])
        holds: dict[str, dict[str, Any]] = {}
        notes: list[dict[str, Any]] = []
        for event in events:
            if not event["verified"]:
                continue
            details = event["details"]
            if event["event"] == Event.HOLD_PLACED and isinstance(details.get("hold_id"), str):
                holds[details["hold_id"]] = {
                    "hold_id": details["hold_id"], "reason": details.get("reason"),
                    "case_id": details.get("case_id"), "placed_by": event["actor"],
                    "placed_at": event["time"], "applied": details.get("applied"),
                }
            elif event["event"] == Event.HOLD_RELEASED and details.get("hold_id") in holds:
                holds.pop(details["hold_id"])
            elif event["event"] == Event.NOTE_ADDED:
                notes.append({"text": details.get("text"), "by": event["actor"], "at": event["time"]})
        content = {}
        for kind, key_column, sha_column in (("original", "original_key", "sha256"),
                                             ("proxy", "proxy_key", "proxy_sha256"),
                                             ("poster", "poster_key", "poster_sha256")):
            if row[key_column]:
                content[kind] = {"sha256": row[sha_column],
                                 "size_bytes": row["size_bytes"] if kind == "original" else None}
        return {
            **summary(row),
            "manifest": json.loads(row["manifest"]),
            "manifest_sha256": row["manifest_sha256"],
            "media": json.loads(row["media"]) if row["media"] else None,
            "flag_reasons": json.loads(row["flag_reasons"]),
            "holds": list(holds.values()),
            "notes": notes,
            "retain_until": row["retain_until"],
            "content": content,
            "archived_by": row["archived_by"],
        }

    def open_holds(self, sha256: str) -> set[str]:
        placed: set[str] = set()
        for event in self.events_of(sha256):
            hold_id = event["details"].get("hold_id")
            if not event["verified"] or not isinstance(hold_id, str):
                continue
            if event["event"] == Event.HOLD_PLACED:
                placed.add(hold_id)
            elif event["event"] == Event.HOLD_RELEASED:
                placed.discard(hold_id)
        return placed

    # -- audit and reports -----------------------------------------------------------

    def accesses(self, *, recording: str | None, actor: str | None, start_from: str | None,
                 start_to: str | None, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Content accesses (and failed attempts) and exports, newest first."""
        where = ["e.event IN ('accessed', 'access-failed', 'exported')"]
        params: list[Any] = []
        if recording is not None:
            where.append("(e.recording = ? OR (e.event = 'exported' AND EXISTS"
                         " (SELECT 1 FROM json_each(e.details, '$.recordings') WHERE value = ?)))")
            params.extend([recording, recording])
        if actor is not None:
            where.append("e.actor = ?")
            params.append(actor)
        window, window_params = time_window("e.time", start_from, start_to)
        where += window
        params += window_params
        if cursor is not None:
            after_time, after_key = decode_cursor(cursor)
            writer, _hash, seq = after_key.rpartition("#")
            if not seq.isdigit():
                raise UsageError(_("cursor: not a cursor this API returned"))
            where.append("(e.time, e.writer, e.seq) < (?, ?, ?)")
            params.extend([after_time, writer, int(seq)])
        rows = self.database.query(
            "SELECT e.* FROM events e WHERE " + " AND ".join(where)
            + " ORDER BY e.time DESC, e.writer DESC, e.seq DESC LIMIT ?", [*params, limit + 1])
        items = [event_dict(row) for row in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor(last["time"], f"{last['writer']}#{last['seq']}") if last else None
        return items, next_cursor

    def report(self, *, start_from: str | None, start_to: str | None,
               station: str | None) -> dict[str, Any]:
        where, params = time_window("sort_time", start_from, start_to)
        if station is not None:
            where.append("station = ?")
            params.append(station)
        clause = (" WHERE " + " AND ".join(where)) if where else ""

        def grouped(column: str) -> list[dict[str, Any]]:
            return [
                {column: row["grp"], "total": row["total"], "on_time": row["on_time"],
                 "late": row["late"], "flagged": row["flagged"], "held": row["held"]}
                for row in self.database.query(
                    f"SELECT {column} AS grp, COUNT(*) AS total,"
                    " SUM(compliance = 'on_time') AS on_time, SUM(compliance = 'late') AS late,"
                    " SUM(flags != '[]') AS flagged, SUM(held) AS held"
                    f" FROM recordings{clause} GROUP BY {column} ORDER BY {column}", params)
            ]

        by_station = grouped("station")
        return {
            "total": sum(group["total"] for group in by_station),
            "on_time": sum(group["on_time"] for group in by_station),
            "late": sum(group["late"] for group in by_station),
            "by_station": by_station,
            "by_officer": grouped("officer_id"),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "recordings": int(self.database.scalar("SELECT COUNT(*) FROM recordings")),
            "writers": int(self.database.scalar("SELECT COUNT(*) FROM writers")),
            "events": int(self.database.scalar("SELECT COUNT(*) FROM events")),
            "unverified_events": int(self.database.scalar(
                "SELECT COUNT(*) FROM events WHERE verified = 0")),
        }
