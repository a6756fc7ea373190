"""A shift change: every officer docks at once, and the shipped defaults serve every docked
device at the same time (issue 14, part 1's defaults). The mounter is a fake that hands out a
prepared tree (the real mounts are tested as root in test_dock.py); the pipeline, SQLite and
the filesystem archive are real."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from evidence_daemon.config import Config, load_config
from evidence_daemon.dock.manager import DockManager
from evidence_daemon.sources.rules import DeviceInfo, DockMatch
from evidence_daemon.station import open_station

from .faultlog import FaultLog
from .helpers import write_config
from .test_dock_manager import FakeRegistry, info

DEVICES = 12  # more than the old default of 2, fewer than a collection station's 25 ports


class ShiftChangeMounter:
    """Each device's own card; ``mount`` returns only once every device is being mounted at
    the same time, so a pool that serves fewer at once breaks the barrier."""

    def __init__(self, root: Path, devices: int) -> None:
        self.root = root
        self.barrier = threading.Barrier(devices, timeout=20)
        self.mounted: list[str] = []
        self._lock = threading.Lock()

    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path:
        tree = self.root / identity
        with self._lock:
            self.mounted.append(identity)
        self.barrier.wait()
        return tree

    def unmount(self, mountpoint: Path) -> None:
        pass

    def remount_writable(self, mountpoint: Path, info: DeviceInfo) -> None:
        raise AssertionError("no wipe rule")


def test_the_default_dock_serves_every_docked_device_at_once(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    assert Config().dock.max_concurrent_devices == 0  # shipped: unlimited
    config = load_config(write_config(tmp_path, extra="[ingest]\nprobe = false\n[dock]\nsettle_s = 0"),
                         environ={})
    station = open_station(config)
    mounter = ShiftChangeMounter(tmp_path / "cards", DEVICES)
    manager = DockManager(config, station.ingestor(), FakeRegistry(), mounter, station.database,
                          station.ledger)
    for index in range(DEVICES):
        serial = f"SN{index:04d}"
        identity = f"generic-label-{serial}"
        card = tmp_path / "cards" / identity / "DCIM"
        card.mkdir(parents=True)
        for clip in range(2):
            (card / f"DSJ{index:03d}_1001_2026112508{clip:02d}00_{clip:04d}.MP4").write_bytes(
                os.urandom(20_000))
        manager.device_added(info(role="recorder", serial=serial, devnode=f"/dev/sd{index}1"))
    deadline = time.monotonic() + 60
    while manager.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs = manager.snapshot()
    manager.shutdown()
    archived_events = [json.loads(path.read_bytes()) for path in
                       (tmp_path / "archive" / "ledger").rglob("*.json")]
    archived_events = [entry for entry in archived_events if entry["event"] == "archived"]
    archived = {row["sha256"] for row in station.database.query(
        "SELECT sha256 FROM recordings WHERE archived_at IS NOT NULL")}
    station.close()
    on_cards = {hashlib.sha256(path.read_bytes()).hexdigest()
                for path in (tmp_path / "cards").rglob("*.MP4")}
    fault_log("devices docked at once", f"{DEVICES} recorders docked together (shift change), "
              "shipped defaults", injected_by=f"{DEVICES} device_added events at once; each mount "
              "held until all were mounting", files_lost=len(on_cards - archived),
              wrongly_archived=0, duplicates=len(archived_events) - len(archived),
              message=f"{sum(job['state'] == 'done' for job in jobs)} of {DEVICES} jobs done")
    assert len(jobs) == DEVICES
    # every device done (released once its files were spooled; the uploads went on), each
    # job's result its own two files (not another dock's, whose spooled files its run must
    # leave to the run that copied them)
    assert [(job["state"], job["result"]) for job in jobs] == [("done", {"spooled, uploading": 2})] * DEVICES
