"""Officer attribution and assignment history: the pure rules of evidence_daemon.devices.attribution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from evidence_daemon.devices.attribution import (
    FLAG_OFFICER_MISMATCH,
    AddAssignment,
    Assignment,
    CloseAssignment,
    attribute,
    officer_for,
    plan_assignment,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in the station's zone on November ``day``, 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def assignment(officer: str, start: datetime, end: datetime | None = None, *, device: str = "DSJ001",
               row_id: int | None = None) -> Assignment:
    return Assignment(device, officer, start, end, id=row_id)


# A shared recorder: 10086 has it in the morning, 10087 from 13:00 on, open-ended.
SHARED = [
    assignment("10086", local(25, 8), local(25, 13)),
    assignment("10087", local(25, 13)),
]


@pytest.mark.parametrize(
    ("history", "moment", "expected"),
    [
        ([], local(25, 9), None),
        (SHARED, local(25, 7, 59), None),  # before any assignment
        (SHARED, local(25, 8), "10086"),  # valid_from is inclusive
        (SHARED, local(25, 12, 59), "10086"),
        (SHARED, local(25, 13), "10087"),  # valid_to is exclusive: the handover instant is the next officer's
        (SHARED, local(25, 23), "10087"),
        (SHARED, datetime(2030, 1, 1, tzinfo=timezone.utc), "10087"),  # open-ended
        # 12:59 and 13:00 in Shanghai, given in UTC
        (SHARED, datetime(2026, 11, 25, 4, 59, tzinfo=timezone.utc), "10086"),
        (SHARED, datetime(2026, 11, 25, 5, 0, tzinfo=timezone.utc), "10087"),
        ([assignment("10086", local(25, 8), local(25, 9))], local(25, 10), None),  # gap after a bounded one
        # Overlapping history cannot be made through plan_assignment; if it were there, the
        # assignment that started last is the most recent statement about the device.
        ([assignment("10086", local(25, 8)), assignment("10087", local(25, 9), local(25, 10))],
         local(25, 9, 30), "10087"),
    ],
)
def test_officer_for(history: list[Assignment], moment: datetime, expected: str | None) -> None:
    assert officer_for(history, moment) == expected


def test_officer_for_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        officer_for(SHARED, datetime(2026, 11, 25, 9))


@pytest.mark.parametrize(
    ("name", "assigned", "default", "officer", "flags"),
    [
        (None, None, None, None, set()),
        (None, None, "900", "900", set()),  # only the source's default (--officer-id, watch folder)
        (None, "10086", None, "10086", set()),
        (None, "10086", "900", "10086", set()),  # the assignment beats the default
        ("10086", None, "900", "10086", set()),  # the file name beats everything
        ("10086", "10086", "900", "10086", set()),  # agreement: no flag
        ("10099", "10086", "900", "10099", {FLAG_OFFICER_MISMATCH}),  # name wins, flagged
        ("10099", "10086", None, "10099", {FLAG_OFFICER_MISMATCH}),
        ("", "10086", "900", "10086", set()),  # empty strings are "not given"
        (None, "", "", None, set()),
    ],
)
def test_attribute(name: str | None, assigned: str | None, default: str | None, officer: str | None,
                   flags: set[str]) -> None:
    result, reasons = attribute(name_officer=name, assigned_officer=assigned, default_officer=default)
    assert result == officer
    assert set(reasons) == flags


def test_mismatch_reason_names_both_officers() -> None:
    _, reasons = attribute(name_officer="10099", assigned_officer="10086", default_officer=None)
    reason = reasons[FLAG_OFFICER_MISMATCH]
    assert "10099" in reason and "10086" in reason and "file name" in reason


OPEN = assignment("10086", local(25, 8), row_id=1)
CLOSED = assignment("10085", local(24, 8), local(24, 20), row_id=2)


@pytest.mark.parametrize(
    ("existing", "new", "expected"),
    [
        pytest.param([], assignment("10086", local(25, 8)),
                     [AddAssignment(assignment("10086", local(25, 8)))], id="first assignment"),
        pytest.param([CLOSED, OPEN], assignment("10087", local(25, 13)),
                     [CloseAssignment(OPEN, local(25, 13)),
                      AddAssignment(assignment("10087", local(25, 13)))],
                     id="handover closes the open one"),
        pytest.param([OPEN], assignment("10087", local(25, 13), local(25, 14)),
                     [CloseAssignment(OPEN, local(25, 13)),
                      AddAssignment(assignment("10087", local(25, 13), local(25, 14)))],
                     id="bounded handover, nothing re-opened after it"),
        pytest.param([CLOSED, OPEN], assignment("10088", local(24, 20), local(25, 8)),
                     [AddAssignment(assignment("10088", local(24, 20), local(25, 8)))],
                     id="past history filling the gap exactly"),
        pytest.param([CLOSED], assignment("10086", local(24, 20)),
                     [AddAssignment(assignment("10086", local(24, 20)))],
                     id="starts where a closed one ends"),
        pytest.param([assignment("10086", local(25, 8), device="DSJ002", row_id=7)],
                     assignment("10087", local(25, 9)), [AddAssignment(assignment("10087", local(25, 9)))],
                     id="other devices do not matter"),
        pytest.param([OPEN], assignment("10087", datetime(2026, 11, 25, 5, tzinfo=timezone.utc)),
                     [CloseAssignment(OPEN, datetime(2026, 11, 25, 5, tzinfo=timezone.utc)),
                      AddAssignment(assignment("10087", datetime(2026, 11, 25, 5, tzinfo=timezone.utc)))],
                     id="times compared as instants across zones"),
    ],
)
def test_plan_assignment(existing: list[Assignment], new: Assignment, expected: list[object]) -> None:
    assert plan_assignment(existing, new) == expected


@pytest.mark.parametrize(
    ("existing", "new", "message"),
    [
        pytest.param([OPEN], assignment("10087", local(25, 8)),
                     r"assigned to officer 10086 .*must start after",
                     id="same start as the open one"),
        pytest.param([OPEN], assignment("10087", local(25, 7)), r"must start after",
                     id="open-ended, starting before the open one"),
        pytest.param([OPEN], assignment("10087", local(25, 7), local(25, 9)), r"must start after",
                     id="bounded, reaching into the open one"),
        pytest.param([CLOSED, OPEN], assignment("10087", local(24, 19), local(24, 21)),
                     r"officer 10087 .* overlaps the assignment to officer 10085",
                     id="overlaps a closed one"),
        pytest.param([CLOSED], assignment("10087", local(24, 9), local(24, 10)), r"overlaps",
                     id="inside a closed one"),
        pytest.param([CLOSED], assignment("10087", local(23, 9)), r"overlaps",
                     id="open-ended over a later closed one"),
        pytest.param([], assignment("10087", local(25, 9), local(25, 9)), r"must end after it starts",
                     id="empty interval"),
        pytest.param([], assignment("10087", local(25, 9), local(25, 8)), r"must end after it starts",
                     id="ends before it starts"),
        pytest.param([], assignment("10087", datetime(2026, 11, 25, 9)), r"no UTC offset", id="naive start"),
        pytest.param([], assignment("10087", local(25, 9), datetime(2026, 11, 25, 10)), r"no UTC offset",
                     id="naive end"),
    ],
)
def test_plan_assignment_refuses(existing: list[Assignment], new: Assignment, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_assignment(existing, new)


def test_a_day_of_handovers_keeps_history_without_overlap() -> None:
    """Apply plans one after the other, as the registry does, and read the history back."""
    history: list[Assignment] = []
    start = local(25, 6)
    for hour, officer in enumerate(["A", "B", "A", "C"]):
        new = assignment(officer, start + timedelta(hours=4 * hour))
        for change in plan_assignment(history, new):
            if isinstance(change, CloseAssignment):
                history = [
                    Assignment(item.device_id, item.officer_id, item.valid_from, change.valid_to)
                    if item == change.assignment else item
                    for item in history
                ]
            else:
                history.append(change.assignment)
    assert [officer_for(history, start + timedelta(hours=4 * hour, minutes=1)) for hour in range(4)] == \
        ["A", "B", "A", "C"]
    assert sum(1 for item in history if item.valid_to is None) == 1
