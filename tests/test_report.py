"""``evidence-daemon report``: counts and late hours per officer, device or station."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.compliance.report import compliance_report
from evidence_daemon.ingest.pipeline import Origin

from .test_compliance_support import T0, SteppedClock, make_station, write_footage
from .helpers import run_cli

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = datetime(2026, 12, 1, tzinfo=timezone.utc)


def recording(officer: str | None, compliance: str, *, end_h: float = 0,
              archived_h: float | None = None, device: str = "DSJ-1") -> dict[str, Any]:
    ended = T0 + timedelta(hours=end_h)
    return {
        "officer_id": officer, "device_id": device, "compliance": compliance,
        "recorded_end": ended.isoformat(),
        "archive_deadline": (ended + timedelta(hours=24)).isoformat(),
        "archived_at": (ended + timedelta(hours=archived_h)).isoformat() if archived_h else None,
    }


def test_report_groups_counts_and_late_hours() -> None:
    catalog = [
        recording("10086", "on_time", archived_h=2),
        recording("10086", "late", archived_h=26),  # 2 h late
        recording("10086", "late", archived_h=34),  # 10 h late
        recording("10086", "late", archived_h=30),  # 6 h late
        recording("10087", "overdue", device="DSJ-2"),
        recording("10087", "at_risk", device="DSJ-2"),
        recording(None, "pending"),
        recording("10086", "on_time", end_h=-24 * 60, archived_h=1),  # outside the period
    ]
    by_officer = compliance_report(catalog, by="officer", station="s", start=START, end=END)
    assert [(g.group, g.total, g.on_time, g.late, g.overdue, g.pending, g.at_risk,
             g.late_hours_median, g.late_hours_max) for g in by_officer] == [
        ("(unknown)", 1, 0, 0, 0, 1, 0, None, None),
        ("10086", 4, 1, 3, 0, 0, 0, 6.0, 10.0),
        ("10087", 2, 0, 0, 1, 1, 1, None, None),
    ]
    by_station = compliance_report(catalog, by="station", station="town-a", start=START, end=END)
    assert [(g.group, g.total) for g in by_station] == [("town-a", 7)]
    by_device = compliance_report(catalog, by="device", station="s", start=START, end=END)
    assert [(g.group, g.total) for g in by_device] == [("DSJ-1", 5), ("DSJ-2", 2)]
    with pytest.raises(ValueError):
        compliance_report(catalog, by="colour", station="s", start=START, end=END)


def test_implausible_clocks_are_kept_apart_from_real_lateness() -> None:
    def bad_clock(recorded_end: datetime, compliance: str, *, archived_h: float | None) -> dict[str, Any]:
        seen = T0  # the deadline of a recording with a bad clock counts from first seen
        return {
            "officer_id": "10086", "device_id": "DSJ-1", "compliance": compliance,
            "recorded_end": recorded_end.isoformat(), "first_seen_at": seen.isoformat(),
            "archive_deadline": (seen + timedelta(hours=24)).isoformat(),
            "archived_at": (seen + timedelta(hours=archived_h)).isoformat() if archived_h else None,
            "flags": ["time_implausible"],
        }

    catalog = [
        recording("10086", "late", archived_h=30),  # really 6 h late
        # A reset clock says 1980: once ~410,000 h "late", now in its own column, archived 3 h
        # after the first-seen deadline.
        bad_clock(datetime(1980, 1, 1, tzinfo=timezone.utc), "late", archived_h=27),
        # A clock in 2099: once "on time" 73 years early; here on time against first seen.
        bad_clock(datetime(2099, 11, 20, tzinfo=timezone.utc), "on_time", archived_h=2),
        bad_clock(datetime(2099, 11, 20, tzinfo=timezone.utc), "overdue", archived_h=None),
    ]
    [group] = compliance_report(catalog, by="officer", station="s", start=START, end=END)
    assert (group.total, group.on_time, group.late, group.overdue, group.pending) == (4, 0, 1, 0, 0)
    assert (group.time_implausible, group.time_implausible_late) == (3, 2)
    assert (group.late_hours_median, group.late_hours_max) == (6.0, 6.0)
    # They belong to the period when the station saw them, not to 1980 or 2099.
    assert compliance_report(catalog, by="officer", station="s", start=START.replace(year=1979),
                             end=START.replace(year=1981)) == []


def test_report_command_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = SteppedClock(T0 + timedelta(hours=1))
    station = make_station(tmp_path, clock)
    station.connect()
    write_footage(tmp_path / "a", "on-time.mp4", b"archived within the hour")
    assert station.ingestor().ingest(Origin(tmp_path / "a", device_id="DSJ-1",
                                            officer_id="10086")).ok
    clock.advance(hours=30)
    write_footage(tmp_path / "b", "late.mp4", b"archived 7 hours late")
    assert station.ingestor().ingest(Origin(tmp_path / "b", device_id="DSJ-1",
                                            officer_id="10086")).ok
    station.close()
    config = str(tmp_path / "config.toml")

    code, out, err = run_cli(capsys, "--config", config, "report", "--from", "2026-11-20",
                             "--to", "2026-11-20", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["groups"] == [{
        "group": "10086", "total": 2, "on_time": 1, "late": 1, "overdue": 0, "pending": 0,
        "at_risk": 0, "late_hours_median": 7.0, "late_hours_max": 7.0, "time_implausible": 0,
        "time_implausible_late": 0}]

    code, out, _ = run_cli(capsys, "--config", config, "report", "--from", "2026-11-20",
                           "--to", "2026-11-21", "--by", "device", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["group"] == "DSJ-1" and rows[0]["late"] == "1"

    code, out, _ = run_cli(capsys, "--config", config, "report", "--from", "2026-11-20",
                           "--to", "2026-11-21", "--by", "station")
    assert code == 0
    assert "test-station" in out and "LATE H MEDIAN" in out

    code, out, _ = run_cli(capsys, "--config", config, "report", "--from", "2026-10-01",
                           "--to", "2026-10-02")
    assert code == 0 and "no recordings in this period" in out

    code, _, err = run_cli(capsys, "--config", config, "report", "--from", "2026-11-21",
                           "--to", "2026-11-20T00:00")
    assert code == 2 and "--to" in err
