"""Table tests of dispatch-record parsing, footage coverage and review sampling (pure)."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timedelta, timezone

import pytest

from evidence_daemon.errors import ConfigError
from evidence_daemon.incidents.coverage import (
    Coverage, CoveragePolicy, Footage, FootageIndex, cover, coverage_of, summarise,
)
from evidence_daemon.incidents.records import Incident, parse_incidents
from evidence_daemon.incidents.sampling import (
    Candidate, SamplePeriod, draw, sample_digest, sample_seed,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
LATER = T0 + timedelta(days=3)  # every archival window has closed


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def incident(officers: tuple[str, ...] = ("A1",), start: float = 0, end: float = 30,
             incident_id: str = "I1", **extra: str) -> Incident:
    return Incident(incident_id, officers, at(start), at(end), **extra)


def footage(recording: str, officer: str | None, start: float | None, end: float | None,
            offset_s: float = 0) -> Footage:
    return Footage(recording, officer, at(start) if start is not None else None,
                   at(end) if end is not None else None, timedelta(seconds=offset_s))


# --- parsing -----------------------------------------------------------------------------

def test_csv_with_chinese_headers_reads_local_times_in_the_station_zone() -> None:
    data = ("警情编号,处警民警,开始时间,结束时间,警情类型,地点\n"
            "JQ-001,A1、A2,2026-11-02 16:00:00,2026-11-02 16:30:00,纠纷,东街\n").encode()
    parsed = parse_incidents(data, name="jq.csv", zone=SHANGHAI)
    assert parsed.problems == ()
    (only,) = parsed.incidents
    assert only == Incident("JQ-001", ("A1", "A2"), T0, at(30), "纠纷", "东街")


def test_bad_rows_are_reported_by_line_and_good_rows_still_load() -> None:
    data = ("incident_id,officers,start,end\n"
            "I1,A1,2026-11-02T08:00:00Z,2026-11-02T08:30:00Z\n"
            "I2,,2026-11-02T08:00:00Z,2026-11-02T08:30:00Z\n"
            "I3,A1,yesterday,2026-11-02T08:30:00Z\n"
            "I4,A1,2026-11-02T09:00:00Z,2026-11-02T08:30:00Z\n"
            "I1,A9,2026-11-02T08:00:00Z,2026-11-02T08:30:00Z\n"
            "I5,A1,2026-11-02T08:00:00+08:00,2026-11-02T08:10:00+08:00\n").encode()
    parsed = parse_incidents(data, name="d.csv", zone=SHANGHAI)
    assert [i.incident_id for i in parsed.incidents] == ["I1", "I5"]
    described = [p.describe("d.csv") for p in parsed.problems]
    assert described[0] == "d.csv:3: incident I2: no officer id"
    assert described[1].startswith("d.csv:4: incident I3: start 'yesterday' is not a date and time")
    assert described[2].startswith("d.csv:5: incident I4: ends (")
    assert described[3].startswith("d.csv:6: incident I1 appears again with other details (first at line 2)")
    assert parsed.incidents[1].start == datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)


def test_json_import_and_reimport_of_the_same_row_is_not_a_problem() -> None:
    row = {"incident_id": "I1", "officers": ["A1"], "start": "2026-11-02T08:00:00Z",
           "end": "2026-11-02T08:30:00Z", "type": "traffic"}
    parsed = parse_incidents(json.dumps({"incidents": [row, row, 7]}).encode(), name="d.json",
                             zone=SHANGHAI)
    assert [i.incident_id for i in parsed.incidents] == ["I1"]
    assert [(p.line, p.reason) for p in parsed.problems] == [(3, "not an object")]


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe\x00", "d.csv is not UTF-8 text"),
    (b"incident_id,start,end\nI1,x,y\n", "d.csv: the header has no column for officers"),
    (b"[1, 2", "d.csv is not valid JSON"),
])
def test_unreadable_files_are_refused_whole_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_incidents(data, name="d.csv", zone=SHANGHAI)


# --- coverage ----------------------------------------------------------------------------

POLICY = CoveragePolicy(margin=timedelta(minutes=5), seam=timedelta(seconds=10),
                        covered_fraction=0.9, archive_window=timedelta(hours=24))

CASES = [
    # (what, incident officers, footage, now, expected state, expected fraction)
    ("one recording spans the window", ("A1",), [footage("r1", "A1", -2, 35)], LATER,
     Coverage.COVERED, 1.0),
    ("start and end within the margin are forgiven", ("A1",), [footage("r1", "A1", 4, 27)],
     LATER, Coverage.COVERED, 1.0),
    ("file-split seams are not gaps", ("A1",),
     [footage("r1", "A1", 0, 10), footage("r2", "A1", 10.1, 20), footage("r3", "A1", 20.1, 30)],
     LATER, Coverage.COVERED, 1.0),
    ("half the window is partial", ("A1",), [footage("r1", "A1", 0, 15)], LATER,
     Coverage.PARTIAL, 0.5),
    ("another officer's footage does not count", ("A1",), [footage("r1", "B7", 0, 30)], LATER,
     Coverage.MISSING, 0.0),
    ("footage before the window (beyond the margin) does not count", ("A1",),
     [footage("r1", "A1", -60, -6)], LATER, Coverage.MISSING, 0.0),
    ("nothing yet, window still open: pending", ("A1",), [], at(30 + 60 * 23), Coverage.PENDING, 0.0),
    ("nothing, window closed: missing", ("A1",), [], at(30 + 60 * 24), Coverage.MISSING, 0.0),
    ("partial while still open stays pending", ("A1",), [footage("r1", "A1", 0, 10)], at(60),
     Coverage.PENDING, 1 / 3),
    ("a recorder 1 h fast is corrected by its clock offset", ("A1",),
     [footage("r1", "A1", 60, 90, offset_s=3600)], LATER, Coverage.COVERED, 1.0),
    ("without the offset the same recording would miss", ("A1",),
     [footage("r1", "A1", 60, 90)], LATER, Coverage.MISSING, 0.0),
    ("two officers, each half: together covered", ("A1", "A2"),
     [footage("r1", "A1", 0, 15), footage("r2", "A2", 15, 30)], LATER, Coverage.COVERED, 1.0),
    ("a recording without a start time cannot be placed", ("A1",),
     [footage("r1", "A1", None, None)], LATER, Coverage.MISSING, 0.0),
    ("a recording without an end counts as an instant", ("A1",),
     [footage("r1", "A1", 10, None)], LATER, Coverage.PARTIAL, 0.0),
]


@pytest.mark.parametrize("what, officers, items, now, state, fraction", CASES,
                         ids=[case[0] for case in CASES])
def test_coverage_table(what: str, officers: tuple[str, ...], items: list[Footage], now: datetime,
                        state: Coverage, fraction: float) -> None:
    (result,) = coverage_of([incident(officers)], items, now=now, policy=POLICY)
    assert result.state is state, what
    assert result.fraction == pytest.approx(fraction, abs=1e-6), what


def test_gaps_are_named_and_multi_officer_shares_are_kept_apart() -> None:
    result = cover(incident(("A1", "A2")), FootageIndex([footage("r1", "A1", 0, 10),
                                                        footage("r2", "A1", 20, 30)]),
                   now=LATER, policy=POLICY)
    assert [(g.start, g.end) for g in result.gaps] == [(at(10), at(20))]
    assert result.by_officer == {"A1": pytest.approx(2 / 3), "A2": 0.0}
    assert result.officer_states == {"A1": Coverage.PARTIAL, "A2": Coverage.MISSING}
    assert result.officers_without_footage == ("A2",)
    assert result.recordings == ("r1", "r2")


def test_one_recording_covers_several_incidents() -> None:
    incidents = [incident(incident_id="I1", start=0, end=10),
                 incident(incident_id="I2", start=20, end=40)]
    results = coverage_of(incidents, [footage("long", "A1", 0, 40)], now=LATER, policy=POLICY)
    assert [(r.incident.incident_id, r.state, r.recordings) for r in results] == [
        ("I1", Coverage.COVERED, ("long",)), ("I2", Coverage.COVERED, ("long",))]


def test_summary_by_officer_station_and_type() -> None:
    incidents = [incident(("A1", "A2"), incident_id="I1", station="East", type="traffic"),
                 incident(("A1",), incident_id="I2", start=100, end=130, station="West",
                          type="traffic")]
    results = coverage_of(incidents, [footage("r1", "A1", 0, 30)], now=LATER, policy=POLICY)
    by_officer = {row.group: dict(row.counts) for row in summarise(results, by="officer")}
    assert by_officer["A1"][Coverage.COVERED] == 1 and by_officer["A1"][Coverage.MISSING] == 1
    assert by_officer["A2"][Coverage.MISSING] == 1
    by_type = summarise(results, by="type")
    assert [(row.group, row.total, row.counts[Coverage.COVERED]) for row in by_type] == [("traffic", 2, 1)]
    assert [row.group for row in summarise(results, by="station")] == ["East", "West"]
    with pytest.raises(ValueError, match="cannot group coverage by 'day'"):
        summarise(results, by="day")


# --- review samples ----------------------------------------------------------------------

PERIOD = SamplePeriod(T0, T0 + timedelta(days=30), per_officer=2)


def test_the_same_checkpoint_gives_the_same_sample_and_another_does_not() -> None:
    candidates = [Candidate(f"{n:064x}", f"A{n % 3}") for n in range(60)]
    seed = sample_seed(PERIOD, checkpoint_writer="station-1", checkpoint_seq=812,
                       checkpoint_hash="ab" * 32)
    first = draw(seed, candidates, PERIOD.per_officer)
    again = draw(seed, list(reversed(candidates)), PERIOD.per_officer)
    assert first == again
    assert sorted(first) == ["A0", "A1", "A2"] and all(len(ids) == 2 for ids in first.values())
    other = draw(sample_seed(PERIOD, checkpoint_writer="station-1", checkpoint_seq=813,
                             checkpoint_hash="cd" * 32), candidates, PERIOD.per_officer)
    assert other != first
    assert sample_digest(first) == sample_digest(again) != sample_digest(other)


def test_an_officer_with_fewer_recordings_than_asked_gets_them_all() -> None:
    seed = sample_seed(PERIOD, checkpoint_writer="w", checkpoint_seq=1, checkpoint_hash="0" * 64)
    assert draw(seed, [Candidate("r1", "A1")], 5) == {"A1": ("r1",)}


def test_a_period_is_checked() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        SamplePeriod(T0, T0, 1)
    with pytest.raises(ValueError, match="between 1 and 1000"):
        SamplePeriod(T0, T0 + timedelta(days=1), 0)
