"""Supervisors' annotations of a recording: legal holds, case links, notes, retention.

Each is one signed ledger entry of this node (indexed at once, so the recording's detail shows
it before the request returns); holds and retention extensions are also applied to the
original's object in the archive (S3 Object Lock), and the entry says whether they were
(``applied`` / ``in_force``). The decisions — which hold is open, whether a retention date is
acceptable — are pure functions here; ``Annotations`` does the I/O in the same order for all
six. What must never happen: a retention date shortened or set in the past, the object's legal
hold lifted while another hold is open, or an annotation on a recording the caller may not see.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import Any

from ..archive.base import ArchiveStore
from ..clock import Clock, format_time, parse_time
from ..custody.chain import Event
from ..errors import ConflictError, NotFoundError, UsageError
from .access import Recorder
from .auth import User
from .bodies import AuditRef, Recorded
from .catalog import Catalog
from .reasons import checked_case_id
from ..i18n import _

_HOLD_ID = re.compile(r"^[0-9a-f]{16}$")
LATEST_RETENTION_YEAR = 2200


def checked_retention(until: datetime, *, current: str | None, now: datetime) -> datetime:
    """``until`` (naive means UTC) if it may become the recording's retention date: in the
    future, not absurdly far, and later than the ``current`` one (retention never shortens)."""
    if until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    if until <= now:
        raise UsageError(_("retain_until: must be in the future"))
    if until.year > LATEST_RETENTION_YEAR:
        raise UsageError(_("retain_until: later than {LATEST_RETENTION_YEAR} is not a retention "
                           "date").format(LATEST_RETENTION_YEAR=LATEST_RETENTION_YEAR))
    if current and parse_time(current) >= until:
        raise ConflictError(_("already retained until {current}; retention is never shortened").format(
            current=current))
    return until


class Annotations:
    def __init__(self, catalog: Catalog, store: ArchiveStore, record: Recorder,
                 clock: Clock) -> None:
        self.catalog = catalog
        self.store = store
        self.record = record
        self.clock = clock

    def _recorded(self, event: Event, user: User, row: Any, details: dict[str, Any]) -> Recorded:
        entry = self.record(event, recording=row["sha256"], actor=user.actor, details=details)
        return Recorded(audit=AuditRef.of(entry), details=details)

    def place_hold(self, user: User, recording_id: str, *, reason: str,
                   case_id: str | None) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        case_id = None if case_id is None else checked_case_id(case_id)
        hold_id = secrets.token_hex(8)
        applied = self.store.set_legal_hold(row["original_key"], True)
        return self._recorded(Event.HOLD_PLACED, user, row, {
            "hold_id": hold_id, "reason": reason, "case_id": case_id, "applied": applied})

    def release_hold(self, user: User, recording_id: str, hold_id: str, *,
                     reason: str) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        open_holds = self.catalog.open_holds(row["sha256"])
        if not _HOLD_ID.fullmatch(hold_id) or hold_id not in open_holds:
            raise NotFoundError(_("no open hold {hold_id} on recording {sha256}").format(
                hold_id=hold_id, sha256=row['sha256'][:12]))
        applied = False
        if open_holds == {hold_id}:  # the object stays held while any other hold is open
            applied = self.store.set_legal_hold(row["original_key"], False)
        return self._recorded(Event.HOLD_RELEASED, user, row, {
            "hold_id": hold_id, "reason": reason, "applied": applied})

    def link_case(self, user: User, recording_id: str, case_id: str, *, reason: str) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        case_id = checked_case_id(case_id)
        if case_id in self.catalog.detail(row)["cases"]:
            raise ConflictError(_("recording {sha256} is already linked to {case_id}").format(
                sha256=row['sha256'][:12], case_id=case_id))
        return self._recorded(Event.CASE_LINKED, user, row,
                              {"case_id": case_id, "reason": reason})

    def unlink_case(self, user: User, recording_id: str, case_id: str, *,
                    reason: str) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        if case_id not in self.catalog.detail(row)["cases"]:
            raise NotFoundError(_("recording {sha256} is not linked to {case_id!r}").format(
                sha256=row['sha256'][:12], case_id=case_id))
        return self._recorded(Event.CASE_UNLINKED, user, row,
                              {"case_id": case_id, "reason": reason})

    def add_note(self, user: User, recording_id: str, text: str) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        return self._recorded(Event.NOTE_ADDED, user, row, {"text": text})

    def extend_retention(self, user: User, recording_id: str, until: datetime, *,
                         reason: str) -> Recorded:
        row = self.catalog.visible(user, recording_id)
        until = checked_retention(until, current=row["retain_until"], now=self.clock())
        in_force = self.store.extend_retention(row["original_key"], until)
        return self._recorded(Event.RETENTION_EXTENDED, user, row, {
            "retain_until": format_time(until), "in_force": in_force, "reason": reason})
