"""The 24-hour rule as pure functions over plain values.

``deadline = recorded_end + 24 h``. A recording is **on time** when its original was verified in
the archive before the deadline, **late** when after it (forever), **overdue** while not
archived and past it, **at risk** while pending with less than the margin left, else
**pending**. A recording without a known end has no deadline: it is on time once archived and
pending until then, and the missing time is visible as ``time_source = null``.

A recording whose recorder clock is not believed (flag ``time_implausible``: a reset clock's
1980, a clock decades ahead, a file name with month 13) has its deadline counted from when the
station first saw it instead (``ingest.timing.judge_clock``); reports keep such recordings apart
from real lateness, since "late" against a wrong clock measures the clock, not the officers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

ON_TIME = "on_time"
LATE = "late"
PENDING = "pending"
AT_RISK = "at_risk"
OVERDUE = "overdue"
STATES = (ON_TIME, LATE, PENDING, AT_RISK, OVERDUE)

# The catalog flag of a recording whose recorder clock was not believed; its reason says why.
FLAG_TIME_IMPLAUSIBLE = "time_implausible"


def archive_deadline(recorded_end: datetime | None, deadline_hours: float = 24.0) -> datetime | None:
    if recorded_end is None:
        return None
    return recorded_end + timedelta(hours=deadline_hours)


def compliance_state(
    *,
    deadline: datetime | None,
    archived_at: datetime | None,
    now: datetime,
    at_risk_margin_hours: float = 4.0,
) -> str:
    if archived_at is not None:
        return LATE if deadline is not None and archived_at > deadline else ON_TIME
    if deadline is None:
        return PENDING
    if now > deadline:
        return OVERDUE
    if deadline - now < timedelta(hours=at_risk_margin_hours):
        return AT_RISK
    return PENDING


def late_hours(*, deadline: datetime | None, archived_at: datetime | None) -> float | None:
    """How many hours after its deadline a recording was archived (None unless it was late)."""
    if deadline is None or archived_at is None or archived_at <= deadline:
        return None
    return (archived_at - deadline).total_seconds() / 3600.0


def seconds_since_dock(
    *, last_docked_at: datetime | None, registered_at: datetime, now: datetime
) -> float:
    """Seconds since a device last docked; a device never docked counts from its registration,
    since whatever it recorded since then is invisible to the station."""
    reference = last_docked_at if last_docked_at is not None else registered_at
    return max((now - reference).total_seconds(), 0.0)


def dock_overdue(
    *,
    last_docked_at: datetime | None,
    registered_at: datetime,
    in_service: bool,
    now: datetime,
    undocked_limit_hours: float = 24.0,
) -> bool:
    """A device in service not docked for longer than the limit: its recordings may be
    breaking the 24-hour rule unseen. Devices out of service are never flagged."""
    if not in_service:
        return False
    elapsed_s = seconds_since_dock(last_docked_at=last_docked_at, registered_at=registered_at, now=now)
    return elapsed_s > undocked_limit_hours * 3600.0
