"""Pure: the supervisors' compliance report — counts and late hours per officer, device or
station over a period.

Input is the catalog in the CLI's JSON contract (``Station.recordings()``), already carrying
each recording's compliance state; a recording belongs to the period when it ended (or, with
no known end, when the station first saw it) in ``[start, end)``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from .rules import AT_RISK, LATE, ON_TIME, OVERDUE, PENDING, late_hours

GROUPINGS = ("officer", "device", "station")
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class GroupReport:
    group: str
    total: int
    on_time: int
    late: int
    overdue: int
    pending: int  # not archived and still within the deadline (including at risk)
    at_risk: int
    late_hours_median: float | None
    late_hours_max: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def in_period(recording: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    moment = _time(recording.get("recorded_end")) or _time(recording.get("first_seen_at"))
    return moment is not None and start <= moment < end


def compliance_report(
    recordings: Iterable[Mapping[str, Any]], *, by: str, station: str,
    start: datetime, end: datetime,
) -> list[GroupReport]:
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, not {by!r}")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for recording in recordings:
        if not in_period(recording, start, end):
            continue
        key = station if by == "station" else recording.get(f"{by}_id") or UNKNOWN
        groups.setdefault(key, []).append(recording)
    result = []
    for key in sorted(groups):
        members = groups[key]
        states = [member["compliance"] for member in members]
        hours = [
            value for member in members
            if (value := late_hours(deadline=_time(member.get("archive_deadline")),
                                    archived_at=_time(member.get("archived_at")))) is not None
        ]
        result.append(GroupReport(
            group=key,
            total=len(members),
            on_time=states.count(ON_TIME),
            late=states.count(LATE),
            overdue=states.count(OVERDUE),
            pending=states.count(PENDING) + states.count(AT_RISK),
            at_risk=states.count(AT_RISK),
            late_hours_median=round(statistics.median(hours), 2) if hours else None,
            late_hours_max=round(max(hours), 2) if hours else None,
        ))
    return result
