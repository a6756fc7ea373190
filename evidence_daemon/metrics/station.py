"""The station's Prometheus metrics: event counters fed by the pipeline and the upkeep jobs,
and gauges read from SQLite at scrape time by a custom collector.

Every metric lives in one injectable ``CollectorRegistry`` (a fresh one per test). Labels are
bounded: compliance and queue states, results, job names, and device ids (one per registered
device; the progress gauges only for devices docked now) — never a recording id. This module
only observes; it never changes state.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..archive.base import LEFTOVER_KINDS, LeftoverKind
from ..compliance.catalog import device_facts, fixity_failed_count, queue_depth, recording_facts
from ..compliance.forecast import Forecast
from ..compliance.rules import STATES
from ..compliance.snapshot import compliance_snapshot, device_dock_states
from ..config import Config
from ..custody.ledger import LedgerWriter
from ..clock import Clock
from .ledger import CheckpointCounters, tail_missing_metric
from ..state import transitions as st
from ..state.db import Database
from ..i18n import _

log = logging.getLogger(__name__)

INGEST_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ArchiveHealth:
    """Whether the archive answered the last time anyone asked (None: not asked yet)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reachable: bool | None = None

    def set(self, reachable: bool) -> None:
        with self._lock:
            self._reachable = reachable

    @property
    def reachable(self) -> bool | None:
        with self._lock:
            return self._reachable


class PipelineMetrics:
    """Counters and histograms for events; implements ``ingest.pipeline.IngestMetrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.files = Counter("evidence_ingested_files", "Source files that reached a final "
                             "state, by result", ["result"], registry=registry)
        self.bytes = Counter("evidence_ingested_bytes", "Bytes of source files that reached a "
                             "final state, by result", ["result"], registry=registry)
        self.upload_failures = Counter("evidence_upload_failures", "Upload attempts that failed "
                                       "because the archive was unreachable", registry=registry)
        self.late_archives = Counter("evidence_late_archives", "Recordings archived after their "
                                     "24-hour deadline", registry=registry)
        self.archived = Counter("evidence_archived_recordings", "Recordings archived (original "
                                "stored and verified)", registry=registry)
        self.ingest_duration = Histogram("evidence_ingest_duration_seconds", "Time to store, "
                                         "verify and record one original in the archive",
                                         buckets=INGEST_BUCKETS_S, registry=registry)
        self.transcode_duration = Histogram("evidence_transcode_duration_seconds", "Time to make "
                                            "one viewing copy (proxy) with ffmpeg",
                                            buckets=INGEST_BUCKETS_S, registry=registry)
        self.fixity_checks = Counter("evidence_fixity_checks", "Archived originals re-hashed "
                                     "by the fixity audit", registry=registry)
        self.fixity_failures = Counter("evidence_fixity_failures", "Fixity checks that found an "
                                       "archived original missing or not matching its hash",
                                       registry=registry)
        self.job_runs = Counter("evidence_upkeep_job_runs", "Scheduled upkeep job runs, by job "
                                "and result", ["job", "result"], registry=registry)
        self.leftovers = Counter("evidence_leftovers_cleaned", "Unfinished writes left in the "
                                 "archive by interrupted runs and removed, by kind: staging (temp "
                                 "files) or multipart (S3 uploads)", ["kind"], registry=registry)
        self.checkpoints = CheckpointCounters(registry)
        for result in (st.ARCHIVED, st.DUPLICATE, st.FAILED, st.SKIPPED):
            self.files.labels(result)
            self.bytes.labels(result)
        for kind in LEFTOVER_KINDS:
            self.leftovers.labels(kind)

    def file_finished(self, result: str, size_bytes: int) -> None:
        self.files.labels(result).inc()
        self.bytes.labels(result).inc(size_bytes)

    def upload_failed(self) -> None:
        self.upload_failures.inc()

    def recording_archived(self, *, duration_s: float, late: bool) -> None:
        self.archived.inc()
        self.ingest_duration.observe(duration_s)
        if late:
            self.late_archives.inc()

    def transcode_finished(self, duration_s: float) -> None:
        """For the proxy worker (media/proxy.py) once it is given this object."""
        self.transcode_duration.observe(duration_s)

    def fixity_checked(self, ok: bool) -> None:
        self.fixity_checks.inc()
        if not ok:
            self.fixity_failures.inc()

    def job_finished(self, job: str, result: str) -> None:
        self.job_runs.labels(job, result).inc()

    def leftovers_cleaned(self, kind: LeftoverKind, count: int) -> None:
        self.leftovers.labels(kind).inc(count)

    def checkpoint_signed(self) -> None:
        self.checkpoints.checkpoint_signed()

    def timestamp_failed(self) -> None:
        self.checkpoints.timestamp_failed()


DiskUsage = Callable[[Path], tuple[int, int]]  # path -> (free bytes, total bytes)
# The spool's backlog and its deadline forecast (``Station.forecast`` at the measured rate)
ForecastSource = Callable[[], Forecast]
# The dock manager's jobs as ``status`` shows them (``DockManager.snapshot``)
JobsSource = Callable[[], list[dict[str, Any]]]


def disk_usage(path: Path) -> tuple[int, int]:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize


class StationCollector(Collector):
    """Gauges computed from SQLite and the clock each time Prometheus scrapes."""

    def __init__(
        self,
        config: Config,
        database: Database,
        *,
        clock: Clock,
        health: ArchiveHealth,
        disk: DiskUsage = disk_usage,
        ledger: LedgerWriter | None = None,
        forecast: ForecastSource | None = None,
        jobs: JobsSource | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.clock = clock
        self.health = health
        self.disk = disk
        self.ledger = ledger
        self.forecast = forecast
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        snapshot = compliance_snapshot(
            recording_facts(self.database), now=now,
            at_risk_margin_hours=self.config.compliance.at_risk_margin_hours,
        )
        by_state = GaugeMetricFamily("evidence_recordings", "Recordings in the local catalog by "
                                     "24-hour compliance state", labels=["state"])
        for state in STATES:
            by_state.add_metric([state], snapshot.counts[state])
        yield by_state
        yield GaugeMetricFamily(
            "evidence_recordings_time_implausible", "Recordings in the local catalog whose "
            "recorder clock was not believed (reset or far ahead; deadline counted from when the "
            "station first saw them)", value=snapshot.time_implausible)
        yield GaugeMetricFamily(
            "evidence_oldest_pending_age_seconds", "Age of the oldest recording not yet archived, "
            "since it ended (0 when none waits)", value=snapshot.oldest_pending_age_s or 0.0)
        if snapshot.min_deadline_remaining_s is not None:
            # Absent, rather than a made-up number, when nothing pending has a deadline.
            yield GaugeMetricFamily(
                "evidence_pending_deadline_remaining_seconds", "Smallest time left before the "
                "deadline of a recording not yet archived (negative: overdue)",
                value=snapshot.min_deadline_remaining_s)
        since_dock = GaugeMetricFamily("evidence_device_last_dock_age_seconds", "Seconds since an "
                                       "in-service device last docked (since registration if "
                                       "never)", labels=["device"])
        dock_overdue = GaugeMetricFamily("evidence_device_dock_overdue", "1 when an in-service "
                                         "device has not docked within upkeep.undocked_limit_hours",
                                         labels=["device"])
        for device in device_dock_states(device_facts(self.database), now=now,
                                         undocked_limit_hours=self.config.upkeep.undocked_limit_hours):
            since_dock.add_metric([device.device_id], device.seconds_since_dock)
            dock_overdue.add_metric([device.device_id], 1.0 if device.dock_overdue else 0.0)
        yield since_dock
        yield dock_overdue
        depth = queue_depth(self.database)
        queue = GaugeMetricFamily("evidence_queue_sources", "Source files in the work queue by "
                                  "state", labels=["state"])
        for state in st.STATES:
            queue.add_metric([state], depth.get(state, 0))
        yield queue
        yield GaugeMetricFamily("evidence_fixity_failed_recordings", "Archived recordings whose "
                                "latest fixity check failed", value=fixity_failed_count(self.database))
        if self.ledger is not None:
            yield tail_missing_metric(self.ledger)
        reachable = self.health.reachable
        if reachable is not None:
            yield GaugeMetricFamily("evidence_archive_reachable", "1 when the archive answered the "
                                    "last check, 0 when it did not", value=1.0 if reachable else 0.0)
        yield from self._backlog()
        yield from self._devices_docked()
        spool = self.config.spool_dir
        try:
            free_bytes, total_bytes = self.disk(spool if spool.exists() else spool.parent)
        except OSError as exc:
            log.warning(_("cannot measure the spool disk %s: %s"), spool, exc.strerror)
        else:
            yield GaugeMetricFamily("evidence_spool_free_bytes", "Free bytes on the spool's "
                                    "filesystem", value=free_bytes)
            yield GaugeMetricFamily("evidence_spool_size_bytes", "Size of the spool's filesystem",
                                    value=total_bytes)


    def _backlog(self) -> Iterator[Metric]:
        if self.forecast is None:
            return
        outlook = self.forecast()
        yield GaugeMetricFamily("evidence_backlog_recordings", "Recordings waiting in the spool "
                                "for their upload", value=outlook.recordings)
        yield GaugeMetricFamily("evidence_backlog_bytes", "Bytes of the recordings waiting in "
                                "the spool for their upload", value=outlook.size_bytes)
        cap_mbps = self.config.archive.max_upload_mbps
        if cap_mbps > 0:
            yield GaugeMetricFamily("evidence_upload_rate_limit_bytes_per_second", "The "
                                    "configured cap on the station's upload rate "
                                    "(archive.max_upload_mbps)", value=cap_mbps * 125_000)
        if outlook.rate_bytes_per_s is None or outlook.missed_recordings is None:
            # Absent, not zero, while nothing says how fast the link is: no forecast.
            return
        yield GaugeMetricFamily("evidence_upload_rate_bytes_per_second", "Upload rate the "
                                "forecast assumes: measured over the latest uploads (bytes per "
                                "second with an upload running), never above the cap",
                                value=outlook.rate_bytes_per_s)
        yield GaugeMetricFamily("evidence_forecast_drain_seconds", "Seconds until the whole "
                                "backlog is archived at that rate", value=outlook.drain_s or 0.0)
        yield GaugeMetricFamily("evidence_forecast_missed_recordings", "Recordings waiting in "
                                "the spool, not yet overdue, that would be archived after their "
                                "deadline at that rate (earliest deadline first)",
                                value=outlook.missed_recordings)
        yield GaugeMetricFamily("evidence_forecast_missed_bytes", "Bytes of the recordings "
                                "forecast to miss their deadline", value=outlook.missed_bytes or 0)

    def _devices_docked(self) -> Iterator[Metric]:
        """Progress of every device (or inbox batch) being served now; a finished job's series
        disappear with it, so the label set stays the devices docked at this moment."""
        if self.jobs is None:
            return
        active = [job for job in self.jobs() if job["finished_at"] is None]
        gauges = {
            field: GaugeMetricFamily(f"evidence_device_{field}", help_text, labels=["device", "kind"])
            for field, help_text in (
                ("files_done", "Files of a docked device copied so far in this dock"),
                ("files_total", "Files found on a docked device"),
                ("bytes_done", "Bytes of a docked device copied so far in this dock"),
                ("bytes_total", "Bytes found on a docked device"),
            )
        }
        rate = GaugeMetricFamily("evidence_device_copy_rate_bytes_per_second", "Average copy "
                                 "rate of a docked device since it was docked",
                                 labels=["device", "kind"])
        for job in active:
            labels = [str(job["name"]), str(job["kind"])]
            for field, gauge in gauges.items():
                gauge.add_metric(labels, float(job[field]))
            rate.add_metric(labels, float(job["rate_bytes_per_s"]))
        yield GaugeMetricFamily("evidence_devices_docked", "Devices and inbox batches being "
                                "served now", value=len(active))
        yield from gauges.values()
        yield rate


class StationMetrics:
    """Everything the station exports, in one registry (fresh by default)."""

    def __init__(
        self,
        config: Config,
        database: Database,
        *,
        clock: Clock,
        registry: CollectorRegistry | None = None,
        health: ArchiveHealth | None = None,
        disk: DiskUsage = disk_usage,
        ledger: LedgerWriter | None = None,
        forecast: ForecastSource | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.health = health or ArchiveHealth()
        self.pipeline = PipelineMetrics(self.registry)
        self.collector = StationCollector(config, database, clock=clock, health=self.health,
                                          disk=disk, ledger=ledger, forecast=forecast)
        self.registry.register(self.collector)

    def watch_jobs(self, jobs: JobsSource) -> None:
        """Export the progress of every docked device (the daemon's dock manager)."""
        self.collector.jobs = jobs
