"""Recording start/end and their source (evidence_daemon.ingest.timing): table tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from evidence_daemon.ingest.timing import (
    MAX_PLAUSIBLE_DURATION_S,
    ClockWindow,
    RecordingTimes,
    derive_times,
    judge_clock,
    parse_iso_time,
)

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
NAME_START = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
CREATION = datetime(2026, 11, 25, 0, 31, tzinfo=UTC)
MTIME = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def utc(hour: int, minute: int, second: float = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


@pytest.mark.parametrize(
    ("name_start", "creation_time", "duration_s", "mtime", "expected"),
    [
        pytest.param(
            NAME_START, CREATION, 120.0, MTIME,
            RecordingTimes(utc(0, 30), utc(0, 32), "filename"),
            id="filename wins, end = start + duration",
        ),
        pytest.param(
            NAME_START, CREATION, None, MTIME,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="filename without duration: end = start (earliest deadline)",
        ),
        pytest.param(
            None, CREATION, 2.5, MTIME,
            RecordingTimes(utc(0, 31), utc(0, 31, 2.5), "metadata"),
            id="metadata when the name has no time",
        ),
        pytest.param(
            None, CREATION, None, None,
            RecordingTimes(utc(0, 31), utc(0, 31), "metadata"),
            id="metadata without duration",
        ),
        pytest.param(
            None, None, 600.0, MTIME,
            RecordingTimes(utc(0, 50), utc(1, 0), "mtime"),
            id="mtime is the end; start = end - duration",
        ),
        pytest.param(
            None, None, None, MTIME,
            RecordingTimes(None, utc(1, 0), "mtime"),
            id="mtime without duration: start unknown",
        ),
        pytest.param(
            None, None, 600.0, None,
            RecordingTimes(None, None, None),
            id="nothing known",
        ),
        pytest.param(
            NAME_START, None, float("nan"), None,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="NaN duration is unknown",
        ),
        pytest.param(
            NAME_START, None, float("inf"), None,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="infinite duration is unknown",
        ),
        pytest.param(
            NAME_START, None, -5.0, None,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="negative duration is unknown",
        ),
        pytest.param(
            NAME_START, None, MAX_PLAUSIBLE_DURATION_S + 1, None,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="implausibly long duration is unknown (would delay the deadline)",
        ),
        pytest.param(
            NAME_START, None, 0.0, None,
            RecordingTimes(utc(0, 30), utc(0, 30), "filename"),
            id="zero duration",
        ),
        pytest.param(
            datetime(2026, 11, 25, 8, 30, tzinfo=SHANGHAI), None, 60.0, None,
            RecordingTimes(utc(0, 30), utc(0, 31), "filename"),
            id="local input comes back in UTC",
        ),
        pytest.param(
            None, None, 10.0, datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI),
            RecordingTimes(utc(0, 59, 50), utc(1, 0), "mtime"),
            id="local mtime comes back in UTC",
        ),
    ],
)  # fmt: skip
def test_derive_times(
    name_start: datetime | None,
    creation_time: datetime | None,
    duration_s: float | None,
    mtime: datetime | None,
    expected: RecordingTimes,
) -> None:
    times = derive_times(
        name_start=name_start, creation_time=creation_time, duration_s=duration_s, mtime=mtime
    )
    assert times == expected
    for moment in (times.recorded_start, times.recorded_end):
        assert moment is None or moment.tzinfo is UTC


def test_end_is_elapsed_time_across_a_dst_change() -> None:
    # 01:30 CET + 1 h of recording crosses the spring-forward gap: the end is 03:30 CEST
    # (02:30 UTC), not the wall-clock 02:30 that same-zone datetime arithmetic would give.
    berlin = ZoneInfo("Europe/Berlin")
    times = derive_times(
        name_start=datetime(2026, 3, 29, 1, 30, tzinfo=berlin),
        creation_time=None,
        duration_s=3600.0,
        mtime=None,
    )
    assert times.recorded_end == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert times.recorded_end is not None
    assert times.recorded_end.astimezone(berlin).hour == 3


@pytest.mark.parametrize("field", ["name_start", "creation_time", "mtime"])
def test_naive_datetime_is_refused(field: str) -> None:
    given: dict[str, datetime | None] = {"name_start": None, "creation_time": None, "mtime": None}
    given[field] = datetime(2026, 11, 25, 8, 30)
    with pytest.raises(ValueError, match="no time zone"):
        derive_times(duration_s=None, **given)


def test_times_at_the_edge_of_the_calendar_do_not_crash() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    times = derive_times(name_start=last, creation_time=None, duration_s=3600.0, mtime=None)
    assert times == RecordingTimes(last, last, "filename")

    first = datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)
    times = derive_times(name_start=None, creation_time=None, duration_s=3600.0, mtime=first)
    assert times == RecordingTimes(None, first, "mtime")

    # Year 1 at +08:00 has no UTC equivalent: treated as missing, the next source is used.
    too_early = datetime(1, 1, 1, 0, 0, 0, tzinfo=SHANGHAI)
    times = derive_times(name_start=too_early, creation_time=None, duration_s=None, mtime=MTIME)
    assert times == RecordingTimes(None, MTIME, "mtime")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T08:30:00.000000Z", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("2026-11-25T08:30:00Z", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("2026-11-25T08:30:00.5Z", datetime(2026, 11, 25, 8, 30, 0, 500000, tzinfo=UTC)),
        ("2026-11-25T08:30:00+08:00", datetime(2026, 11, 25, 0, 30, tzinfo=UTC)),
        ("2026-11-25T08:30:00+0800", datetime(2026, 11, 25, 0, 30, tzinfo=UTC)),
        ("2026-11-25 08:30:00", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),  # no offset: UTC
        (" 2026-11-25T08:30:00Z ", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("20261125T083000Z", datetime(2026, 11, 25, 8, 30, tzinfo=UTC)),
        ("2026-11-25", None),  # a date alone cannot start a 24-hour clock
        ("2026-13-25T08:30:00Z", None),
        ("2026-11-25T25:30:00Z", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        ("0001-01-01T00:00:00+08:00", None),  # no UTC equivalent
    ],
)
def test_parse_iso_time(text: str | None, expected: datetime | None) -> None:
    parsed = parse_iso_time(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


# -- is the recorder's clock believed? --------------------------------------------------------

SEEN = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)  # when the station first saw the file
WINDOW = ClockWindow(earliest=datetime(2015, 1, 1, tzinfo=SHANGHAI), seen_at=SEEN,
                     tolerance=timedelta(hours=2))


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("times", "invalid_name_time", "reason_says", "counts_from"),
    [
        pytest.param(RecordingTimes(at(2026, 11, 29, 8), at(2026, 11, 29, 9), "filename"), None,
                     None, at(2026, 11, 29, 9), id="an hour before the dock: believed"),
        pytest.param(RecordingTimes(at(2026, 11, 29, 11), at(2026, 11, 29, 12), "filename"), None,
                     None, at(2026, 11, 29, 12), id="2 h ahead is within the tolerance"),
        pytest.param(RecordingTimes(at(2026, 11, 29, 11), at(2026, 11, 29, 12, 0, 1), "metadata"),
                     None, "the container's creation time says 2026-11-29T20:00:01+08:00, 2.0 h after",
                     SEEN, id="a second past the tolerance"),
        pytest.param(RecordingTimes(at(2099, 11, 29, 1), at(2099, 11, 29, 2), "filename"), None,
                     "the file name says 2099-11-29T10:00:00+08:00, 26,663 days after the station "
                     "first saw the file (2026-11-29T18:00:00+08:00): the recorder's clock is ahead",
                     SEEN, id="2099: clock decades ahead"),
        pytest.param(RecordingTimes(None, at(1980, 1, 1), "mtime"), None,
                     "the file's modification time says 1980-01-01T08:00:00+08:00, before "
                     "2015-01-01T00:00:00+08:00 (compliance.earliest_plausible): the recorder's "
                     "clock was probably reset", SEEN, id="1980 mtime: reset clock"),
        pytest.param(RecordingTimes(at(1970, 1, 1), at(1970, 1, 1, 0, 5), "metadata"), None,
                     "before 2015-01-01", SEEN, id="1970: the Unix epoch"),
        pytest.param(RecordingTimes(at(2000, 1, 1), at(2000, 1, 1), "filename"), None,
                     "before 2015-01-01", SEEN, id="2000: another reset value"),
        pytest.param(RecordingTimes(at(2014, 12, 31, 16), at(2014, 12, 31, 16, 10), "filename"),
                     None, None, at(2014, 12, 31, 16, 10),
                     id="exactly the epoch (midnight station time) is believed"),
        pytest.param(RecordingTimes(at(2014, 12, 31, 15, 59), at(2014, 12, 31, 16, 10), "filename"),
                     None, "before 2015-01-01", SEEN,
                     id="a start before the epoch condemns a recording that ends after it"),
        pytest.param(RecordingTimes(at(2026, 11, 29, 8), at(2026, 11, 29, 13), "filename"), None,
                     "3.0 h after the station first saw the file", SEEN,
                     id="a start that is fine but an end after the dock (impossible duration)"),
        pytest.param(RecordingTimes(None, at(2026, 11, 28), "mtime"), "20261325083000",
                     "file name says 20261325083000, which is not a valid date", SEEN,
                     id="month 13 in the name: a sane mtime does not vouch for the clock"),
        pytest.param(RecordingTimes(None, None, None), "00001125083000",
                     "file name says 00001125083000, which is not a valid date", SEEN,
                     id="year 0000 and nothing else known"),
        pytest.param(RecordingTimes(None, None, None), None, None, None,
                     id="no time at all: nothing to judge, no deadline"),
    ],
)  # fmt: skip
def test_judge_clock(
    times: RecordingTimes, invalid_name_time: str | None, reason_says: str | None,
    counts_from: datetime | None,
) -> None:
    verdict = judge_clock(times, WINDOW, invalid_name_time=invalid_name_time, zone=SHANGHAI)
    if reason_says is None:
        assert verdict.implausible is None
    else:
        assert verdict.implausible is not None and reason_says in verdict.implausible
    assert verdict.counts_from == counts_from


def test_judge_clock_refuses_a_naive_window() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        judge_clock(RecordingTimes(None, None, None),
                    ClockWindow(datetime(2015, 1, 1), SEEN, timedelta(hours=2)))


def test_judge_clock_shows_times_at_the_edge_of_the_calendar() -> None:
    last = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    verdict = judge_clock(RecordingTimes(last, last, "filename"), WINDOW, zone=SHANGHAI)
    assert verdict.implausible is not None and "9999-12-31T23:00:00+00:00" in verdict.implausible
