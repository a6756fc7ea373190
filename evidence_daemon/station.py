"""Wiring: a configured station — archive, state, signing key, ledger and ingest pipeline —
and, for ``evidence-daemon run``, the daemon around it (sources, dock manager, upkeep, metrics).

The only place that chooses concrete adapters from the configuration and connects components
to each other; everything else gets its collaborators through its constructor. The daemon's
parts (udev, watchdog, systemd notification, APScheduler) are imported only when a daemon is
built, so the other commands do not load them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zoneinfo

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .archive.base import LEFTOVER_KINDS, ArchiveStore, Leftover, LeftoverKind
from .archive.factory import build_store
from .archive.link import UploadMeter, mbps_to_bytes_per_s
from .compliance.forecast import Forecast, forecast, upload_rate
from .compliance.rules import compliance_state
from .config import Config
from .custody.chain import Role
from .custody.checkpoints import CheckpointMetrics, Checkpointer, Stamping
from .custody.ledger import LedgerWriter
from .custody.writer_state import open_writer_state
from .clock import Clock, format_seconds, parse_optional, utc_now
from .devices.registry import DeviceRegistry
from .errors import EvidenceError, IngestError
from .ingest.backlog import read_backlog
from .ingest.outcomes import ProgressCallback
from .ingest.pipeline import IngestMetrics, Ingestor
from .ingest.priority import OrderRules
from .state.catalog import Catalog
from .state.db import Database
from .state.queue import WorkQueue
from .i18n import _

if TYPE_CHECKING:
    from .daemon import Daemon, Notifier, Source
    from .dock.manager import DockManager
    from .metrics.station import StationMetrics

log = logging.getLogger(__name__)


class LeftoverMetrics(Protocol):
    """Counts what ``Station.remove_leftovers`` removed (``metrics.PipelineMetrics``)."""

    def leftovers_cleaned(self, kind: LeftoverKind, count: int) -> None: ...


@dataclass
class Station:
    config: Config
    store: ArchiveStore
    database: Database
    ledger: LedgerWriter
    clock: Clock
    # One per station process: every ingest run's uploads feed it, metrics and status read it.
    upload_meter: UploadMeter = field(default_factory=UploadMeter)

    def ingestor(
        self,
        progress: ProgressCallback | None = None,
        metrics: IngestMetrics | None = None,
    ) -> Ingestor:
        return Ingestor(self.config, self.store, self.database, self.ledger, clock=self.clock,
                        progress=progress, officer_lookup=self.devices().officer_at,
                        metrics=metrics, upload_meter=self.upload_meter)

    def devices(self) -> DeviceRegistry:
        """The registry of docked devices and their officer assignments."""
        return DeviceRegistry(self.database, self.ledger, clock=self.clock,
                              actor=f"station:{self.config.station.id}",
                              zone=zoneinfo.ZoneInfo(self.config.station.timezone))

    def recordings(self) -> list[dict[str, Any]]:
        """The local catalog in the CLI's JSON contract (see README)."""
        now = self.clock()
        sources: dict[str, list[dict[str, Any]]] = {}
        for source in WorkQueue(self.database).with_content():
            entry = {"path": source.rel_path, "root": source.root, "device_id": source.device_id,
                     "officer_id": source.officer_id, "state": source.state.value,
                     "acquired_at": source.acquired_at}
            if source.rel_path_b64:
                entry["path_b64"] = source.rel_path_b64
            sources.setdefault(str(source.sha256), []).append(entry)
        return [{
            "id": recording.sha256,
            "sha256": recording.sha256,
            "sm3": recording.sm3,
            "size_bytes": recording.size_bytes,
            "sources": sources.get(recording.sha256, []),
            "device_id": recording.device_id,
            "officer_id": recording.officer_id,
            "recorded_start": recording.recorded_start,
            "recorded_end": recording.recorded_end,
            "time_source": recording.time_source,
            "archived_at": recording.archived_at,
            "archive_deadline": recording.archive_deadline,
            "compliance": compliance_state(
                deadline=parse_optional(recording.archive_deadline),
                archived_at=parse_optional(recording.archived_at), now=now,
                at_risk_margin_hours=self.config.compliance.at_risk_margin_hours,
            ),
            "flags": list(recording.flags),
            "flag_reasons": recording.flag_reasons,
            "media": recording.media,
            "object_key": recording.object_key,
            "verified_by": recording.verified_by,
        } for recording in Catalog(self.database).recordings()]

    def checkpointer(self, metrics: CheckpointMetrics | None = None) -> Checkpointer:
        """Signs, stamps and witnesses this station's checkpoints (``[timestamp]``)."""
        return Checkpointer(self.ledger, actor=f"station:{self.config.station.id}",
                            stamping=Stamping.from_config(self.config.timestamp),
                            metrics=metrics)

    def checkpoint(self, metrics: CheckpointMetrics | None = None) -> None:
        """Sign a checkpoint now (end of ``ingest``); a failure is logged, never raised: the
        evidence is archived either way, and the next checkpoint covers it."""
        try:
            self.checkpointer(metrics).checkpoint()
        except EvidenceError as exc:
            log.error(_("ledger %s: no checkpoint signed: %s"), self.config.station.id, exc.message)

    def connect(self) -> None:
        """Check the archive and publish (or match) this station's public key."""
        self.store.check()
        self.ledger.publish_key()

    def remove_leftovers(
        self, metrics: LeftoverMetrics | None = None, *, now: datetime | None = None
    ) -> list[Leftover]:
        """Remove unfinished writes that interrupted runs left in the archive, once older than
        ``upkeep.leftover_age_s``; never one this process has in flight (the store knows them).

        Run at start (``ingest``, ``run``) and by upkeep. Best effort: a failure is logged and
        the next run tries again; it never stops an ingest.
        """
        older_than = (now or utc_now()) - timedelta(seconds=self.config.upkeep.leftover_age_s)
        try:
            removed = self.store.remove_leftovers(older_than)
        except EvidenceError as exc:
            log.warning(_("archive %s: cannot remove what interrupted runs left: %s"),
                        self.store.location, exc.message)
            return []
        for kind in LEFTOVER_KINDS:
            found = [leftover for leftover in removed if leftover.kind == kind]
            if not found:
                continue
            started = sorted(format_seconds(leftover.started_at) for leftover in found)
            log.warning(_("archive %s: removed %d %s left by interrupted runs (begun %s to %s)"),
                        self.store.location, len(found), _LEFTOVER_NAMES[kind], started[0],
                        started[-1])
            if metrics is not None:
                metrics.leftovers_cleaned(kind, len(found))
        return removed

    def forecast(self, measured_rate_bytes_per_s: float | None) -> Forecast:
        """The spool's backlog and whether each recording in it will make its deadline, at
        the measured upload rate (the running daemon's; ``upload_meter`` in that process),
        never above ``archive.max_upload_mbps``."""
        cap = mbps_to_bytes_per_s(self.config.archive.max_upload_mbps) or None
        waiting = read_backlog(self.database, OrderRules.from_config(self.config))
        rate, source = upload_rate(measured_rate_bytes_per_s, cap)
        return forecast(waiting, now=self.clock(), rate_bytes_per_s=rate, rate_source=source)

    def close(self) -> None:
        self.database.close()


_LEFTOVER_NAMES: dict[LeftoverKind, str] = {
    "staging": "unfinished temp file(s) in .staging/",
    "multipart": "unfinished multipart upload(s)",
}


def open_station(config: Config, *, clock: Clock = utc_now, connect_archive: bool = True) -> Station:
    """Open state, key and archive. With ``connect_archive`` the archive is checked and the
    station's public key published (first run) or matched against the archive's copy.

    A station without a key file whose key the archive already holds (its state was lost) is
    refused before anything is created."""
    store = build_store(config)
    database, _, ledger = open_writer_state(
        store, section="station", what="station", writer=config.station.id, role=Role.STATION,
        key_path=config.key_path, state_dir=config.station.state_dir,
        open_database=lambda: Database(config.database_path), clock=clock)
    station = Station(config, store, database, ledger, clock)
    if connect_archive:
        station.connect()
    return station


class IngestLock:
    """One ingest at a time per station: a second one would fight over the spool."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "ingest.lock"
        self._handle: TextIO | None = None

    def __enter__(self) -> IngestLock:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise IngestError(
                _("another ingest is running for this station ({holder}); wait for it to finish").format(
                    holder=holder)
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# -- the daemon (``evidence-daemon run``) ---------------------------------------------------------


def run_daemon(config: Config, *, udev: bool = True) -> int:
    """Open the station, hold its ingest lock and run the daemon until signalled."""
    from .metrics.station import StationMetrics

    station = open_station(config, connect_archive=False)
    try:
        metrics = StationMetrics(
            config, station.database, clock=station.clock, ledger=station.ledger,
            forecast=lambda: station.forecast(station.upload_meter.rate_bytes_per_s()))
        stop = threading.Event()
        with IngestLock(config.station.state_dir):
            manager = build_dock_manager(station, metrics, stop)
            daemon = build_daemon(station, manager, build_sources(station, manager, udev=udev),
                                  metrics=metrics, stop=stop)
            daemon.install_signal_handlers()
            return daemon.run()
    finally:
        station.close()


def build_dock_manager(station: Station, metrics: StationMetrics,
                       stop: threading.Event) -> DockManager:
    """The dock manager over the station's ingest pipeline, registry and the real mounter."""
    from .dock.manager import DockManager
    from .sources.mounter import Mounter

    config = station.config
    return DockManager(config, station.ingestor(metrics=metrics.pipeline), station.devices(),
                       Mounter(config.dock), station.database, station.ledger, stop=stop)


def build_sources(station: Station, manager: DockManager, *, udev: bool = True) -> list[Source]:
    """The inbox watcher and the udev monitor, subscribed to the manager's events, and the
    proxy worker: what the daemon starts and stops."""
    from .media.proxy import ProxyWorker
    from .sources.udev import UdevSource
    from .sources.watch import WatchFolders

    config = station.config
    sources: list[Source] = []
    if config.watch:
        sources.append(WatchFolders(config.watch, on_ready=manager.inbox_ready,
                                    skip=config.ingest.skip))
    if udev:
        sources.append(UdevSource(manager.device_added, manager.device_removed,
                                  fs_types=[fstype for fstype, _ in config.dock.mount_commands]))
    sources.append(ProxyWorker.from_station(station))
    return sources


def build_daemon(
    station: Station,
    manager: DockManager,
    sources: list[Source],
    *,
    metrics: StationMetrics,
    stop: threading.Event,
    notifier: Notifier | None = None,
) -> Daemon:
    """The daemon with its upkeep jobs and, when ``metrics.listen`` is set, its metrics
    server; the metrics watch the manager's jobs."""
    from .daemon import Daemon
    from .metrics.server import MetricsServer
    from .upkeep.jobs import Upkeep

    config = station.config
    metrics.watch_jobs(manager.snapshot)
    upkeep = Upkeep(config, station, manager.ingestor, metrics=metrics.pipeline,
                    health=metrics.health)
    server = (MetricsServer(config.metrics.listen, metrics.registry)
              if config.metrics.listen else None)
    return Daemon(config, station, manager, sources, metrics=metrics, upkeep=upkeep,
                  metrics_server=server, notifier=notifier, stop=stop)
