"""The daemon's scheduled jobs: compliance scan, upload retry with backoff, device-event flush,
spool clean-up, the fixity audit and the removal of unfinished writes left in the archive.

Each job runs on APScheduler's ``BackgroundScheduler`` with ``max_instances=1`` and
``coalesce=True``: a job never overlaps itself, and runs missed while the station was busy or
down collapse into one. The last start of each job is kept in SQLite (``upkeep_runs``), so a
restarted daemon waits out the rest of an interval instead of running everything again. Every
job is idempotent: a run cut short by a crash is simply done again.

The checkpoint job witnesses the other writers' latest checkpoints and signs one of this
station's own chain (issue 11: a removed chain end is then visible to every verifier).

Jobs never delete anything that is not proven archived, and never change an archived object.
The leftover clean-up removes only what was never an object (temp files, unfinished multipart
uploads), older than ``upkeep.leftover_age_s`` and not in flight in this process.
Retention upkeep (legal holds and extensions applied to the archive) is not scheduled yet:
nothing in the station records holds or extensions so far, so there is nothing to apply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from ..archive.base import hash_stored
from ..compliance.catalog import device_facts, recording_facts
from ..compliance.snapshot import compliance_snapshot, device_dock_states
from ..config import Config
from ..custody.chain import Event
from ..custody.checkpoints import Checkpointer
from ..clock import Clock, format_time, parse_time, utc_now
from ..errors import EvidenceError, IntegrityError, ObjectMissingError, StorageError
from ..ingest.pipeline import Ingestor
from ..metrics.station import ArchiveHealth, PipelineMetrics
from ..state.catalog import Catalog
from ..state.queue import WorkQueue
from ..i18n import _

if TYPE_CHECKING:  # upkeep is given a station by station.py; it never builds one
    from ..station import Station

log = logging.getLogger(__name__)

COMPLIANCE_SCAN = "compliance-scan"
RETRY_UPLOADS = "retry-uploads"
FLUSH_DEVICE_EVENTS = "flush-device-events"
SPOOL_CLEANUP = "spool-cleanup"
FIXITY_AUDIT = "fixity-audit"
LEFTOVER_CLEANUP = "leftover-cleanup"
CHECKPOINT = "checkpoint"


def fixity_batch_size(total: int, *, interval_s: float, period_days: float) -> int:
    """How many originals each audit run re-hashes so all are checked within the period."""
    if total <= 0:
        return 0
    runs_per_period = max(period_days * 86400.0 / interval_s, 1.0)
    return max(math.ceil(total / runs_per_period), 1)


class Backoff:
    """Exponential backoff with up to ``base_s`` of random jitter (tenacity's wait functions),
    capped at ``max_s``: stations that lost the same MinIO do not all come back at once."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._wait = wait_exponential(multiplier=base_s, max=max_s) + wait_random(0, base_s)
        self.max_s = max_s
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; returns seconds to wait before the next attempt."""
        self.failures += 1
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = self.failures
        return min(float(self._wait(state)), self.max_s)

    def succeeded(self) -> None:
        self.failures = 0


class Upkeep:
    """Owns the scheduler; ``start()``/``stop()`` like the daemon's other services."""

    def __init__(
        self,
        config: Config,
        station: Station,
        ingestor: Ingestor,
        *,
        metrics: PipelineMetrics | None = None,
        health: ArchiveHealth | None = None,
        scheduler: BaseScheduler | None = None,
        wall_clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.station = station
        self.ingestor = ingestor
        self.metrics = metrics
        self.health = health or ArchiveHealth()
        self.scheduler = scheduler or BackgroundScheduler(timezone="UTC")
        # Scheduling runs on real time; compliance decisions use the station's (injectable) clock.
        self.wall_clock = wall_clock
        self.backoff = Backoff(config.upkeep.retry_base_s, config.upkeep.retry_max_s)
        self.known_overdue: set[str] = set()  # logged once each, not every scan
        self.known_undocked: set[str] = set()
        self.devices = station.devices()
        self.actor = f"station:{config.station.id}"
        self.checkpointer: Checkpointer | None = None  # made at the first checkpoint job

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        # APScheduler logs every run at INFO; our jobs log what they find themselves.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        upkeep = self.config.upkeep
        jobs: list[tuple[str, Callable[[], Any], float, bool]] = [
            (COMPLIANCE_SCAN, self.compliance_scan, upkeep.compliance_scan_s, False),
            (RETRY_UPLOADS, self.retry_uploads, upkeep.retry_base_s, False),
            (FLUSH_DEVICE_EVENTS, self.flush_device_events, upkeep.retry_base_s, False),
            (SPOOL_CLEANUP, self.spool_cleanup, upkeep.spool_cleanup_s, True),
            (FIXITY_AUDIT, self.fixity_audit, upkeep.fixity_interval_s, True),
            (LEFTOVER_CLEANUP, self.leftover_cleanup, upkeep.leftover_cleanup_s, True),
            # at start, then at least hourly: witnesses and a checkpoint (never remembered
            # across restarts: a start is exactly when one is due)
            (CHECKPOINT, self.checkpoint, upkeep.checkpoint_s, False),
        ]
        for name, function, interval_s, remember in jobs:
            self.scheduler.add_job(
                self._run, "interval", args=(name, function), id=name, name=name,
                seconds=interval_s, next_run_time=self._first_run(name, interval_s, remember),
                max_instances=1, coalesce=True, misfire_grace_time=None, replace_existing=True,
            )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def _first_run(self, name: str, interval_s: float, remember: bool) -> datetime:
        """Now, unless this job's last start was less than an interval ago (a restart)."""
        now = self.wall_clock()
        if not remember:
            return now
        row = self.station.database.query_one(
            "SELECT started_at FROM upkeep_runs WHERE job = ?", (name,))
        if row is None:
            return now
        due = parse_time(row["started_at"]) + timedelta(seconds=interval_s)
        return max(due, now)

    def _run(self, name: str, function: Callable[[], Any]) -> None:
        started = format_time(self.wall_clock())
        self.station.database.execute(
            "INSERT INTO upkeep_runs (job, started_at) VALUES (?, ?) ON CONFLICT (job) DO UPDATE"
            " SET started_at = excluded.started_at, finished_at = NULL, result = NULL",
            (name, started))
        result = "ok"
        try:
            function()
        except EvidenceError as exc:
            result = "error"
            log.error(_("upkeep %s: %s"), name, exc.message)
        except Exception:  # a scheduler thread must not die silently; the next run tries again
            result = "error"
            log.exception(_("upkeep %s failed"), name)
        self.station.database.execute(
            "UPDATE upkeep_runs SET finished_at = ?, result = ? WHERE job = ?",
            (format_time(self.wall_clock()), result, name))
        if self.metrics is not None:
            self.metrics.job_finished(name, result)

    # -- jobs -----------------------------------------------------------------------------

    def compliance_scan(self) -> None:
        """Check the archive, and log recordings newly overdue and devices not docked."""
        try:
            self.station.store.check()
            self.health.set(True)
        except StorageError as exc:
            self.health.set(False)
            log.error(_("archive unreachable: %s"), exc.message)
        now = self.station.clock()
        snapshot = compliance_snapshot(
            recording_facts(self.station.database), now=now,
            at_risk_margin_hours=self.config.compliance.at_risk_margin_hours)
        overdue = set(snapshot.overdue)
        for sha256 in sorted(overdue - self.known_overdue):
            log.error(_("recording %s is overdue: not archived within %g h of its end"),
                      sha256[:12], self.config.compliance.deadline_hours)
        self.known_overdue = overdue
        undocked = set()
        for device in device_dock_states(device_facts(self.station.database), now=now,
                                         undocked_limit_hours=self.config.upkeep.undocked_limit_hours):
            if device.dock_overdue:
                undocked.add(device.device_id)
                if device.device_id not in self.known_undocked:
                    log.warning(_("device %s has not docked for %.1f h"), device.device_id,
                                device.seconds_since_dock / 3600)
        self.known_undocked = undocked

    def _waiting(self) -> int:
        return WorkQueue(self.station.database).count_left_by_earlier_runs()

    def retry_uploads(self) -> None:
        """Archive what waits in the spool; back off exponentially while the archive is down."""
        if self._waiting() == 0:
            self.backoff.succeeded()
            return
        try:
            self.station.connect()
        except StorageError as exc:
            self.health.set(False)
            self._back_off(exc.message)
            return
        self.health.set(True)
        summary = self.ingestor.resume()
        if summary.archive_error is not None:
            self.health.set(False)
            self._back_off(summary.archive_error)
            return
        self.backoff.succeeded()
        if summary.counts:
            log.info("retry: %s", ", ".join(f"{n} {what}" for what, n in sorted(summary.counts.items())))

    def _back_off(self, reason: str) -> None:
        delay_s = self.backoff.failed()
        log.warning(_("archive unreachable (%s); uploads retried in %.0f s (attempt %d)"),
                    reason, delay_s, self.backoff.failures)
        if self.scheduler.running:
            self.scheduler.modify_job(RETRY_UPLOADS,
                                      next_run_time=self.wall_clock() + timedelta(seconds=delay_s))

    def flush_device_events(self) -> None:
        if self.devices.pending_events():
            self.devices.flush_ledger()

    def spool_cleanup(self) -> int:
        """Remove spool copies whose recording is archived and that no source still needs."""
        spool = self.ingestor.spool
        removed = 0
        if not spool.objects.is_dir():
            return 0
        catalog, queue = Catalog(self.station.database), WorkQueue(self.station.database)
        for path in spool.objects.iterdir():
            sha256 = path.name
            # Archived first, then no source waiting: an archived recording stays archived, so
            # the answer is the one a single read at the second question would give.
            recording = catalog.get(sha256)
            if recording is None or recording.archived_at is None or queue.spooled_copies_of(sha256):
                continue
            spool.release(sha256)
            removed += 1
        if removed:
            log.info("spool clean-up: removed %d copies already archived", removed)
        return removed

    def checkpoint(self) -> None:
        """Witness the other writers' latest checkpoints, then sign one of this station's
        chain over them (stamped with ``[timestamp] url``). ``IntegrityError`` when this
        station's own chain lost its end in the archive (it then appends nothing)."""
        if self.checkpointer is None:
            self.checkpointer = self.station.checkpointer(self.metrics)
        self.checkpointer.witness_archive()
        self.checkpointer.checkpoint()

    def leftover_cleanup(self) -> int:
        """Remove unfinished writes interrupted runs left in the archive; how many."""
        return len(self.station.remove_leftovers(self.metrics, now=self.wall_clock()))

    def fixity_audit(self) -> tuple[int, int]:
        """Re-hash the least recently checked share of archived originals: (checked, failed)."""
        database = self.station.database
        catalog = Catalog(database)
        batch = fixity_batch_size(catalog.count_archived(),
                                  interval_s=self.config.upkeep.fixity_interval_s,
                                  period_days=self.config.upkeep.fixity_period_days)
        checked = failed = 0
        for recording in catalog.archived_by_fixity_age(batch):
            sha256, key = recording.sha256, recording.object_key
            try:
                found_sha256, found_size = hash_stored(self.station.store, key)
                problem = None
                if found_sha256 != sha256 or found_size != recording.size_bytes:
                    problem = (f"stored copy hashes to {found_sha256[:12]} ({found_size} bytes), "
                               f"expected {sha256[:12]} ({recording.size_bytes} bytes)")
            except ObjectMissingError:
                problem = "the archived original is missing"
            except StorageError as exc:
                self.health.set(False)
                log.warning(_("fixity audit paused, archive unreachable: %s"), exc.message)
                break
            checked += 1
            now = format_time(self.station.clock())
            database.execute(
                "INSERT INTO fixity (sha256, checked_at, ok, detail) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sha256) DO UPDATE SET checked_at = excluded.checked_at,"
                " ok = excluded.ok, detail = excluded.detail",
                (sha256, now, 0 if problem else 1, problem))
            if self.metrics is not None:
                self.metrics.fixity_checked(problem is None)
            if problem is None:
                continue
            failed += 1
            log.error(_("fixity: %s (%s): %s"), sha256[:12], key, problem)
            try:
                self.station.ledger.append(
                    Event.FIXITY_FAILED, recording=sha256, actor=self.actor,
                    details={"object_key": key, "problem": problem, "checked_at": now,
                             "archive": self.station.store.location})
            except (StorageError, IntegrityError) as exc:
                # The failure is kept locally (and alerted on); the next audit records it again.
                log.error(_("fixity: cannot record the failure in the ledger: %s"), exc.message)
        return checked, failed


__all__ = ["Backoff", "Upkeep", "fixity_batch_size"]
