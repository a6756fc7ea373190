"""Recorder clocks that cannot be right (issue 10, defect 3), end to end on a real station:
a file named for 2099, a reset clock's 1980 mtime, a file name with month 13.

Each is flagged ``time_implausible`` with its reason, its deadline counts from when the
station first saw it, the compliance states, metrics and ``report`` follow from that, and the
evidence itself is archived exactly like any other recording.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.metrics.station import StationMetrics

from .faultlog import FaultLog
from .helpers import run_cli
from .test_compliance_support import SteppedClock, make_station, write_footage

DOCK = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)  # 18:00 at the station (+08:00)
FIRST_SEEN_DEADLINE = "2026-11-30T18:00:00+08:00"  # DOCK + 24 h, in station time

FUTURE = "DSJ001_10086_20991125083000_0001.MP4"
MONTH_13 = "DSJ001_10086_20261325083000_0002.MP4"
RESET = "reset.mp4"
RIGHT = "DSJ001_10086_20261129163000_0003.MP4"  # 16:30 today: the clock is right


def card(root: Path) -> dict[str, bytes]:
    contents = {name: f"footage of {name}".encode() * 50 for name in (FUTURE, MONTH_13, RESET, RIGHT)}
    for name, content in contents.items():
        # the recorders closed their files an hour before the dock, by a right clock ...
        write_footage(root, name, content, ended=DOCK - timedelta(hours=1))
    # ... except the one whose clock reset to its epoch after a flat battery
    write_footage(root, RESET, contents[RESET], ended=datetime(1980, 1, 1, tzinfo=timezone.utc))
    return contents


def by_file(recordings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {recording["sources"][0]["path"]: recording for recording in recordings}


def archived_intact(archive: Path, content: bytes) -> bool:
    sha256 = hashlib.sha256(content).hexdigest()
    return any(hashlib.sha256(path.read_bytes()).hexdigest() == sha256
               for path in (archive / "recordings" / sha256).glob("original*"))


def archived_events(archive: Path, sha256: str) -> int:
    return sum(1 for path in (archive / "ledger").rglob("*.json")
               if (entry := json.loads(path.read_bytes()))["event"] == "archived"
               and entry["recording"] == sha256)


def test_implausible_recorder_clocks_are_flagged_and_timed_from_first_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    clock = SteppedClock(DOCK)
    station = make_station(tmp_path, clock)
    metrics = StationMetrics(station.config, station.database, clock=clock, registry=CollectorRegistry())
    contents = card(tmp_path / "card")
    origin = Origin(tmp_path / "card", device_id="DSJ001", officer_id="10086")

    # The archive is away: before, the 2099 file stayed "pending" until 2100 and the 1980 one
    # was overdue on arrival; the month-13 name quietly took the mtime.
    summary = station.ingestor().ingest(origin, archive_error="archive away (test)")
    assert summary.pending == 4
    recordings = by_file(station.recordings())
    reasons = {name: recordings[name]["flag_reasons"].get("time_implausible")
               for name in (FUTURE, MONTH_13, RESET, RIGHT)}
    assert reasons[FUTURE] is not None and "the file name says 2099-11-25T08:30:00+08:00" in reasons[FUTURE]
    assert reasons[FUTURE].endswith("the recorder's clock is ahead")
    assert reasons[MONTH_13] == "file name says 20261325083000, which is not a valid date"
    assert reasons[RESET] is not None and "modification time says 1980-01-01T08:00:00+08:00" in reasons[RESET]
    assert "clock was probably reset" in reasons[RESET]
    assert reasons[RIGHT] is None and recordings[RIGHT]["flags"] == []
    for name in (FUTURE, MONTH_13, RESET):
        assert recordings[name]["flags"] == ["time_implausible"]
        assert recordings[name]["archive_deadline"] == FIRST_SEEN_DEADLINE, name
        assert recordings[name]["compliance"] == "pending", name
    # what the device said is kept, with its source
    assert (recordings[FUTURE]["recorded_end"], recordings[FUTURE]["time_source"]) == (
        "2099-11-25T08:30:00+08:00", "filename")
    assert (recordings[MONTH_13]["recorded_end"], recordings[MONTH_13]["time_source"]) == (
        "2026-11-29T17:00:00+08:00", "mtime")
    assert recordings[RESET]["recorded_end"] == "1980-01-01T08:00:00+08:00"
    assert recordings[RIGHT]["archive_deadline"] == "2026-11-30T16:30:00+08:00"
    assert recordings[MONTH_13]["device_id"] == "DSJ001" and recordings[MONTH_13]["officer_id"] == "10086"

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("evidence_recordings_time_implausible") == 3
    clock.advance(hours=21)
    states = {name: recording["compliance"] for name, recording in by_file(station.recordings()).items()}
    assert states == {FUTURE: "at_risk", MONTH_13: "at_risk", RESET: "at_risk", RIGHT: "at_risk"}
    assert sample("evidence_recordings", state="at_risk") == 4
    # the oldest wait is the right clock's 22.5 h, not the 46 years since 1980
    assert sample("evidence_oldest_pending_age_seconds") == 22.5 * 3600
    clock.advance(hours=4)
    assert sample("evidence_recordings", state="overdue") == 4

    station.connect()
    assert station.ingestor().resume().ok
    recordings = by_file(station.recordings())
    assert {name: recording["compliance"] for name, recording in recordings.items()} == dict.fromkeys(
        (FUTURE, MONTH_13, RESET, RIGHT), "late")
    manifest = json.loads((tmp_path / "archive" / "recordings" / recordings[FUTURE]["id"]
                           / "manifest.json").read_text())
    assert manifest["flags"] == ["time_implausible"]
    assert manifest["archive_deadline"] == FIRST_SEEN_DEADLINE
    assert sample("evidence_recordings_time_implausible") == 3
    station.close()

    config = str(tmp_path / "config.toml")
    code, out, err = run_cli(capsys, "--config", config, "report", "--from", "2026-11-29",
                             "--to", "2026-11-29", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["groups"] == [{
        "group": "10086", "total": 4, "on_time": 0, "late": 1, "overdue": 0, "pending": 0,
        "at_risk": 0, "late_hours_median": 2.5, "late_hours_max": 2.5, "time_implausible": 3,
        "time_implausible_late": 3}]
    code, out, err = run_cli(capsys, "--config", config, "report", "--from", "2026-11-29",
                             "--to", "2026-11-29")
    assert code == 0, err
    assert "BAD CLOCK" in out and "3 (3 late)" in out
    assert "more than 24 h after the station first saw them" in out

    archive = tmp_path / "archive"
    cases = {
        FUTURE: ("recorder clock decades ahead (file named for 2099)", f"file named {FUTURE}"),
        RESET: ("reset recorder clock (mtime 1980-01-01)", "os.utime to 1980-01-01"),
        MONTH_13: ("file name with month 13", f"file named {MONTH_13}"),
    }
    for name, (case, injected_by) in cases.items():
        recording = recordings[name]
        lost = 0 if archived_intact(archive, contents[name]) else 1
        wrongly = int(recording["archived_at"] is not None and not archived_intact(archive, contents[name]))
        duplicates = max(archived_events(archive, recording["id"]) - 1, 0)
        assert (lost, wrongly, duplicates) == (0, 0, 0), name
        fault_log("implausible clocks", case, injected_by=injected_by, files_lost=lost,
                  wrongly_archived=wrongly, duplicates=duplicates, exit_code=code,
                  message=recording["flag_reasons"]["time_implausible"])


def test_a_clock_a_little_ahead_is_believed_within_the_tolerance(tmp_path: Path) -> None:
    clock = SteppedClock(DOCK)
    station = make_station(tmp_path, clock, extra="[compliance]\nclock_tolerance_hours = 0.5\n")
    # 18:20 at the station: 20 minutes ahead of the dock, inside half an hour
    write_footage(tmp_path / "card", "DSJ001_10086_20261129182000_0001.MP4", b"drifted")
    write_footage(tmp_path / "card", "DSJ001_10086_20261129190000_0002.MP4", b"an hour ahead")
    assert station.ingestor().ingest(Origin(tmp_path / "card")).ok
    flags = {recording["sources"][0]["path"]: recording["flags"] for recording in station.recordings()}
    assert flags == {"DSJ001_10086_20261129182000_0001.MP4": [],
                     "DSJ001_10086_20261129190000_0002.MP4": ["time_implausible"]}
    station.close()
