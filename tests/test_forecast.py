"""Slow township links: the backlog, the upload rate and the deadline forecast (issue 14,
part 3), and every docked device's progress (part 4), in the metrics and in ``status``.

Pure tables for the forecast; the backlog read from a real spool (SQLite, filesystem archive
away); the gauges from a fresh registry; ``status`` run as the operator runs it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from evidence_daemon.compliance.forecast import Waiting, forecast, upload_rate
from evidence_daemon.config import load_config
from evidence_daemon.dock.manager import DockJob
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.metrics.station import StationMetrics
from evidence_daemon.station import open_station

from .faultlog import FaultLog
from .helpers import run_cli, write_config

UTC = timezone.utc
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MB = 1_000_000


def due_in(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


# -- the forecast, pure ----------------------------------------------------------------------

@pytest.mark.parametrize(("waiting", "rate", "missed", "missed_bytes", "drain_s"), [
    ([], 1000.0, 0, 0, 0.0),
    ([], None, 0, 0, 0.0),                                   # nothing waits: nothing to miss
    ([Waiting(MB, due_in(1))], None, None, None, None),      # no rate known: no forecast
    ([Waiting(MB, due_in(1))], 1000.0, 0, 0, 1000.0),        # 1000 s < 1 h
    ([Waiting(4 * MB, due_in(1))], 1000.0, 1, 4 * MB, 4000.0),  # 4000 s > 1 h
    # earliest deadline first: the second waits for the first's bytes too
    ([Waiting(3 * MB, due_in(1)), Waiting(3 * MB, due_in(1.5))], 1000.0, 1, 3 * MB, 6000.0),
    # an important file that goes first makes a later one miss
    ([Waiting(3 * MB, due_in(20), important=True), Waiting(1 * MB, due_in(1))], 1000.0,
     1, MB, 4000.0),
    # already overdue: it takes its turn on the link but is no forecast
    ([Waiting(MB, due_in(-1)), Waiting(MB, due_in(0.5))], 1000.0, 1, MB, 2000.0),
    ([Waiting(MB, due_in(-1))], 1000.0, 0, 0, 1000.0),
    # no deadline known: it takes time, it cannot miss
    ([Waiting(3 * MB, None), Waiting(MB, due_in(1))], 1000.0, 1, MB, 4000.0),
])
def test_forecast_simulates_the_upload_order(
    waiting: list[Waiting], rate: float | None, missed: int | None, missed_bytes: int | None,
    drain_s: float | None,
) -> None:
    outlook = forecast(waiting, now=NOW, rate_bytes_per_s=rate)
    assert (outlook.missed_recordings, outlook.missed_bytes, outlook.drain_s) == (
        missed, missed_bytes, drain_s)
    assert (outlook.recordings, outlook.size_bytes) == (
        len(waiting), sum(item.size_bytes for item in waiting))


def test_first_missed_deadline() -> None:
    outlook = forecast([Waiting(3 * MB, due_in(1)), Waiting(3 * MB, due_in(1.5))], now=NOW,
                       rate_bytes_per_s=1000.0)
    assert outlook.first_miss == due_in(1.5)


@pytest.mark.parametrize(("measured", "cap", "expected"), [
    (None, None, (None, None)),
    (None, 1000.0, (1000.0, "cap")),                              # nothing measured yet
    (500.0, None, (500.0, "measured")),
    (500.0, 1000.0, (500.0, "measured")),                         # the link is slower than the cap
    (1500.0, 1000.0, (1000.0, "measured, held to the cap")),      # a burst never counts
    (0.0, 1000.0, (1000.0, "cap")),
])
def test_the_rate_forecast_with(
    measured: float | None, cap: float | None, expected: tuple[float | None, str | None]
) -> None:
    assert upload_rate(measured, cap) == expected


# -- the backlog of a real spool -------------------------------------------------------------

def named(ago_hours: float, seq: int, *, marker: str = "") -> str:
    """A recorder's file name whose start (= end: no probe) was ``ago_hours`` before NOW."""
    start = (NOW - timedelta(hours=ago_hours)).astimezone(SHANGHAI)
    return f"DSJ1_1001_{start:%Y%m%d%H%M%S}_{seq:04d}{marker}.MP4"


def spool_backlog(tmp_path: Path, files: dict[str, int], *, extra: str = "",
                  clock: Any = lambda: NOW) -> Path:
    """Dock a card while the archive is away: its files wait in the spool."""
    card = tmp_path / "card"
    card.mkdir()
    for name, size in files.items():
        (card / name).write_bytes(os.urandom(size))
    config_path = write_config(tmp_path, extra="[ingest]\nprobe = false\n" + extra)
    station = open_station(load_config(config_path, environ={}), clock=clock)
    summary = station.ingestor().ingest(Origin(card, device_id="DSJ1"), archive_error="away")
    assert summary.pending == len(files)
    station.close()
    return config_path


def test_the_backlog_is_read_in_upload_order_with_its_deadlines(tmp_path: Path) -> None:
    config_path = spool_backlog(tmp_path, {
        named(19, 1): 1_200_000,   # due in 5 h
        named(18, 2): 1_200_000,   # due in 6 h
        named(2, 3): 10_000,       # due in 22 h
    })
    station = open_station(load_config(config_path, environ={}), clock=lambda: NOW)
    try:
        at_100 = station.forecast(100.0)  # 100 B/s: 12 000 s = 3.3 h for the first
        unknown = station.forecast(None)
    finally:
        station.close()
    assert (at_100.recordings, at_100.size_bytes) == (3, 2_410_000)
    # the second needs 24 000 s = 6.7 h in all: it misses; the third makes it
    assert (at_100.missed_recordings, at_100.missed_bytes) == (1, 1_200_000)
    assert at_100.first_miss == due_in(6)
    assert at_100.rate_source == "measured"
    assert unknown.missed_recordings is None  # no cap, nothing measured: no forecast


# -- metrics -----------------------------------------------------------------------------

def value(metrics: StationMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_backlog_rate_and_forecast_gauges(tmp_path: Path) -> None:
    config_path = spool_backlog(tmp_path, {named(19, 1): 1_200_000, named(18, 2): 1_200_000})
    station = open_station(load_config(config_path, environ={}), clock=lambda: NOW)
    measured: list[float | None] = [None]
    metrics = StationMetrics(station.config, station.database, clock=lambda: NOW,
                             registry=CollectorRegistry(),
                             forecast=lambda: station.forecast(measured[0]))
    try:
        assert value(metrics, "evidence_backlog_recordings") == 2
        assert value(metrics, "evidence_backlog_bytes") == 2_400_000
        # nothing measured and no cap: no forecast rather than a made-up one
        assert value(metrics, "evidence_forecast_missed_recordings") is None
        assert value(metrics, "evidence_upload_rate_bytes_per_second") is None
        measured[0] = 100.0
        assert value(metrics, "evidence_upload_rate_bytes_per_second") == 100.0
        assert value(metrics, "evidence_forecast_missed_recordings") == 1
        assert value(metrics, "evidence_forecast_missed_bytes") == 1_200_000
        assert value(metrics, "evidence_forecast_drain_seconds") == 24_000
        # neither is within the at-risk margin yet: the forecast speaks first
        assert value(metrics, "evidence_recordings", state="at_risk") == 0
        measured[0] = 1000.0
        assert value(metrics, "evidence_forecast_missed_recordings") == 0
    finally:
        station.close()


def test_a_capped_station_forecasts_from_the_cap_before_anything_was_measured(
    tmp_path: Path
) -> None:
    config_path = spool_backlog(tmp_path, {named(19, 1): 1_200_000, named(18, 2): 1_200_000})
    config = load_config(config_path, environ={}, overrides={"archive.max_upload_mbps": "0.0008"})
    station = open_station(config, clock=lambda: NOW)
    metrics = StationMetrics(config, station.database, clock=lambda: NOW,
                             registry=CollectorRegistry(), forecast=lambda: station.forecast(None))
    try:
        assert value(metrics, "evidence_upload_rate_limit_bytes_per_second") == 100.0
        assert value(metrics, "evidence_upload_rate_bytes_per_second") == 100.0
        assert value(metrics, "evidence_forecast_missed_recordings") == 1
    finally:
        station.close()


def test_every_docked_device_has_its_progress_in_the_metrics(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path), environ={})
    station = open_station(config, clock=lambda: NOW)
    jobs = [DockJob(name=f"DSJ-A8-{index:04d}", kind="device", state="ingesting",
                    files_total=10, bytes_total=10 * MB) for index in range(8)]
    for index, job in enumerate(jobs):
        job.on_progress("copying", {"path": "a.mp4", "size_bytes": MB})
        job.on_progress("bytes", {"count": index * MB})
    finished = DockJob(name="DSJ-A8-0099", kind="device", state="done", finished_at=1.0)
    metrics = StationMetrics(config, station.database, clock=lambda: NOW,
                             registry=CollectorRegistry())
    metrics.watch_jobs(lambda: [job.snapshot() for job in [*jobs, finished]])
    try:
        assert value(metrics, "evidence_devices_docked") == 8
        for index, job in enumerate(jobs):
            labels = {"device": job.name, "kind": "device"}
            assert value(metrics, "evidence_device_bytes_done", **labels) == index * MB
            assert value(metrics, "evidence_device_bytes_total", **labels) == 10 * MB
            assert value(metrics, "evidence_device_files_total", **labels) == 10
            assert value(metrics, "evidence_device_copy_rate_bytes_per_second", **labels) is not None
        # a finished dock leaves the metrics: the labels are the devices docked now
        assert value(metrics, "evidence_device_bytes_done", device="DSJ-A8-0099",
                     kind="device") is None
    finally:
        station.close()


# -- status -------------------------------------------------------------------------------

def test_status_shows_the_backlog_the_rate_and_the_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    """As the operator runs it (the real clock): a 0.0008 Mbit/s (100 B/s) cap, nothing
    measured yet, two recordings due in 5 and 6 hours: the second will miss."""
    now = datetime.now(UTC)
    card_names = {}
    for ago, seq in ((19, 1), (18, 2)):
        start = (now - timedelta(hours=ago)).astimezone(SHANGHAI)
        card_names[f"DSJ1_1001_{start:%Y%m%d%H%M%S}_{seq:04d}.MP4"] = 1_200_000
    config_path = spool_backlog(tmp_path, card_names, clock=lambda: datetime.now(UTC))
    text = config_path.read_text(encoding="utf-8").replace(
        "[archive]\n", "[archive]\nmax_upload_mbps = 0.0008\n")
    config_path.write_text(text, encoding="utf-8")

    code, out, err = run_cli(capsys, "--config", str(config_path), "status", "--json")
    assert code == 0, err
    backlog = json.loads(out)["backlog"]
    assert backlog["recordings"] == 2 and backlog["size_bytes"] == 2_400_000
    assert backlog["upload_rate_bytes_per_s"] == 100.0 and backlog["rate_source"] == "cap"
    assert backlog["forecast_missed_recordings"] == 1
    assert backlog["forecast_missed_bytes"] == 1_200_000
    assert backlog["drain_s"] == 24_000
    assert json.loads(out)["compliance"]["at_risk"] == 0  # the forecast warns hours earlier

    code, out, err = run_cli(capsys, "--config", str(config_path), "status")
    assert code == 0, err
    assert "backlog  2 recording(s), 2.4 MB waiting in the spool" in out
    assert "upload   100 B/s (0.0008 Mbit/s, cap); backlog archived in 6.7 h" in out
    assert "forecast 1 recording(s), 1.2 MB would miss their deadline" in out
    fault_log("slow archive link", "backlog larger than the link carries before its deadlines",
              injected_by="archive.max_upload_mbps = 0.0008 (100 B/s), 2 × 1.2 MB due in 5 and 6 h",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=code,
              message=next(line for line in out.splitlines() if line.startswith("forecast")))


def test_status_without_a_rate_says_there_is_no_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    code, out, err = run_cli(capsys, "--config", str(config_path), "status")
    assert code == 0, err
    assert "backlog  0 recording(s)" in out
    assert "rate not measured yet" in out
