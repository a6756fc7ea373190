"""Who a recording belongs to, and how a device's assignment history may change. Pure.

Officers share devices (one recorder per two officers is common), so a device has a history
of assignments, each valid over ``[valid_from, valid_to)``; ``valid_to = None`` is open-ended.
A device has at most one open assignment and its assignments never overlap, so the officer
holding a device at any instant is unambiguous.

A recording is attributed, best first, to the officer id in its file name (the recorder
stamped it), else to the officer assigned to the docked device at the recorded time, else to
the default of its source (``ingest --officer-id``, a watch folder's ``officer_id``). When the
file name and the assignment disagree the name still wins, and the recording is flagged
``officer_mismatch`` so an auditor sees both ids.

This module does no I/O and never reads the clock; every datetime it takes must be aware.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ..i18n import _

FLAG_OFFICER_MISMATCH = "officer_mismatch"


@dataclass(frozen=True)
class Assignment:
    """Officer ``officer_id`` holds device ``device_id`` over ``[valid_from, valid_to)``."""

    device_id: str
    officer_id: str
    valid_from: datetime
    valid_to: datetime | None = None  # None: open-ended, until the next assignment
    note: str = ""
    id: int | None = None  # the row id once stored

    def contains(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_to is None or moment < self.valid_to)

    def describe(self) -> str:
        until = self.valid_to.isoformat() if self.valid_to is not None else _("open-ended")
        return _("officer {officer} from {start} to {end}").format(
            officer=self.officer_id, start=self.valid_from.isoformat(), end=until)


@dataclass(frozen=True)
class CloseAssignment:
    """Set ``valid_to`` of the stored, open ``assignment``."""

    assignment: Assignment
    valid_to: datetime


@dataclass(frozen=True)
class AddAssignment:
    assignment: Assignment


Change = CloseAssignment | AddAssignment


def officer_for(assignments: Sequence[Assignment], moment: datetime) -> str | None:
    """The officer whose assignment contains ``moment``, or None.

    ``assignments`` are those of one device. Should stored history ever overlap (it cannot
    through ``plan_assignment``), the assignment that started last wins, as the most recent
    statement about the device.
    """
    _require_aware(moment, "moment")
    holding = [assignment for assignment in assignments if assignment.contains(moment)]
    if not holding:
        return None
    return max(holding, key=lambda assignment: assignment.valid_from).officer_id


def attribute(
    *,
    name_officer: str | None,
    assigned_officer: str | None,
    default_officer: str | None,
) -> tuple[str | None, dict[str, str]]:
    """The officer of a recording and the flags (name -> reason) the decision raises.

    Empty strings count as not given.
    """
    name_officer = name_officer or None
    assigned_officer = assigned_officer or None
    flags: dict[str, str] = {}
    if name_officer is not None and assigned_officer is not None and name_officer != assigned_officer:
        flags[FLAG_OFFICER_MISMATCH] = (
            f"the file name says officer {name_officer} but the device was assigned to officer "
            f"{assigned_officer} at the recorded time; attributed to {name_officer} (file name)"
        )
    return name_officer or assigned_officer or default_officer or None, flags


def plan_assignment(existing: Sequence[Assignment], new: Assignment) -> list[Change]:
    """The changes that add ``new`` to a device's history, or ValueError saying why not.

    - An open assignment that started earlier is closed at ``new.valid_from`` (a handover).
    - ``new`` may not overlap a closed assignment, nor start at or before the open one's
      start — except that a bounded ``new`` ending by the open one's start is accepted:
      history that was not recorded at the time, overlapping nothing.
    - A bounded ``new`` that starts after the open one leaves the device unassigned after
      ``new.valid_to`` until the next assignment; nothing is re-opened implicitly.

    ``existing`` may hold other devices' assignments; only ``new.device_id``'s are considered.
    """
    _require_aware(new.valid_from, "valid_from")
    if new.valid_to is not None:
        _require_aware(new.valid_to, "valid_to")
        if new.valid_to <= new.valid_from:
            raise ValueError(
                _("the assignment of device {device_id} to officer {officer_id} must end after it "
                  "starts (from {isoformat} to {isoformat2})").format(
                      device_id=new.device_id, officer_id=new.officer_id, isoformat=new.valid_from.isoformat(), isoformat2=new.valid_to.isoformat())
            )
    changes: list[Change] = []
    for current in sorted(
        (assignment for assignment in existing if assignment.device_id == new.device_id),
        key=lambda assignment: assignment.valid_from,
    ):
        if current.valid_to is None:
            if new.valid_from > current.valid_from:
                changes.append(CloseAssignment(current, new.valid_from))
            elif new.valid_to is None or new.valid_to > current.valid_from:
                raise ValueError(
                    _("device {device_id} is assigned to {describe}; a new assignment must start "
                      "after {isoformat} (or, for past history, end by then)").format(
                          device_id=new.device_id, describe=current.describe(), isoformat=current.valid_from.isoformat())
                )
        elif _overlaps(new, current):
            raise ValueError(
                _("device {device_id}: {describe} overlaps the assignment to {describe2}").format(
                    device_id=new.device_id, describe=new.describe(), describe2=current.describe())
            )
    changes.append(AddAssignment(new))
    return changes


def _overlaps(first: Assignment, second: Assignment) -> bool:
    first_ends_after = first.valid_to is None or first.valid_to > second.valid_from
    second_ends_after = second.valid_to is None or second.valid_to > first.valid_from
    return first_ends_after and second_ends_after


def _require_aware(moment: datetime, what: str) -> None:
    # A naive time means a different instant in each time zone; the caller knows which zone.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(_("{what} {isoformat} has no UTC offset").format(
            what=what, isoformat=moment.isoformat()))
