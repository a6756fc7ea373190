"""The station's registry of docked devices and of which officer holds each one, when.

Every device seen is registered once (``device-registered``), every dock is counted
(``device-docked``, each time, with the device's apparent clock offset: the newest file time
on it minus the dock time) and every assignment is kept as history (``device-assigned``,
naming the assignment it closed); rows are never deleted. A device may be assigned before it
ever docks (officers get their recorder on the first day): it is then registered by the
assignment, with no docks yet, and its first dock fills in model and identity.

Ledger events go through a local outbox: the state change and its event are committed in one
SQLite transaction, then the event is appended to the ledger as a once-only event (its
``source_key`` is unique) and leaves the outbox. A dock while the archive is away is thus still
recorded, and its event reaches the ledger at the next flush; a crash between the append and
the removal never appends it twice. Archive trouble is logged and retried, never raised from
``docked()``, because a device must be ingested (into the spool) even then.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..clock import Clock, format_time, parse_time, utc_now
from ..errors import ConfigError, DeviceError, EvidenceError, StorageError
from ..state.db import Database
from .attribution import AddAssignment, Assignment, CloseAssignment, officer_for, plan_assignment
from ..i18n import _

log = logging.getLogger(__name__)

MAX_ID_CHARS = 128
_HISTORY = "SELECT * FROM assignments WHERE device_id = ? ORDER BY valid_from, id"


@dataclass(frozen=True)
class DeviceIdentity:
    """What a docked device says about itself. ``device_id`` is its registry key (USB serial,
    or filesystem UUID when there is none, with the model: see the udev source)."""

    device_id: str
    model: str | None = None
    role: str | None = None  # "recorder" | "terminal"
    serial: str | None = None
    fs_uuid: str | None = None
    fs_label: str | None = None


@dataclass(frozen=True)
class AssignOutcome:
    """What ``assign`` did: the stored assignment, the one it closed, and whether the device
    was unknown until now (registered by this assignment)."""

    assignment: Assignment
    closed: list[Assignment] = field(default_factory=list)
    registered: bool = False


class DeviceRegistry:
    """Devices and assignments in the station's SQLite, their events in the custody ledger."""

    def __init__(
        self,
        database: Database,
        ledger: LedgerWriter,
        *,
        clock: Clock = utc_now,
        actor: str,
        zone: tzinfo = timezone.utc,
    ) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock
        self.actor = actor
        self.zone = zone  # times in list() and in messages are shown in this zone

    # -- docking --------------------------------------------------------------------------

    def docked(self, identity: DeviceIdentity, *, newest_file_time: datetime | None = None) -> None:
        """Record one dock of ``identity``, registering the device on first sight.

        ``newest_file_time`` (aware; the newest file's mtime on the device, None when it has
        none) gives the dock's apparent clock offset, kept on the device and in its
        ``device-docked`` event.
        """
        device_id = _clean_id(identity.device_id, "device id", DeviceError)
        facts = {
            "model": identity.model or None,
            "role": identity.role or None,
            "serial": identity.serial or None,
            "fs_uuid": identity.fs_uuid or None,
            "fs_label": identity.fs_label or None,
        }
        now = self.clock()
        docked_at = format_time(now)
        offset_s = apparent_clock_offset_s(newest_file_time, now)
        newest_at = format_time(newest_file_time) if newest_file_time is not None else None
        with self.database.transaction() as conn:
            row = conn.execute("SELECT docks FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO devices (device_id, model, role, serial, fs_uuid, fs_label,"
                    " registered_at, first_docked_at, last_docked_at, docks, last_newest_file_at,"
                    " last_clock_offset_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                    (device_id, *facts.values(), docked_at, docked_at, docked_at, newest_at,
                     offset_s),
                )
                self._queue(conn, Event.DEVICE_REGISTERED, {
                    "source_key": f"device:{device_id}", "device_id": device_id, **facts,
                    "registered_at": docked_at, "registered_by": "dock",
                })
                docks = 1
            else:
                # What the device says now wins; a fact it no longer reports is kept.
                conn.execute(
                    "UPDATE devices SET model = COALESCE(?, model), role = COALESCE(?, role),"
                    " serial = COALESCE(?, serial), fs_uuid = COALESCE(?, fs_uuid),"
                    " fs_label = COALESCE(?, fs_label), first_docked_at = COALESCE(first_docked_at, ?),"
                    " last_docked_at = ?, docks = docks + 1, last_newest_file_at = ?,"
                    " last_clock_offset_s = ? WHERE device_id = ?",
                    (*facts.values(), docked_at, docked_at, newest_at, offset_s, device_id),
                )
                docks = int(row["docks"]) + 1
            self._queue(conn, Event.DEVICE_DOCKED, {
                # The dock number alone would repeat after the state is rebuilt; with the time
                # the key is unique, so the once-only append can never swallow a real dock.
                "source_key": f"device:{device_id}:dock:{docks}:{docked_at}",
                "device_id": device_id, **facts, "docked_at": docked_at, "dock": docks,
                "newest_file_at": newest_at, "clock_offset_s": offset_s,
            })
        log.info("device %s docked (dock %d)", device_id, docks)
        self.flush_ledger()

    # -- assignments ----------------------------------------------------------------------

    def assign(
        self,
        device_id: str,
        officer_id: str,
        valid_from: datetime,
        valid_to: datetime | None = None,
        note: str = "",
        *,
        requested_by: str | None = None,
    ) -> AssignOutcome:
        """Assign ``device_id`` to ``officer_id`` over ``[valid_from, valid_to)``.

        An open assignment that started earlier is closed at ``valid_from``; an overlap with
        history is refused with ``ConfigError`` and nothing changes. An unknown device is
        registered by the assignment. Times must be timezone-aware.
        """
        device_id = _clean_id(device_id, "device id", ConfigError)
        officer_id = _clean_id(officer_id, "officer id", ConfigError)
        for moment, what in ((valid_from, "--from"), (valid_to, "--to")):
            if moment is not None and moment.utcoffset() is None:
                raise ConfigError(_("{what} {isoformat}: a time needs a UTC offset").format(
                    what=what, isoformat=moment.isoformat()))
        new = Assignment(
            device_id, officer_id, valid_from.astimezone(self.zone),
            valid_to.astimezone(self.zone) if valid_to is not None else None, note.strip(),
        )
        created_at = format_time(self.clock())
        with self.database.transaction() as conn:
            try:
                changes = plan_assignment(self._assignments(conn, device_id), new)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            registered = conn.execute(
                "SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone() is None
            if registered:
                conn.execute(
                    "INSERT INTO devices (device_id, registered_at, docks) VALUES (?, ?, 0)",
                    (device_id, created_at),
                )
                self._queue(conn, Event.DEVICE_REGISTERED, {
                    "source_key": f"device:{device_id}", "device_id": device_id,
                    "registered_at": created_at, "registered_by": "assignment",
                })
            closed: list[Assignment] = []
            stored = new
            for change in changes:
                if isinstance(change, CloseAssignment):
                    conn.execute(
                        "UPDATE assignments SET valid_to = ? WHERE id = ? AND valid_to IS NULL",
                        (format_time(change.valid_to), change.assignment.id),
                    )
                    closed.append(Assignment(
                        device_id, change.assignment.officer_id, change.assignment.valid_from,
                        change.valid_to, change.assignment.note, change.assignment.id,
                    ))
                elif isinstance(change, AddAssignment):
                    cursor = conn.execute(
                        "INSERT INTO assignments (device_id, officer_id, valid_from, valid_to,"
                        " created_at, note) VALUES (?, ?, ?, ?, ?, ?)",
                        (device_id, officer_id, format_time(new.valid_from),
                         format_time(new.valid_to) if new.valid_to is not None else None,
                         created_at, new.note),
                    )
                    stored = Assignment(device_id, officer_id, new.valid_from, new.valid_to,
                                        new.note, int(cursor.lastrowid or 0))
            self._queue(conn, Event.DEVICE_ASSIGNED, {
                "source_key": f"device:{device_id}:assignment:{stored.id}:{created_at}",
                "device_id": device_id,
                "officer_id": officer_id,
                "valid_from": format_time(new.valid_from),
                "valid_to": format_time(new.valid_to) if new.valid_to is not None else None,
                "note": new.note,
                "created_at": created_at,
                "requested_by": requested_by,
                "closed": [
                    {"officer_id": previous.officer_id, "valid_from": format_time(previous.valid_from),
                     "valid_to": format_time(previous.valid_to) if previous.valid_to else None}
                    for previous in closed
                ],
            })
        log.info("device %s assigned to %s", device_id, stored.describe())
        self.flush_ledger()
        return AssignOutcome(stored, closed, registered)

    def officer_at(self, device_id: str, moment: datetime) -> str | None:
        """The officer assigned ``device_id`` at ``moment`` (aware), or None."""
        return officer_for(self.assignments(device_id), moment)

    def assignments(self, device_id: str) -> builtins.list[Assignment]:
        """The assignment history of one device, oldest first."""
        return [self._assignment(row) for row in self.database.query(_HISTORY, (device_id,))]

    def _assignments(self, conn: sqlite3.Connection, device_id: str) -> builtins.list[Assignment]:
        """As ``assignments``, inside the caller's transaction."""
        return [self._assignment(row) for row in conn.execute(_HISTORY, (device_id,))]

    def _assignment(self, row: sqlite3.Row) -> Assignment:
        return Assignment(
            row["device_id"], row["officer_id"], self._time(row["valid_from"]),
            self._time(row["valid_to"]) if row["valid_to"] else None, row["note"], int(row["id"]),
        )

    # -- reading --------------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every registered device with its docks, current officer and assignment history."""
        now = self.clock()
        history: dict[str, builtins.list[sqlite3.Row]] = {}
        for row in self.database.query("SELECT * FROM assignments ORDER BY device_id, valid_from, id"):
            history.setdefault(row["device_id"], []).append(row)
        result = []
        for row in self.database.query("SELECT * FROM devices ORDER BY device_id"):
            rows = history.get(row["device_id"], [])
            assignments = [self._assignment(item) for item in rows]
            result.append({
                "device_id": row["device_id"],
                "model": row["model"],
                "role": row["role"],
                "serial": row["serial"],
                "fs_uuid": row["fs_uuid"],
                "fs_label": row["fs_label"],
                "in_service": bool(row["in_service"]),
                "registered_at": self._show(row["registered_at"]),
                "first_docked_at": self._show(row["first_docked_at"]),
                "last_docked_at": self._show(row["last_docked_at"]),
                "docks": int(row["docks"]),
                "newest_file_at": self._show(row["last_newest_file_at"]),
                "clock_offset_s": row["last_clock_offset_s"],
                "current_officer": officer_for(assignments, now),
                "assignments": [
                    {"officer_id": assignment.officer_id,
                     "valid_from": assignment.valid_from.isoformat(),
                     "valid_to": assignment.valid_to.isoformat() if assignment.valid_to else None,
                     "note": assignment.note,
                     "created_at": self._show(item["created_at"])}
                    for assignment, item in zip(assignments, rows)
                ],
            })
        return result

    # -- the ledger outbox ----------------------------------------------------------------

    def pending_events(self) -> int:
        """Device events committed locally but not yet in the ledger (archive away)."""
        return int(self.database.scalar("SELECT COUNT(*) FROM ledger_outbox"))

    def flush_ledger(self) -> int:
        """Append waiting device events to the ledger; returns how many were appended.

        Stops at the first archive error (logged; the events wait for the next flush).
        An ``IntegrityError`` (the ledger does not verify) is raised: that needs a human.
        """
        appended = 0
        rows = self.database.query("SELECT * FROM ledger_outbox ORDER BY id")
        for row in rows:
            try:
                self.ledger.append(
                    Event(row["event"]), recording=row["recording"], actor=row["actor"],
                    details=json.loads(row["details"]), once=True,
                )
            except StorageError as exc:
                log.warning(_("%d device event(s) wait for the archive: %s"), len(rows) - appended,
                            exc.message)
                break
            self.database.execute("DELETE FROM ledger_outbox WHERE id = ?", (row["id"],))
            appended += 1
        return appended

    def _queue(self, conn: sqlite3.Connection, event: Event, details: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO ledger_outbox (event, recording, actor, details, created_at)"
            " VALUES (?, NULL, ?, ?, ?)",
            (event, self.actor, json.dumps(details, sort_keys=True, ensure_ascii=False),
             format_time(self.clock())),
        )

    # -- times ----------------------------------------------------------------------------

    def _time(self, stored: str) -> datetime:
        return parse_time(stored).astimezone(self.zone)

    def _show(self, stored: str | None) -> str | None:
        return self._time(stored).isoformat() if stored else None


def apparent_clock_offset_s(newest_file_time: datetime | None, docked_at: datetime) -> float | None:
    """The newest file's time on a device minus the dock time, in seconds (None: no files).

    Only an apparent offset: footage ends some time before the dock, so a right clock shows a
    small negative number. A positive one is a clock ahead; years either way, a broken one.
    """
    if newest_file_time is None:
        return None
    if newest_file_time.utcoffset() is None:
        raise ValueError(_("newest file time {isoformat} has no time zone").format(
            isoformat=newest_file_time.isoformat()))
    return round((newest_file_time - docked_at).total_seconds(), 3)


def _clean_id(value: str, what: str, error: type[EvidenceError]) -> str:
    """Ids are printed in reports and go into the ledger: no control characters, no padding."""
    cleaned = (value or "").strip()
    if not cleaned or len(cleaned) > MAX_ID_CHARS or not cleaned.isprintable():
        raise error(f"{what} {value!r}: must be 1 to {MAX_ID_CHARS} printable characters")
    return cleaned
