"""Scheduled upkeep jobs, called directly (the scheduler itself is APScheduler's)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from evidence_daemon.devices.registry import DeviceIdentity
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.metrics.station import StationMetrics
from evidence_daemon.station import Station
from evidence_daemon.upkeep.jobs import FIXITY_AUDIT, Backoff, Upkeep, fixity_batch_size

from .test_compliance_support import T0, SteppedClock, make_station, write_footage


@pytest.mark.parametrize(
    ("total", "interval_s", "period_days", "expected"),
    [(0, 600, 30, 0), (1, 600, 30, 1), (4320, 600, 30, 1), (4321, 600, 30, 2),
     (100, 86400, 1, 100), (100, 172800, 1, 100), (10, 3600, 0.25, 2)],
)
def test_fixity_batch_covers_everything_within_the_period(
    total: int, interval_s: float, period_days: float, expected: int
) -> None:
    size = fixity_batch_size(total, interval_s=interval_s, period_days=period_days)
    assert size == expected
    runs = max(period_days * 86400 / interval_s, 1)
    assert size * runs >= total


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(base_s=10, max_s=100)
    waits = [backoff.failed() for _ in range(8)]
    assert 10 <= waits[0] <= 20
    assert 20 <= waits[1] <= 30
    assert all(wait <= 100 for wait in waits)
    assert waits[-1] == 100
    backoff.succeeded()
    assert backoff.failed() <= 20


def archived_station(tmp_path: Path, files: int = 3) -> tuple[Station, SteppedClock]:
    clock = SteppedClock(T0 + timedelta(hours=1))
    station = make_station(tmp_path, clock)
    for index in range(files):
        write_footage(tmp_path / "card", f"{index}.mp4", f"recording {index}".encode())
    station.connect()
    assert station.ingestor().ingest(Origin(tmp_path / "card")).ok
    return station, clock


def test_fixity_audit_finds_a_corrupted_original(tmp_path: Path) -> None:
    station, clock = archived_station(tmp_path)
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    upkeep = Upkeep(station.config, station, station.ingestor(),
                    metrics=metrics.pipeline, health=metrics.health)
    recordings = station.recordings()
    victim = recordings[1]
    original = tmp_path / "archive" / victim["object_key"]
    with original.open("r+b") as handle:
        handle.write(b"X")  # one byte changed in the archive

    # every original is due once within the period: with 3 recordings and a period of two
    # intervals, 2 per run
    upkeep.config = station.config.model_copy(update={"upkeep": station.config.upkeep.model_copy(
        update={"fixity_interval_s": 43200, "fixity_period_days": 1})})
    first = upkeep.fixity_audit()
    second = upkeep.fixity_audit()
    assert first[0] == 2 and second[0] == 2
    assert first[1] + second[1] == 1
    registry = metrics.registry
    assert registry.get_sample_value("evidence_fixity_checks_total") == 4
    assert registry.get_sample_value("evidence_fixity_failures_total") == 1
    assert registry.get_sample_value("evidence_fixity_failed_recordings") == 1
    failed = station.database.query(
        "SELECT recording, details FROM ledger WHERE event = 'fixity-failed'")
    assert [row["recording"] for row in failed] == [victim["id"]]
    assert "expected" in json.loads(failed[0]["details"])["problem"]
    checked = {row["sha256"] for row in station.database.query("SELECT sha256 FROM fixity")}
    assert checked == {recording["id"] for recording in recordings}


def test_spool_cleanup_removes_only_archived_copies(tmp_path: Path) -> None:
    station, _ = archived_station(tmp_path, files=1)
    ingestor = station.ingestor()
    archived_id = station.recordings()[0]["id"]
    ingestor.spool.objects.mkdir(parents=True, exist_ok=True)
    leftover = ingestor.spool.path_for(archived_id)
    leftover.write_bytes(b"left behind by a crash after archival")
    unknown = ingestor.spool.path_for("f" * 64)
    unknown.write_bytes(b"not archived: must stay")
    upkeep = Upkeep(station.config, station, ingestor)
    assert upkeep.spool_cleanup() == 1
    assert not leftover.exists()
    assert unknown.exists()


def test_a_restart_does_not_run_a_job_again_before_its_interval(tmp_path: Path) -> None:
    station, _ = archived_station(tmp_path, files=1)
    wall = SteppedClock(datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc))
    upkeep = Upkeep(station.config, station, station.ingestor(), wall_clock=wall)
    assert upkeep._first_run(FIXITY_AUDIT, 600, True) == wall.now
    upkeep._run(FIXITY_AUDIT, upkeep.fixity_audit)
    wall.advance(seconds=100)
    restarted = Upkeep(station.config, station, station.ingestor(), wall_clock=wall)
    assert restarted._first_run(FIXITY_AUDIT, 600, True) == wall.now + timedelta(seconds=500)
    wall.advance(seconds=1000)
    assert restarted._first_run(FIXITY_AUDIT, 600, True) == wall.now
    row = station.database.query_one("SELECT result FROM upkeep_runs WHERE job = ?", (FIXITY_AUDIT,))
    assert row is not None and row["result"] == "ok"


def test_jobs_never_overlap_themselves_and_stop_cleanly(tmp_path: Path) -> None:
    station, _ = archived_station(tmp_path, files=1)
    upkeep = Upkeep(station.config, station, station.ingestor())
    upkeep.start()
    try:
        jobs = {job.id: job for job in upkeep.scheduler.get_jobs()}
        assert set(jobs) == {"compliance-scan", "retry-uploads", "flush-device-events",
                             "spool-cleanup", FIXITY_AUDIT, "leftover-cleanup", "checkpoint"}
        assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
    finally:
        upkeep.stop()
    assert not upkeep.scheduler.running
    station.close()


def test_retry_backs_off_while_the_archive_is_away(tmp_path: Path) -> None:
    clock = SteppedClock(T0)
    blocker = tmp_path / "archive-host"
    station = make_station(tmp_path, clock, archive_path=blocker / "archive")
    blocker.write_bytes(b"a file where a directory should be: the archive is away")
    write_footage(tmp_path / "card", "a.mp4", b"waiting")
    station.ingestor().ingest(Origin(tmp_path / "card"), archive_error="away (test)")
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    upkeep = Upkeep(station.config, station, station.ingestor(), health=metrics.health)
    upkeep.retry_uploads()
    upkeep.retry_uploads()
    assert upkeep.backoff.failures == 2
    assert metrics.registry.get_sample_value("evidence_archive_reachable") == 0
    blocker.unlink()
    upkeep.retry_uploads()
    assert upkeep.backoff.failures == 0
    assert metrics.registry.get_sample_value("evidence_archive_reachable") == 1
    assert station.recordings()[0]["archived_at"] is not None
    station.close()


def test_compliance_scan_logs_each_newly_overdue_recording_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SteppedClock(T0 + timedelta(hours=1))
    station = make_station(tmp_path, clock)
    write_footage(tmp_path / "card", "a.mp4", b"never uploaded")
    station.ingestor().ingest(Origin(tmp_path / "card"), archive_error="away (test)")
    station.devices().docked(DeviceIdentity("DSJ-9"))
    upkeep = Upkeep(station.config, station, station.ingestor())
    upkeep.compliance_scan()
    assert "overdue" not in caplog.text
    clock.advance(hours=25)
    upkeep.compliance_scan()
    upkeep.compliance_scan()
    assert caplog.text.count("is overdue") == 1
    assert caplog.text.count("DSJ-9 has not docked") == 1
    assert upkeep.health.reachable is True
    station.close()
