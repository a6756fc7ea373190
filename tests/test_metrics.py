"""The station's Prometheus metrics: scrape-time gauges from SQLite, pipeline counters, and
the real HTTP endpoint. A fresh CollectorRegistry per test; an injected clock."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from evidence_daemon.devices.registry import DeviceIdentity
from evidence_daemon.ingest.pipeline import Origin
from evidence_daemon.metrics.server import MetricsServer
from evidence_daemon.metrics.station import StationMetrics

from .test_compliance_support import T0, SteppedClock, make_station, write_footage


def value(metrics: StationMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_gauges_follow_the_clock_and_counters_follow_the_pipeline(tmp_path: Path) -> None:
    clock = SteppedClock(T0)
    station = make_station(tmp_path, clock)
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    ingestor = station.ingestor()
    ingestor.metrics = metrics.pipeline
    inbox = tmp_path / "card"
    write_footage(inbox, "a.mp4", b"first recording")
    write_footage(inbox, "b.mp4", b"second recording")
    station.devices().docked(DeviceIdentity("DSJ-A8-0042"))
    clock.advance(hours=1)

    summary = ingestor.ingest(Origin(inbox, device_id="DSJ-A8-0042"),
                              archive_error="archive unreachable (test)")
    assert summary.pending == 2
    assert value(metrics, "evidence_upload_failures_total") == 0
    assert value(metrics, "evidence_recordings", state="pending") == 2
    assert value(metrics, "evidence_queue_sources", state="spooled") == 2
    assert value(metrics, "evidence_oldest_pending_age_seconds") == 3600
    assert value(metrics, "evidence_pending_deadline_remaining_seconds") == 23 * 3600
    assert value(metrics, "evidence_device_last_dock_age_seconds", device="DSJ-A8-0042") == 3600
    assert value(metrics, "evidence_device_dock_overdue", device="DSJ-A8-0042") == 0
    assert value(metrics, "evidence_archive_reachable") is None  # nobody asked yet
    assert (value(metrics, "evidence_spool_free_bytes") or 0) > 0

    clock.advance(hours=21)
    assert value(metrics, "evidence_recordings", state="at_risk") == 2
    clock.advance(hours=3)
    assert value(metrics, "evidence_recordings", state="overdue") == 2
    assert value(metrics, "evidence_pending_deadline_remaining_seconds") == -3600
    assert value(metrics, "evidence_device_dock_overdue", device="DSJ-A8-0042") == 1

    station.connect()
    metrics.health.set(True)
    summary = ingestor.resume()
    assert summary.ok
    assert value(metrics, "evidence_recordings", state="late") == 2
    assert value(metrics, "evidence_recordings", state="overdue") == 0
    assert value(metrics, "evidence_late_archives_total") == 2
    assert value(metrics, "evidence_ingested_files_total", result="archived") == 2
    assert value(metrics, "evidence_ingested_bytes_total", result="archived") == len(
        b"first recording") + len(b"second recording")
    assert value(metrics, "evidence_ingest_duration_seconds_count") == 2
    assert value(metrics, "evidence_archive_reachable") == 1
    assert value(metrics, "evidence_pending_deadline_remaining_seconds") is None
    station.close()


def test_metrics_are_served_over_http_without_recording_ids(tmp_path: Path) -> None:
    clock = SteppedClock(T0)
    station = make_station(tmp_path, clock)
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    write_footage(tmp_path / "card", "a.mp4", b"served")
    station.connect()
    station.ingestor().ingest(Origin(tmp_path / "card"))
    server = MetricsServer("127.0.0.1:0", metrics.registry)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.stop()
        station.close()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["evidence_recordings"].type == "gauge"
    assert families["evidence_late_archives"].type == "counter"
    for family in families.values():
        for sample in family.samples:
            for label in sample.labels.values():
                assert len(label) < 64, f"{sample.name} carries an id-like label {label}"


def test_a_busy_port_does_not_stop_the_station(tmp_path: Path) -> None:
    first = MetricsServer("127.0.0.1:0", CollectorRegistry())
    first.start()
    try:
        second = MetricsServer(f"127.0.0.1:{first.port}", CollectorRegistry())
        second.start()  # logged, not raised
        assert second.port is None
        second.stop()
    finally:
        first.stop()


def test_every_metric_the_alerts_and_dashboard_use_is_exported(tmp_path: Path) -> None:
    import re

    clock = SteppedClock(T0)
    station = make_station(tmp_path, clock)
    station.devices().docked(DeviceIdentity("DSJ-A8-0042"))
    write_footage(tmp_path / "card", "a.mp4", b"pending")
    station.ingestor().ingest(Origin(tmp_path / "card"), archive_error="away (test)")
    # as `run` wires it, once an upload was measured (the forecast needs a rate)
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry(), ledger=station.ledger,
                             forecast=lambda: station.forecast(1_000_000.0))
    metrics.health.set(True)
    exported = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    station.close()
    # the API node's own: incidents coverage (served at its /metrics)
    from evidence_daemon.api.db import open_api_database
    from evidence_daemon.api.incidents import IncidentBook, IncidentCollector
    api_database = open_api_database(tmp_path / "api.db")
    exported |= {sample.name for family in IncidentCollector(IncidentBook(api_database), clock).collect()
                 for sample in family.samples}
    api_database.close()
    config_dir = Path(__file__).resolve().parents[1] / "config"
    used = set()
    for path in [config_dir / "prometheus" / "evidence-alerts.yml",
                 config_dir / "grafana" / "evidence-daemon.json"]:
        used |= set(re.findall(r"\bevidence_[a-z_]+", path.read_text(encoding="utf-8")))
    used.discard("evidence_daemon")
    assert used, "no metric names found"
    missing = used - exported
    assert not missing, f"used but not exported: {sorted(missing)}"
