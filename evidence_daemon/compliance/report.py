"""Pure: the supervisors' compliance report — counts and late hours per officer, device or
station over a period.

Input is the catalog in the CLI's JSON contract (``Station.recordings()``), already carrying
each recording's compliance state; a recording belongs to the period when it ended (or, with
no known end, when the station first saw it) in ``[start, end)``.

A recording whose recorder clock was not believed (flag ``time_implausible``) is counted in
its own column, never as on time, late, overdue or pending: its recorded end says nothing, so
it belongs to the period when the station first saw it, and ``time_implausible_late`` counts
those that missed the deadline counted from then. Its hours never enter the late-hours figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..clock import parse_optional
from .rules import AT_RISK, FLAG_TIME_IMPLAUSIBLE, LATE, ON_TIME, OVERDUE, PENDING, late_hours
from ..i18n import N_, _

GROUPINGS = ("officer", "device", "station")
UNKNOWN = N_("(unknown)")  # a group key (JSON, CSV); shown translated


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
    time_implausible: int = 0  # recorder clock not believed: in none of the columns above
    time_implausible_late: int = 0  # of those, late or overdue against first seen + deadline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_implausible(recording: Mapping[str, Any]) -> bool:
    return FLAG_TIME_IMPLAUSIBLE in (recording.get("flags") or ())


def in_period(recording: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    recorded_end = None if clock_implausible(recording) else parse_optional(recording.get("recorded_end"))
    moment = recorded_end or parse_optional(recording.get("first_seen_at"))
    return moment is not None and start <= moment < end


def compliance_report(
    recordings: Iterable[Mapping[str, Any]], *, by: str, station: str,
    start: datetime, end: datetime,
) -> list[GroupReport]:
    if by not in GROUPINGS:
        raise ValueError(_("by must be one of {GROUPINGS}, not {by!r}").format(
            GROUPINGS=GROUPINGS, by=by))
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for recording in recordings:
        if not in_period(recording, start, end):
            continue
        key = station if by == "station" else recording.get(f"{by}_id") or UNKNOWN
        groups.setdefault(key, []).append(recording)
    result = []
    for key in sorted(groups):
        members = [member for member in groups[key] if not clock_implausible(member)]
        implausible = [member["compliance"] for member in groups[key] if clock_implausible(member)]
        states = [member["compliance"] for member in members]
        hours = [
            value for member in members
            if (value := late_hours(deadline=parse_optional(member.get("archive_deadline")),
                                    archived_at=parse_optional(member.get("archived_at")))) is not None
        ]
        result.append(GroupReport(
            group=key,
            total=len(groups[key]),
            on_time=states.count(ON_TIME),
            late=states.count(LATE),
            overdue=states.count(OVERDUE),
            pending=states.count(PENDING) + states.count(AT_RISK),
            at_risk=states.count(AT_RISK),
            late_hours_median=round(statistics.median(hours), 2) if hours else None,
            late_hours_max=round(max(hours), 2) if hours else None,
            time_implausible=len(implausible),
            time_implausible_late=implausible.count(LATE) + implausible.count(OVERDUE),
        ))
    return result
