"""``run``: the dock-station daemon, wired from the station and its sources."""

from __future__ import annotations

import argparse
import threading

from ..config import Config
from ..media.proxy import ProxyWorker
from ..station import Station, open_station
from .exit_codes import ExitCode


def cmd_run(config: Config, args: argparse.Namespace) -> ExitCode:
    # Imported here: only the daemon needs udev, watchdog and systemd notification.
    from ..daemon import Source, run_daemon
    from ..dock.manager import DockManager
    from ..metrics.station import StationMetrics
    from ..sources.mounter import Mounter
    from ..sources.udev import UdevSource
    from ..sources.watch import WatchFolders, finish

    def build_manager(station: Station, stop: threading.Event) -> DockManager:
        ingestor = station.ingestor(metrics=metrics.pipeline)
        return DockManager(config, ingestor, station.devices(), Mounter(config.dock),
                           station.database, station.ledger, finish_inbox_file=finish, stop=stop)

    def build_sources(manager: DockManager) -> list[Source]:
        sources: list[Source] = []
        if config.watch:
            sources.append(WatchFolders(config.watch, on_ready=manager.inbox_ready,
                                        skip=config.ingest.skip))
        if not args.no_udev:
            sources.append(UdevSource(manager.device_added, manager.device_removed,
                                      fs_types=[fstype for fstype, _ in config.dock.mount_commands]))
        sources.append(ProxyWorker.from_station(station))
        return sources

    station = open_station(config, connect_archive=False)
    metrics = StationMetrics(
        config, station.database, clock=station.clock, ledger=station.ledger,
        forecast=lambda: station.forecast(station.upload_meter.rate_bytes_per_s()))
    try:
        return ExitCode(run_daemon(config, station, build_sources=build_sources,
                                   build_manager=build_manager, metrics=metrics))
    finally:
        station.close()
