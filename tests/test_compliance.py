"""Table tests of the pure compliance core, with an injected 'now' (no sleeping)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from evidence_daemon.compliance.rules import (
    AT_RISK,
    LATE,
    ON_TIME,
    OVERDUE,
    PENDING,
    archive_deadline,
    compliance_state,
    dock_overdue,
    late_hours,
    seconds_since_dock,
)
from evidence_daemon.compliance.snapshot import (
    DeviceFacts,
    RecordingFacts,
    compliance_snapshot,
    device_dock_states,
)

END = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
DEADLINE = END + timedelta(hours=24)


def h(hours: float) -> datetime:
    return END + timedelta(hours=hours)


@pytest.mark.parametrize(
    ("archived_at", "now", "expected"),
    [
        (h(1), h(30), ON_TIME),
        (h(24), h(30), ON_TIME),  # exactly at the deadline is still on time
        (h(24.01), h(30), LATE),
        (h(25), h(10_000), LATE),  # late stays late forever
        (None, h(1), PENDING),
        (None, h(20), PENDING),  # 4 h left: not yet at risk
        (None, h(20.5), AT_RISK),
        (None, h(24), AT_RISK),
        (None, h(24.001), OVERDUE),
    ],
)
def test_compliance_state(archived_at: datetime | None, now: datetime, expected: str) -> None:
    deadline = archive_deadline(END)
    assert deadline == DEADLINE
    assert compliance_state(deadline=deadline, archived_at=archived_at, now=now,
                            at_risk_margin_hours=4) == expected


def test_no_known_end_has_no_deadline() -> None:
    assert archive_deadline(None) is None
    assert compliance_state(deadline=None, archived_at=None, now=h(1000)) == PENDING
    assert compliance_state(deadline=None, archived_at=h(1000), now=h(1000)) == ON_TIME


@pytest.mark.parametrize(
    ("deadline", "archived_at", "expected"),
    [(DEADLINE, h(23), None), (DEADLINE, h(24), None), (DEADLINE, h(30), 6.0),
     (None, h(30), None), (DEADLINE, None, None)],
)
def test_late_hours(deadline: datetime | None, archived_at: datetime | None,
                    expected: float | None) -> None:
    assert late_hours(deadline=deadline, archived_at=archived_at) == expected


@pytest.mark.parametrize(
    ("last_docked_at", "in_service", "now", "seconds", "flagged"),
    [
        (h(0), True, h(1), 3600.0, False),
        (h(0), True, h(24), 86400.0, False),  # exactly the limit is not past it
        (h(0), True, h(24.5), 88200.0, True),
        (h(0), False, h(100), 360000.0, False),  # out of service: never flagged
        (None, True, h(25), 90000.0, True),  # never docked: counted from registration
        (None, True, h(2), 7200.0, False),
        (h(5), True, h(1), 0.0, False),  # a clock set back does not go negative
    ],
)
def test_device_dock(last_docked_at: datetime | None, in_service: bool, now: datetime,
                     seconds: float, flagged: bool) -> None:
    registered_at = h(0)
    assert seconds_since_dock(last_docked_at=last_docked_at, registered_at=registered_at,
                              now=now) == seconds
    assert dock_overdue(last_docked_at=last_docked_at, registered_at=registered_at,
                        in_service=in_service, now=now, undocked_limit_hours=24) is flagged


def test_undocked_limit_is_configurable() -> None:
    assert dock_overdue(last_docked_at=h(0), registered_at=h(0), in_service=True, now=h(3),
                        undocked_limit_hours=2)


def test_snapshot_counts_ages_and_smallest_time_left() -> None:
    recordings = [
        RecordingFacts("a" * 64, DEADLINE, h(2), END, h(1)),           # on time
        RecordingFacts("b" * 64, DEADLINE, h(26), END, h(1)),          # late
        RecordingFacts("c" * 64, h(30), None, h(6), h(7)),             # at risk at h(27)
        RecordingFacts("d" * 64, DEADLINE, None, END, h(1)),           # overdue at h(27)
        RecordingFacts("e" * 64, None, None, None, h(20)),             # pending, no deadline
    ]
    snapshot = compliance_snapshot(recordings, now=h(27), at_risk_margin_hours=4)
    assert snapshot.counts == {ON_TIME: 1, LATE: 1, PENDING: 1, AT_RISK: 1, OVERDUE: 1}
    assert snapshot.overdue == ["d" * 64]
    assert snapshot.oldest_pending_age_s == 27 * 3600
    assert snapshot.min_deadline_remaining_s == -3 * 3600


def test_snapshot_counts_implausible_clocks_and_ages_them_from_first_seen() -> None:
    reset = datetime(1980, 1, 1, tzinfo=timezone.utc)
    recordings = [
        # a reset clock's 1980, seen at h(20): its deadline counts from then
        RecordingFacts("a" * 64, h(44), None, reset, h(20), time_implausible=True),
        # a clock in 2099, archived within a day of being seen
        RecordingFacts("b" * 64, h(25), h(3), datetime(2099, 1, 1, tzinfo=timezone.utc), h(1),
                       time_implausible=True),
        RecordingFacts("c" * 64, DEADLINE, None, END, h(1)),  # a real clock, waiting since END
    ]
    snapshot = compliance_snapshot(recordings, now=h(22), at_risk_margin_hours=4)
    assert snapshot.time_implausible == 2
    assert snapshot.counts == {ON_TIME: 1, LATE: 0, PENDING: 1, AT_RISK: 1, OVERDUE: 0}
    # 22 h (END), not the 46 years since 1980
    assert snapshot.oldest_pending_age_s == 22 * 3600
    only_reset = compliance_snapshot(recordings[:1], now=h(22), at_risk_margin_hours=4)
    assert only_reset.oldest_pending_age_s == 2 * 3600


def test_snapshot_of_nothing_pending() -> None:
    snapshot = compliance_snapshot([RecordingFacts("a" * 64, DEADLINE, h(2), END, h(1))],
                                   now=h(27), at_risk_margin_hours=4)
    assert snapshot.oldest_pending_age_s is None
    assert snapshot.min_deadline_remaining_s is None


def test_device_dock_states_skip_devices_out_of_service() -> None:
    devices = [DeviceFacts("DSJ-1", h(0), h(1), True), DeviceFacts("DSJ-2", h(0), None, False),
               DeviceFacts("DSJ-3", h(0), h(10), True)]
    states = device_dock_states(devices, now=h(30), undocked_limit_hours=24)
    assert [(s.device_id, s.seconds_since_dock, s.dock_overdue) for s in states] == [
        ("DSJ-1", 29 * 3600, True), ("DSJ-3", 20 * 3600, False)]
