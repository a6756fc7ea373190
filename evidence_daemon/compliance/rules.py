"""The 24-hour rule as pure functions over plain values.

``deadline = recorded_end + 24 h``. A recording is **on time** when its original was verified in
the archive before the deadline, **late** when after it (forever), **overdue** while not
archived and past it, **at risk** while pending with less than the margin left, else
**pending**. A recording without a known end has no deadline: it is on time once archived and
pending until then, and the missing time is visible as ``time_source = null``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

ON_TIME = "on_time"
LATE = "late"
PENDING = "pending"
AT_RISK = "at_risk"
OVERDUE = "overdue"
STATES = (ON_TIME, LATE, PENDING, AT_RISK, OVERDUE)


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
