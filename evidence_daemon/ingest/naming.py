"""What a body camera's file name says: device, officer, local start time, sequence number.

Recorders name files like ``DSJ001_10086_20261125083000_0001.MP4`` (device, officer, local
start time, sequence). The configured regular expressions (``ingest.filename_patterns``) say
how each device model does it; the first one that matches wins. The time in the name is local
wall-clock time in the station's time zone.

Pure: no I/O, no clock. It must never guess: a name that matches no pattern gives ``None``, and
a time that is not a real date (month 13, hour 25, year 0000) gives ``recorded_start = None``
with the digits kept in ``invalid_start``, so that the caller can say why the recorder's clock
is not believed instead of quietly using another time. It must never raise for an odd or
hostile name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

_ASCII_DIGITS = frozenset("0123456789")
_START_DIGITS = 14  # YYYYMMDDhhmmss


@dataclass(frozen=True)
class NameFacts:
    device_id: str | None
    officer_id: str | None
    recorded_start: datetime | None  # timezone-aware, in UTC
    seq: str | None
    pattern_index: int  # which of the configured patterns matched
    # The name's start time as written, when it is not a real date (month 13, year 0000, ...)
    invalid_start: str | None = None


def parse_file_name(file_name: str, patterns: Sequence[str], tz: ZoneInfo) -> NameFacts | None:
    """Return what the first matching pattern reads from ``file_name``, or ``None``.

    ``file_name`` may include directories; only the last component is matched (``re.match``,
    so patterns are anchored at the start; the extension is whatever follows the match).
    Groups used: ``start`` (14 digits once separators are removed), and the optional
    ``device``, ``officer``, ``seq``; an empty or absent group is ``None``.

    Local times that a DST change makes ambiguous or non-existent are resolved with
    ``fold=0`` (PEP 495): an ambiguous time is read as its first occurrence (the earlier
    instant, so the earlier deadline), a time in the spring-forward gap with the offset in
    force before the gap. Either way the uncertainty is at most the DST shift (one hour).

    Patterns are the validated ``ingest.filename_patterns``; an invalid one raises ``re.error``.
    """
    base_name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    for index, pattern in enumerate(_compile(tuple(patterns))):
        match = pattern.match(base_name)
        if match is None:
            continue
        groups = match.groupdict()
        start_text = groups.get("start") or None
        recorded_start = _local_start(start_text, tz)
        return NameFacts(
            device_id=groups.get("device") or None,
            officer_id=groups.get("officer") or None,
            recorded_start=recorded_start,
            seq=groups.get("seq") or None,
            pattern_index=index,
            invalid_start=start_text if start_text and recorded_start is None else None,
        )
    return None


@functools.lru_cache(maxsize=32)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


def _local_start(text: str | None, tz: ZoneInfo) -> datetime | None:
    if not text:
        return None
    # Only ASCII digits count: in a Python str pattern ``\d`` also matches full-width and
    # other Unicode digits, which no recorder writes; such a name gives no time rather than
    # a time read from characters the device never produced.
    digits = "".join(char for char in text if char in _ASCII_DIGITS)
    if len(digits) != _START_DIGITS:
        return None
    try:
        local = datetime(
            int(digits[0:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
            tzinfo=tz,
            fold=0,
        )
        # UTC, so that "start + duration" and "end + 24 h" are elapsed time, not wall time.
        return local.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # month 13, 25 o'clock, year 0, or the edge of year 1
        return None
