"""What file names say (evidence_daemon.ingest.naming): table tests over the default patterns."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from evidence_daemon.config import DEFAULT_FILENAME_PATTERNS
from evidence_daemon.ingest.naming import NameFacts, parse_file_name

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
# 08:30:00 on 2026-11-25 in Shanghai (UTC+8, no DST)
START = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        pytest.param(
            "DSJ001_10086_20261125083000_0001.MP4",
            NameFacts("DSJ001", "10086", START, "0001", 0),
            id="device_officer_14digits_seq",
        ),
        pytest.param(
            "HY-A2_00123_20261125_083000_12.mp4",
            NameFacts("HY-A2", "00123", START, "12", 1),
            id="device_officer_date_time_seq",
        ),
        pytest.param(
            "VID_20261125_083000.mp4",
            NameFacts(None, None, START, None, 2),
            id="handheld terminal VID_",
        ),
        pytest.param(
            "20261125083000_0003.AVI",
            NameFacts(None, None, START, "0003", 2),
            id="bare timestamp with seq",
        ),
        pytest.param(
            "REC20261125083000.wav",
            NameFacts(None, None, START, None, 2),
            id="REC prefix without separator",
        ),
        pytest.param(
            "DCIM/100MEDIA/DSJ001_10086_20261125083000_0001.MP4",
            NameFacts("DSJ001", "10086", START, "0001", 0),
            id="directories are ignored",
        ),
        pytest.param(
            "DSJ001_10086_20261125083000_0001",
            NameFacts("DSJ001", "10086", START, "0001", 0),
            id="no extension",
        ),
        pytest.param(
            "DSJ001_10086_20261325083000_0001.MP4",
            NameFacts("DSJ001", "10086", None, "0001", 0, invalid_start="20261325083000"),
            id="month 13: no time but the digits said, device and officer kept",
        ),
        pytest.param(
            "DSJ001_10086_20260230083000_0001.MP4",
            NameFacts("DSJ001", "10086", None, "0001", 0, invalid_start="20260230083000"),
            id="30 February",
        ),
        pytest.param(
            "DSJ001_10086_20261125246000_0001.MP4",
            NameFacts("DSJ001", "10086", None, "0001", 0, invalid_start="20261125246000"),
            id="hour 24 minute 60",
        ),
        pytest.param(
            "DSJ001_10086_00001125083000_0001.MP4",
            NameFacts("DSJ001", "10086", None, "0001", 0, invalid_start="00001125083000"),
            id="year 0",
        ),
        pytest.param(
            "00010101000000.mp4",
            NameFacts(None, None, None, None, 2, invalid_start="00010101000000"),
            id="year 1 local has no UTC equivalent",
        ),
        pytest.param(
            "VID_２０２６１１２５_０８３０００.mp4",
            NameFacts(None, None, None, None, 2, invalid_start="２０２６１１２５_０８３０００"),
            id="full-width digits match \\d but give no time",
        ),
        pytest.param(
            "DSJ001_10086_20261132083000_0001.MP4",
            NameFacts("DSJ001", "10086", None, "0001", 0, invalid_start="20261132083000"),
            id="day 32",
        ),
        pytest.param(
            "VID_20261125_250000.mp4",
            NameFacts(None, None, None, None, 2, invalid_start="20261125_250000"),
            id="hour 25: the digits as written, separator included",
        ),
        pytest.param("执法_20261125083000.mp4", None, id="non-ASCII prefix: no pattern"),
        pytest.param("IMG_0001.JPG", None, id="camera counter, no time"),
        pytest.param("NOTES.MP4", None, id="no digits"),
        pytest.param("", None, id="empty"),
        pytest.param(".DS_Store", None, id="hidden file"),
        pytest.param("DSJ001_10086_2026112508300_0001.MP4", None, id="13 digits"),
    ],
)
def test_parse_default_patterns(file_name: str, expected: NameFacts | None) -> None:
    assert parse_file_name(file_name, DEFAULT_FILENAME_PATTERNS, SHANGHAI) == expected


@pytest.mark.parametrize(
    ("file_name", "expected_utc"),
    [
        pytest.param(
            "VID_20260115_120000.mp4", datetime(2026, 1, 15, 11, 0, tzinfo=UTC), id="winter CET"
        ),
        pytest.param(
            "VID_20260715_120000.mp4", datetime(2026, 7, 15, 10, 0, tzinfo=UTC), id="summer CEST"
        ),
        # 02:30 on 29 March does not exist (clocks jump 02:00 -> 03:00): fold=0 reads it with
        # the offset before the jump, +01:00.
        pytest.param(
            "VID_20260329_023000.mp4",
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
            id="non-existent local time",
        ),
        # 02:30 on 25 October happens twice: fold=0 takes the first (CEST, +02:00), the
        # earlier instant and so the earlier deadline.
        pytest.param(
            "VID_20261025_023000.mp4",
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            id="ambiguous local time",
        ),
    ],
)
def test_dst_zone(file_name: str, expected_utc: datetime) -> None:
    facts = parse_file_name(file_name, DEFAULT_FILENAME_PATTERNS, BERLIN)
    assert facts is not None
    assert facts.recorded_start == expected_utc
    assert facts.recorded_start.tzinfo is UTC


def test_first_matching_pattern_wins() -> None:
    patterns = (
        r"^X_(?P<start>\d{14})",
        r"^(?P<device>[A-Z]+)_(?P<start>\d{14})",
        r"^(?P<officer>[A-Z]+)_(?P<start>\d{14})",
    )
    assert parse_file_name("CAM_20261125083000.mp4", patterns, SHANGHAI) == NameFacts(
        "CAM", None, START, None, 1
    )


def test_custom_pattern_with_unicode_officer_and_separators() -> None:
    patterns = (r"^(?P<officer>[^_]+)_(?P<start>\d{4}-\d{2}-\d{2} \d{2}\.\d{2}\.\d{2})",)
    facts = parse_file_name("张三_2026-11-25 08.30.00.mp4", patterns, SHANGHAI)
    assert facts == NameFacts(None, "张三", START, None, 0)


def test_pattern_without_start_group_gives_no_time() -> None:
    facts = parse_file_name("CAM7_0001.mp4", (r"^(?P<device>CAM\d+)_(?P<seq>\d+)",), SHANGHAI)
    assert facts == NameFacts("CAM7", None, None, "0001", 0)


def test_no_patterns() -> None:
    assert parse_file_name("DSJ001_10086_20261125083000_0001.MP4", (), SHANGHAI) is None


def test_patterns_as_list_are_accepted() -> None:
    facts = parse_file_name(
        "DSJ001_10086_20261125083000_0001.MP4", list(DEFAULT_FILENAME_PATTERNS), SHANGHAI
    )
    assert facts is not None and facts.pattern_index == 0


@pytest.mark.parametrize(
    "file_name",
    [
        "A" * 100_000,
        "A_" * 50_000,
        "A-" * 50_000 + "_" + "1" * 100_000,
        "DSJ001_10086_" + "1" * 100_000,
        "DSJ001_10086_20261125083000_" + "0" * 100_000 + ".MP4",
        "执" * 100_000,
    ],
    ids=["letters", "underscores", "dashes-then-digits", "endless-digits", "long-seq", "cjk"],
)
def test_very_long_names_are_quick_and_safe(file_name: str) -> None:
    started = time.perf_counter()
    facts = parse_file_name(file_name, DEFAULT_FILENAME_PATTERNS, SHANGHAI)
    assert time.perf_counter() - started < 1.0
    if facts is not None:
        assert facts.recorded_start in (None, START)


@pytest.mark.parametrize(
    "file_name",
    ["\udcff\udcfe_20261125083000.mp4", "a\x00b", "\n\t", "../../etc/passwd", "C:\\DCIM\\x.MP4"],
)
def test_odd_names_do_not_crash(file_name: str) -> None:
    parse_file_name(file_name, DEFAULT_FILENAME_PATTERNS, SHANGHAI)
