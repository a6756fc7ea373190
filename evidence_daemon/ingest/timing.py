"""When a recording started and ended, and which source said so (pure functions).

The 24-hour rule counts from ``recorded_end``. The sources, best first (DESIGN.md):

1. the file name pattern of the device model (``parse_file_name``), plus the probed duration;
2. the container's ``creation_time`` (ffprobe), plus the probed duration;
3. the file's modification time: the recorder closed the file when the recording ended.

Every datetime this module returns is timezone-aware and in UTC, so that later arithmetic
(``recorded_end + 24 h``) is real elapsed time and not wall-clock arithmetic across a DST change.
This module must never do I/O or read the clock, and must never invent a time it was not given:
an unknown time stays ``None`` and is visible as such (``time_source = None``).

A recorder's clock can be wrong: reset to 1970/1980/2000 after a flat battery, or set decades
ahead. ``judge_clock`` decides whether the times a recording got are believable, and what its
deadline counts from when they are not (when the station first saw the file: the one clock
that is trusted). The times the device gave are still kept as evidence of what it said.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from ..i18n import _

SOURCE_FILENAME = "filename"
SOURCE_METADATA = "metadata"
SOURCE_MTIME = "mtime"

# A probed duration longer than this is not believed. Body cameras split recordings into
# segments far shorter than a day; a huge value comes from a damaged header, and trusting it
# would push the deadline later than the truth (the one direction we must never err in).
MAX_PLAUSIBLE_DURATION_S = 24 * 3600.0

_SOURCE_WORDS = {
    SOURCE_FILENAME: "the file name",
    SOURCE_METADATA: "the container's creation time",
    SOURCE_MTIME: "the file's modification time",
}

# A date and a time of day at least: a date alone is too coarse to start a 24-hour clock from.
_ISO_DATE_TIME = re.compile(r"^\s*\d{4}-?\d{2}-?\d{2}[T ]\d{2}")


@dataclass(frozen=True)
class RecordingTimes:
    recorded_start: datetime | None
    recorded_end: datetime | None
    time_source: str | None  # "filename" | "metadata" | "mtime" | None


def derive_times(
    *,
    name_start: datetime | None,
    creation_time: datetime | None,
    duration_s: float | None,
    mtime: datetime | None,
) -> RecordingTimes:
    """Pick the best-known recording start and end. All given datetimes must be aware.

    ``duration_s`` that is missing, not finite, negative or implausibly long counts as unknown;
    a time that cannot be expressed in UTC (the edges of year 1 and 9999) counts as missing.
    Raises ``ValueError`` for a naive datetime: its meaning depends on a time zone the caller
    knows and this function does not.
    """
    duration = _plausible_duration(duration_s)
    for start, source in ((name_start, SOURCE_FILENAME), (creation_time, SOURCE_METADATA)):
        if start is None:
            continue
        start_utc = _utc(start, source)
        if start_utc is None:
            continue
        # Without a duration the end is taken to be the start: that makes the deadline
        # earlier than (or equal to) the true one, so a recording is never reported on time
        # when it was not.
        end_utc = start_utc
        if duration is not None:
            end_utc = _add(start_utc, duration) or start_utc
        return RecordingTimes(start_utc, end_utc, source)
    if mtime is not None:
        # The recorder writes the file until the recording stops, so the last modification
        # is the end; the start is only known when the duration is.
        closed_utc = _utc(mtime, SOURCE_MTIME)
        if closed_utc is not None:
            opened_utc = _add(closed_utc, -duration) if duration is not None else None
            return RecordingTimes(opened_utc, closed_utc, SOURCE_MTIME)
    return RecordingTimes(None, None, None)


@dataclass(frozen=True)
class ClockWindow:
    """When a recorder's time is believed: not before ``earliest`` (``compliance.
    earliest_plausible``), and not later than ``seen_at`` (when the station first saw the file,
    so the recording had ended by then) plus ``tolerance`` (``compliance.clock_tolerance_hours``,
    for a recorder clock a little ahead of the station's). All datetimes aware.

    There is deliberately no lower bound from the device's history (its first dock or
    registration): a new device's first dock is "now" and the footage on it legitimately
    predates it, and a device used at another station or before a state rebuild has older
    footage too. Only the configured epoch separates a reset clock from old footage.
    """

    earliest: datetime
    seen_at: datetime
    tolerance: timedelta


@dataclass(frozen=True)
class ClockVerdict:
    implausible: str | None  # why the recorder's time is not believed; None when it is
    counts_from: datetime | None  # what the archive deadline counts from (None: no deadline)


def judge_clock(
    times: RecordingTimes,
    window: ClockWindow,
    *,
    invalid_name_time: str | None = None,
    zone: tzinfo = timezone.utc,
) -> ClockVerdict:
    """Believe the recording's times, or say why not and count its deadline from ``seen_at``.

    The times judged are those ``derive_times`` chose: the file name, the container or the
    mtime are all written from the same recorder clock, so a later source that happens to
    look right does not vouch for a wrong first one. A file name whose time is not a date at
    all (``invalid_name_time``, e.g. month 13) condemns the clock even when the fallback time
    looks sane; the fallback is kept as what the device said. ``zone`` is how times are shown
    in the reason. A recording with no time at all has nothing to judge (it has no deadline,
    as before: see ``compliance.rules``).
    """
    for moment in (window.earliest, window.seen_at):
        if moment.utcoffset() is None:
            raise ValueError(_("clock window time {isoformat} has no time zone").format(
                isoformat=moment.isoformat()))
    reason = None
    if invalid_name_time is not None:
        reason = f"file name says {invalid_name_time}, which is not a valid date"
    else:
        source = _SOURCE_WORDS.get(times.time_source or "", "the recorder")
        first = times.recorded_start or times.recorded_end
        last = times.recorded_end or times.recorded_start
        latest = _add(window.seen_at, window.tolerance) or window.seen_at
        if first is not None and first < window.earliest:
            reason = (f"{source} says {_show(first, zone)}, before "
                      f"{_show(window.earliest, zone)} (compliance.earliest_plausible): "
                      "the recorder's clock was probably reset")
        elif last is not None and last > latest:
            ahead = _span(last - window.seen_at)
            reason = (f"{source} says {_show(last, zone)}, {ahead} after the station "
                      f"first saw the file ({_show(window.seen_at, zone)}): the recorder's clock "
                      "is ahead")
    if reason is None:
        return ClockVerdict(None, times.recorded_end)
    return ClockVerdict(reason, window.seen_at)


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600.0
    return f"{hours:.1f} h" if hours < 72 else f"{hours / 24:,.0f} days"


def _show(moment: datetime, zone: tzinfo) -> str:
    try:
        return moment.astimezone(zone).isoformat(timespec="seconds")
    except OverflowError:  # the edge of the calendar: show it as given
        return moment.isoformat(timespec="seconds")


def parse_iso_time(text: str | None) -> datetime | None:
    """Parse a container time such as ffprobe's ``2026-11-25T08:30:00.000000Z`` into UTC.

    A time without an offset is taken as UTC: QuickTime/MP4 and Matroska store creation
    times in UTC by specification, and ffprobe prints them with ``Z``. (Some cameras write
    local time into that UTC field; that cannot be detected here, which is why the file name
    is preferred.) Returns ``None`` for anything that is not a date with a time of day.
    """
    if not text or not _ISO_DATE_TIME.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. year 1 with a positive offset
        return None


def _plausible_duration(duration_s: float | None) -> timedelta | None:
    if duration_s is None or not math.isfinite(duration_s):
        return None
    if duration_s < 0 or duration_s > MAX_PLAUSIBLE_DURATION_S:
        return None
    return timedelta(seconds=duration_s)


def _add(moment: datetime, delta: timedelta) -> datetime | None:
    # Only a nonsense time at the edge of year 1 or 9999 overflows; a hostile or broken name
    # must not crash the ingest. The caller then keeps the end at the start (conservative).
    try:
        return moment + delta
    except OverflowError:
        return None


def _utc(value: datetime, source: str) -> datetime | None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(_("{source} time {isoformat} has no time zone").format(
            source=source, isoformat=value.isoformat()))
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # year 1 or 9999 at the edge: not a time to count from
        return None
