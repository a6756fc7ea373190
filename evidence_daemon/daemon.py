"""``evidence-daemon run``: the long-running dock-station service.

Runs the parts ``station.build_daemon`` assembled (this module wires nothing): starts the
sources (udev, watch folders, proxy worker) whose events go to the dock manager, tells
systemd how it is doing (``READY=1``, ``STATUS=``, watchdog pings, ``STOPPING=1``) and writes
``<runtime_dir>/status.json`` for ``evidence-daemon status``; it serves the Prometheus metrics
on ``metrics.listen`` and runs the scheduled upkeep (``upkeep.jobs``). SIGTERM or SIGINT stops
it gracefully: no new file is started, files already copied are made durable and archived (or
stay safely spooled), devices are unmounted. A second signal does not cut that short; SIGKILL
does, and is recovered from like any crash.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from .config import Config
from .dock.manager import DockManager
from .durable import save_replacing
from .errors import StorageError
from .metrics.station import PipelineMetrics, StationMetrics
from .i18n import _

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


class Notifier(Protocol):
    def notify(self, state: str) -> Any: ...


class Source(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class StationLike(Protocol):
    """What the daemon asks of the station (``station.Station``)."""

    def connect(self) -> None: ...

    def remove_leftovers(self, metrics: PipelineMetrics) -> object: ...


def systemd_notifier() -> Notifier:
    """sd_notify through the ``sdnotify`` package; silent when not run by systemd."""
    import sdnotify

    notifier: Notifier = sdnotify.SystemdNotifier()
    return notifier


def watchdog_interval_s(environ: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """Half the systemd watchdog timeout, when systemd asked for pings (WatchdogSec=)."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec or (environ.get("WATCHDOG_PID") not in (None, str(os.getpid()))):
        return None
    return max(int(usec) / 2e6, 0.1)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace the status file (readers never see half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_replacing(path, json.dumps(status, indent=2, ensure_ascii=False).encode("utf-8"))


def read_status(runtime_dir: Path) -> dict[str, Any] | None:
    """The running daemon's status, or None when no daemon is running."""
    path = runtime_dir / STATUS_FILE
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = status.get("pid")
    if not isinstance(pid, int) or not Path(f"/proc/{pid}").exists():
        return None
    return status


class Daemon:
    """Runs assembled parts (``station.build_daemon`` assembles them): starts and stops the
    sources, upkeep and metrics server in order, and reports to systemd and the status file."""

    def __init__(
        self,
        config: Config,
        station: StationLike,
        manager: DockManager,
        sources: list[Source],
        *,
        notifier: Notifier | None = None,
        stop: threading.Event | None = None,
        status_interval_s: float = 0.5,
        metrics: StationMetrics,
        upkeep: Source,
        metrics_server: Source | None = None,
    ) -> None:
        self.config = config
        self.station = station
        self.manager = manager
        self.sources = sources
        self.notifier = notifier or systemd_notifier()
        self.stop = stop or manager.stop
        self.status_interval_s = status_interval_s
        self.status_path = config.dock.runtime_dir / STATUS_FILE
        self.started_at = time.time()
        self.metrics = metrics
        self.upkeep = upkeep
        self.metrics_server = metrics_server

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            if not self.stop.is_set():
                log.warning(_("%s: finishing the files in flight, then stopping"),
                            signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        archive_error = self._connect()
        self.metrics.health.set(archive_error is None)
        if self.metrics_server is not None:
            self.metrics_server.start()
        if archive_error is None:
            # Clear what an earlier run left half-written, then finish what it left spooled,
            # before the first device arrives.
            self.station.remove_leftovers(self.metrics.pipeline)
            self.manager.ingestor.resume()
        for source in self.sources:
            source.start()
        self.upkeep.start()
        self.notifier.notify("READY=1")
        log.info("evidence-daemon %s ready", self.config.station.id)
        ping_s = watchdog_interval_s()
        tick_s = min(self.status_interval_s, ping_s) if ping_s else self.status_interval_s
        try:
            while not self.stop.wait(tick_s):
                self._report()
        finally:
            self.notifier.notify("STOPPING=1")
            self.notifier.notify("STATUS=stopping: finishing files in flight")
            self.upkeep.stop()
            for source in self.sources:
                source.stop()
            self.manager.shutdown()
            self._report()
            if self.metrics_server is not None:
                self.metrics_server.stop()
            try:
                self.status_path.unlink()
            except FileNotFoundError:
                pass
        log.info("evidence-daemon stopped")
        return 0

    def _connect(self) -> str | None:
        try:
            self.station.connect()
        except StorageError as exc:
            log.error(_("archive unreachable at start; docked devices are copied to the spool and "
                        "archived when it returns: %s"), exc.message)
            return exc.message
        return None

    def _report(self) -> None:
        jobs = self.manager.snapshot()
        active = [job for job in jobs if job["finished_at"] is None]
        summary = (
            "idle" if not active
            else "; ".join(f"{job['name']} {job['state']} {job['files_done']}/{job['files_total']}"
                           for job in active)
        )
        self.notifier.notify(f"STATUS={summary}")
        self.notifier.notify("WATCHDOG=1")
        write_status(self.status_path, {
            "pid": os.getpid(), "station": self.config.station.id, "started_at": self.started_at,
            "updated_at": time.time(), "jobs": jobs,
            # measured in this process; `status` forecasts the backlog with it
            "upload_rate_bytes_per_s": self.manager.ingestor.upload_meter.rate_bytes_per_s(),
            "watch": [str(watch.path) for watch in self.config.watch],
        })
