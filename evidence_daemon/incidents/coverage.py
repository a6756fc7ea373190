"""Which incidents have footage: pure matching of dispatch windows against recordings.

An incident is covered by the recordings of its officers that overlap its window. Dispatch
clocks and recorder clocks disagree, so matching widens the window by ``margin`` on both sides
and a gap at the window's start or end no longer than ``margin`` is forgiven; a recorder that
splits footage into files leaves seams of a few seconds, so gaps up to ``seam`` inside the
window are not gaps. A recorder's clock error measured at its dock (``clock_offset``, how far
it ran ahead) is taken off its recordings' times before they are compared.

States: ``covered`` (the footage spans at least ``covered_fraction`` of the window),
``partial`` (some, less), ``missing`` (none), and ``pending`` while fewer than
``archive_window`` (24 h) have passed since the incident ended and it is not covered yet —
footage may still be on a recorder that has not docked.

Pure: no I/O, no clock (``now`` is given); every datetime must be aware. What must never
happen: an incident shown as covered by footage of another officer, or ``missing`` while its
footage may still be on the way.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from .records import Incident
from ..i18n import _


class Coverage(StrEnum):
    COVERED = "covered"
    PARTIAL = "partial"
    MISSING = "missing"
    PENDING = "pending"


@dataclass(frozen=True)
class CoveragePolicy:
    margin: timedelta = timedelta(minutes=5)
    seam: timedelta = timedelta(seconds=10)
    covered_fraction: float = 0.9
    archive_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Footage:
    """One recording as coverage sees it: whose, and when (by the recorder's clock)."""

    recording_id: str
    officer_id: str | None
    start: datetime | None
    end: datetime | None
    clock_offset: timedelta = timedelta(0)  # how far the recorder's clock ran ahead

    def interval(self) -> tuple[datetime, datetime] | None:
        if self.start is None:
            return None
        end = self.end if self.end is not None and self.end >= self.start else self.start
        return self.start - self.clock_offset, end - self.clock_offset


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class IncidentCoverage:
    incident: Incident
    state: Coverage
    fraction: float  # of the incident's window, 0..1, after forgiving edges and seams
    gaps: tuple[Gap, ...]
    recordings: tuple[str, ...]  # recording ids that overlap the (widened) window
    by_officer: Mapping[str, float] = field(default_factory=dict)  # each officer's own share
    officer_states: Mapping[str, Coverage] = field(default_factory=dict)

    @property
    def officers_without_footage(self) -> tuple[str, ...]:
        return tuple(officer for officer in self.incident.officers
                     if self.by_officer.get(officer, 0.0) == 0.0)


class FootageIndex:
    """Recordings grouped by officer and sorted by corrected start, for interval look-ups."""

    def __init__(self, footage: Iterable[Footage]) -> None:
        grouped: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for item in footage:
            interval = item.interval()
            if item.officer_id is None or interval is None:
                continue
            grouped.setdefault(item.officer_id, []).append((*interval, item.recording_id))
        self._by_officer: dict[str, list[tuple[datetime, datetime, str]]] = {}
        self._starts: dict[str, list[float]] = {}  # POSIX seconds: bisecting floats is fast
        self._longest: dict[str, float] = {}
        for officer, items in grouped.items():
            items.sort()
            self._by_officer[officer] = items
            self._starts[officer] = [start.timestamp() for start, _, _ in items]
            self._longest[officer] = max((end - start).total_seconds() for start, end, _ in items)

    def overlapping(self, officer: str, start: datetime,
                    end: datetime) -> list[tuple[datetime, datetime, str]]:
        """The officer's recordings with any instant in ``[start, end]``."""
        items = self._by_officer.get(officer)
        if not items:
            return []
        starts = self._starts[officer]
        low = bisect.bisect_left(starts, start.timestamp() - self._longest[officer])
        high = bisect.bisect_right(starts, end.timestamp())
        return [item for item in items[low:high] if item[1] >= start]


def coverage_of(
    incidents: Iterable[Incident], footage: FootageIndex | Iterable[Footage], *,
    now: datetime, policy: CoveragePolicy = CoveragePolicy(),
) -> list[IncidentCoverage]:
    index = footage if isinstance(footage, FootageIndex) else FootageIndex(footage)
    return [cover(incident, index, now=now, policy=policy) for incident in incidents]


def cover(incident: Incident, index: FootageIndex, *, now: datetime,
          policy: CoveragePolicy = CoveragePolicy(),
          excluding: frozenset[str] = frozenset()) -> IncidentCoverage:
    """One incident's coverage; ``excluding`` names recordings a supervisor removed from it."""
    low, high = incident.start - policy.margin, incident.end + policy.margin
    intervals: list[tuple[datetime, datetime]] = []
    recordings: dict[str, None] = {}
    by_officer: dict[str, float] = {}
    officer_states: dict[str, Coverage] = {}
    for officer in incident.officers:
        own = [item for item in index.overlapping(officer, low, high) if item[2] not in excluding]
        for start, end, recording_id in own:
            recordings.setdefault(recording_id, None)
        spans = [(start, end) for start, end, _ in own]
        intervals.extend(spans)
        by_officer[officer] = _fraction(incident, _gaps(incident, spans, policy)) if own else 0.0
        officer_states[officer] = _state(incident, bool(own), by_officer[officer], now, policy)
    gaps = _gaps(incident, intervals, policy) if intervals else _whole(incident)
    fraction = _fraction(incident, gaps) if intervals else 0.0
    return IncidentCoverage(incident, _state(incident, bool(intervals), fraction, now, policy),
                            fraction, gaps, tuple(recordings), by_officer, officer_states)


def _state(incident: Incident, any_footage: bool, fraction: float, now: datetime,
           policy: CoveragePolicy) -> Coverage:
    if any_footage and fraction >= policy.covered_fraction:
        return Coverage.COVERED
    if now < incident.end + policy.archive_window:
        return Coverage.PENDING
    return Coverage.PARTIAL if any_footage else Coverage.MISSING


def _whole(incident: Incident) -> tuple[Gap, ...]:
    return (Gap(incident.start, incident.end),) if incident.end > incident.start else ()


def _gaps(incident: Incident, intervals: Sequence[tuple[datetime, datetime]],
          policy: CoveragePolicy) -> tuple[Gap, ...]:
    """The parts of the window no interval covers, less forgiven edges and seams."""
    found: list[Gap] = []
    cursor = incident.start
    for start, end in sorted(intervals):
        if end <= cursor:
            continue
        if start > cursor:
            found.append(Gap(cursor, min(start, incident.end)))
        cursor = max(cursor, end)
        if cursor >= incident.end:
            break
    if cursor < incident.end:
        found.append(Gap(cursor, incident.end))
    kept: list[Gap] = []
    for gap in found:
        if gap.end <= gap.start:
            continue
        at_edge = gap.start == incident.start or gap.end == incident.end
        allowed = policy.margin if at_edge else policy.seam
        if gap.end - gap.start > allowed:
            kept.append(gap)
    return tuple(kept)


def _fraction(incident: Incident, gaps: Sequence[Gap]) -> float:
    window = (incident.end - incident.start).total_seconds()
    if window <= 0:
        return 1.0
    missing = sum(gap.seconds for gap in gaps)
    return max(0.0, min(1.0, 1.0 - missing / window))


@dataclass(frozen=True)
class CoverageRow:
    """One line of ``report --coverage``: a group's incidents by state."""

    group: str
    counts: Mapping[Coverage, int]
    mean_fraction: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class CoverageResult(Protocol):
    """What a summary needs of a result: computed now or read back from storage."""

    @property
    def incident(self) -> Incident: ...
    @property
    def state(self) -> Coverage: ...
    @property
    def fraction(self) -> float: ...
    @property
    def by_officer(self) -> Mapping[str, float]: ...
    @property
    def officer_states(self) -> Mapping[str, Coverage]: ...


def summarise(results: Iterable[CoverageResult], *, by: str) -> list[CoverageRow]:
    """Group results by ``officer`` (each officer of an incident counts it, with their own
    share), ``station`` or ``type``."""
    if by not in ("officer", "station", "type"):
        raise ValueError(_("cannot group coverage by {by!r}: use officer, station or type").format(
            by=by))
    counts: dict[str, dict[Coverage, int]] = {}
    fractions: dict[str, list[float]] = {}
    for result in results:
        if by == "officer":
            keys = [(officer, result.officer_states[officer], result.by_officer[officer])
                    for officer in result.incident.officers]
        else:
            group = (result.incident.station if by == "station" else result.incident.type) or "-"
            keys = [(group, result.state, result.fraction)]
        for group, state, fraction in keys:
            counts.setdefault(group, {state: 0 for state in Coverage})[state] += 1
            fractions.setdefault(group, []).append(fraction)
    return [CoverageRow(group, counts[group], sum(fractions[group]) / len(fractions[group]))
            for group in sorted(counts)]

