"""Pure: the station's compliance at one instant, from plain recording and device facts.

Used by the metrics collector (at scrape time), the scheduled compliance scan and the report.
Never reads the database or the clock itself: callers pass the rows and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .rules import OVERDUE, STATES, compliance_state, dock_overdue, seconds_since_dock


@dataclass(frozen=True)
class RecordingFacts:
    sha256: str
    deadline: datetime | None
    archived_at: datetime | None
    recorded_end: datetime | None
    first_seen_at: datetime
    # The recorder's clock was not believed (flag ``time_implausible``): its recorded end is
    # no measure of anything, and its deadline already counts from first_seen_at.
    time_implausible: bool = False


@dataclass(frozen=True)
class DeviceFacts:
    device_id: str
    registered_at: datetime
    last_docked_at: datetime | None
    in_service: bool


@dataclass
class ComplianceSnapshot:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    # Age of the oldest recording not yet archived, counted from its end (else from when the
    # station first saw it): how long footage has been waiting. None when nothing waits.
    oldest_pending_age_s: float | None = None
    # The smallest (deadline - now) over recordings not yet archived; negative once overdue.
    min_deadline_remaining_s: float | None = None
    overdue: list[str] = field(default_factory=list)
    # Recordings whose recorder clock was not believed (flag ``time_implausible``).
    time_implausible: int = 0


def compliance_snapshot(
    recordings: Iterable[RecordingFacts], *, now: datetime, at_risk_margin_hours: float
) -> ComplianceSnapshot:
    result = ComplianceSnapshot()
    for recording in recordings:
        state = compliance_state(deadline=recording.deadline, archived_at=recording.archived_at,
                                 now=now, at_risk_margin_hours=at_risk_margin_hours)
        result.counts[state] += 1
        if state == OVERDUE:
            result.overdue.append(recording.sha256)
        if recording.time_implausible:
            result.time_implausible += 1
        if recording.archived_at is not None:
            continue
        # A reset clock's 1980 would make footage look 46 years old; one set ahead, negative.
        waiting_since = (recording.first_seen_at if recording.time_implausible
                         else recording.recorded_end or recording.first_seen_at)
        age_s = max((now - waiting_since).total_seconds(), 0.0)
        if result.oldest_pending_age_s is None or age_s > result.oldest_pending_age_s:
            result.oldest_pending_age_s = age_s
        if recording.deadline is not None:
            remaining_s = (recording.deadline - now).total_seconds()
            if result.min_deadline_remaining_s is None or remaining_s < result.min_deadline_remaining_s:
                result.min_deadline_remaining_s = remaining_s
    return result


@dataclass(frozen=True)
class DeviceDockState:
    device_id: str
    seconds_since_dock: float
    dock_overdue: bool


def device_dock_states(
    devices: Iterable[DeviceFacts], *, now: datetime, undocked_limit_hours: float
) -> list[DeviceDockState]:
    """Devices in service only: one out of service has nothing to bring back."""
    return [
        DeviceDockState(
            device.device_id,
            seconds_since_dock(last_docked_at=device.last_docked_at,
                               registered_at=device.registered_at, now=now),
            dock_overdue(last_docked_at=device.last_docked_at, registered_at=device.registered_at,
                         in_service=device.in_service, now=now,
                         undocked_limit_hours=undocked_limit_hours),
        )
        for device in devices
        if device.in_service
    ]
