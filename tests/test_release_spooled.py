"""A docked device is released once its files are durable in the spool (issue 14): its job
ends (unmounted, done) while its uploads go on in the station's one upload stage, earliest
deadline first across devices; a crash after the release loses nothing. Real SQLite, spool,
filesystem archive and ledger; the mounter hands out prepared trees (real mounts: test_dock.py
as root)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive.base import ArchiveStore, SetAside, StoredObject
from evidence_daemon.config import DockRule, load_config
from evidence_daemon.dock.manager import DockManager
from evidence_daemon.sources.rules import DeviceInfo, DockMatch
from evidence_daemon.station import open_station

from .faultlog import FaultLog
from .helpers import run_cli, run_cli_process, write_config
from .test_dock_manager import FakeRegistry, info

REPO = Path(__file__).resolve().parent.parent


class GatedArchive:
    """The filesystem archive behind a link that carries nothing until ``gate`` opens; the
    order originals arrive in is kept."""

    def __init__(self, inner: ArchiveStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.order: list[str] = []

    def put_original(self, key: str, source: Path, *, sha256: str, size_bytes: int,
                     metadata: Mapping[str, str], replacing: SetAside | None = None) -> StoredObject:
        assert self.gate.wait(30)
        self.order.append(sha256)
        return self.inner.put_original(key, source, sha256=sha256, size_bytes=size_bytes,
                                       metadata=metadata, replacing=replacing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TreeMounter:
    """Each device identity 'mounts' as its own prepared tree; records unmounts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.unmounted: list[str] = []
        self.writable: list[Path] = []

    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path:
        return self.root / identity

    def unmount(self, mountpoint: Path) -> None:
        self.unmounted.append(mountpoint.name)

    def remount_writable(self, mountpoint: Path, info: DeviceInfo) -> None:
        self.writable.append(mountpoint)


def make_card(root: Path, identity: str, names: list[str]) -> None:
    for name in names:
        path = root / identity / "DCIM" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{identity} {name} ".encode() * 2000)


def wait_for(condition: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def job_state(manager: DockManager, name: str) -> str | None:
    return next((job["state"] for job in manager.snapshot() if job["name"] == name), None)


def test_a_device_is_released_once_spooled_and_uploads_go_on_deadline_first_across_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path, extra="[ingest]\nprobe = false\n[media]\nproxy = false\n"
                               "[dock]\nsettle_s = 0\n")
    config = load_config(config_path, environ={}, overrides={"archive.upload_workers": "1"})
    station = open_station(config)
    gated = GatedArchive(station.store)
    station.store = gated
    cards = tmp_path / "cards"
    today = ["DSJ001_1001_20261125090000_0001.MP4", "DSJ001_1001_20261125100000_0002.MP4"]
    yesterday = ["DSJ002_1002_20261124090000_0001.MP4", "DSJ002_1002_20261124100000_0002.MP4"]
    make_card(cards, "generic-label-SNA", today)
    make_card(cards, "generic-label-SNB", yesterday)
    mounter = TreeMounter(cards)
    manager = DockManager(config, station.ingestor(), FakeRegistry(), mounter, station.database,
                          station.ledger)

    # The link carries nothing: still, each device is released once its files are spooled.
    manager.device_added(info(role="recorder", serial="SNA", devnode="/dev/sda1"))
    wait_for(lambda: job_state(manager, "generic-label-SNA") == "done")
    manager.device_added(info(role="recorder", serial="SNB", devnode="/dev/sdb1"))
    wait_for(lambda: job_state(manager, "generic-label-SNB") == "done")
    assert mounter.unmounted == ["generic-label-SNA", "generic-label-SNB"]
    jobs = {job["name"]: job for job in manager.snapshot()}
    assert {name: job["result"] for name, job in jobs.items()} == {
        "generic-label-SNA": {"spooled, uploading": 2}, "generic-label-SNB": {"spooled, uploading": 2}}
    assert station.ingestor().queue.counts_by_state() == {"spooled": 4}
    assert gated.order == [] and manager.busy  # uploads still under way
    # `status` shows what waits for the archive
    code, out, err = run_cli(capsys, "--config", str(config_path), "status", "--json")
    assert code == 0, err
    assert json.loads(out)["backlog"]["recordings"] == 4

    gated.gate.set()
    wait_for(lambda: not manager.busy)
    manager.shutdown()
    names = {row["sha256"]: row["rel_path"] for row in station.database.query(
        "SELECT sha256, rel_path FROM sources")}
    order = [names[sha256].split("/")[-1] for sha256 in gated.order]
    counts = station.ingestor().queue.counts_by_state()
    station.close()
    assert counts == {"archived": 4}
    # The first of today's was already on its way when yesterday's card was released; then
    # yesterday's go first, whichever device they came from.
    assert order == [today[0], *yesterday, today[1]]
    assert run_cli_process("--config", str(config_path), "verify").returncode == 0


def test_a_device_whose_rule_wipes_waits_until_every_file_is_archived(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, extra="[ingest]\nprobe = false\n[media]\nproxy = false\n"
                                      "[dock]\nsettle_s = 0\n"), environ={})
    config = config.model_copy(update={"dock": config.dock.model_copy(update={"rules": (
        DockRule(model="cam", label_pattern="BODY.*", wipe=True),)})})
    station = open_station(config)
    make_card(tmp_path / "cards", "cam-SN0042", ["DSJ001_1001_20261125090000_0001.MP4"])
    mounter = TreeMounter(tmp_path / "cards")
    manager = DockManager(config, station.ingestor(), FakeRegistry(), mounter, station.database,
                          station.ledger)
    manager.device_added(info())
    wait_for(lambda: not manager.busy)
    [job] = manager.snapshot()
    manager.shutdown()
    station.close()
    assert job["state"] == "done" and job["result"] == {"archived": 1, "wiped": 1, "kept on device": 0}, job


CRASHING_STATION = """
import sys, time
from pathlib import Path
from evidence_daemon.config import load_config
from evidence_daemon.dock.manager import DockManager
from evidence_daemon.station import open_station
from tests.test_dock_manager import FakeRegistry, info
from tests.test_release_spooled import TreeMounter

config = load_config(Path(sys.argv[1]), environ={})
station = open_station(config)
manager = DockManager(config, station.ingestor(), FakeRegistry(), TreeMounter(Path(sys.argv[2])),
                      station.database, station.ledger)
manager.device_added(info(role="recorder", serial="SNC", devnode="/dev/sdc1"))
time.sleep(60)  # the failpoint dock.released kills this process long before
sys.exit(3)
"""


def test_a_crash_after_the_release_and_before_the_uploads_loses_nothing(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """SIGKILL right after the device's job ended (failpoint dock.released) while its uploads
    crawl over a 0.1 Mbit/s link: the next start archives every file from the spool."""
    config_path = write_config(tmp_path, extra="[ingest]\nprobe = false\n[media]\nproxy = false\n"
                               "[dock]\nsettle_s = 0\n")
    text = config_path.read_text().replace("[archive]\n", "[archive]\nmax_upload_mbps = 0.1\n", 1)
    config_path.write_text(text)
    names = ["DSJ003_1003_20261125090000_0001.MP4", "DSJ003_1003_20261125100000_0002.MP4",
             "DSJ003_1003_20261125110000_0003.MP4"]
    make_card(tmp_path / "cards", "generic-label-SNC", names)
    on_card = {path.name: path.read_bytes() for path in (tmp_path / "cards").rglob("*.MP4")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}
    env.update(EVIDENCE_FAILPOINTS="dock.released", PYTHONPATH=str(REPO))
    crashed = subprocess.run([sys.executable, "-c", CRASHING_STATION, str(config_path),
                              str(tmp_path / "cards")], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

    config = load_config(config_path, environ={}, overrides={"archive.max_upload_mbps": "0"})
    station = open_station(config)
    before = station.ingestor().queue.counts_by_state()
    summary = station.ingestor().resume()
    after = station.ingestor().queue.counts_by_state()
    archived = {row["sha256"] for row in station.database.query(
        "SELECT sha256 FROM recordings WHERE archived_at IS NOT NULL")}
    station.close()
    verify = run_cli_process("--config", str(config_path), "verify")
    lost = sum(1 for data in on_card.values() if hashlib.sha256(data).hexdigest() not in archived)
    fault_log("kill -9 after a device's release", "SIGKILL after the device was released, "
              "before its uploads (0.1 Mbit/s link)",
              injected_by="EVIDENCE_FAILPOINTS=dock.released; restart: Ingestor.resume",
              files_lost=lost, wrongly_archived=0, duplicates=0, exit_code=verify.returncode,
              message=f"at the kill: {before}; after the restart: {after}")
    assert before.get("spooled", 0) >= 2, before  # the release came before (most) uploads
    assert summary.ok and after == {"archived": 3}, (summary, after)
    assert lost == 0 and verify.returncode == 0, verify.stdout + verify.stderr


def test_shutdown_finishes_the_upload_in_flight_and_leaves_the_rest_spooled_for_the_next_start(
    tmp_path: Path
) -> None:
    config_path = write_config(tmp_path, extra="[ingest]\nprobe = false\n[media]\nproxy = false\n"
                               "[dock]\nsettle_s = 0\n")
    config = load_config(config_path, environ={}, overrides={"archive.upload_workers": "1"})
    station = open_station(config)
    gated = GatedArchive(station.store)
    station.store = gated
    make_card(tmp_path / "cards", "generic-label-SNA",
              ["DSJ001_1001_20261125090000_0001.MP4", "DSJ001_1001_20261125100000_0002.MP4"])
    ingestor = station.ingestor()
    manager = DockManager(config, ingestor, FakeRegistry(), TreeMounter(tmp_path / "cards"),
                          station.database, station.ledger)
    manager.device_added(info(role="recorder", serial="SNA", devnode="/dev/sda1"))
    wait_for(lambda: job_state(manager, "generic-label-SNA") == "done")
    stopping = threading.Thread(target=manager.shutdown)
    stopping.start()
    time.sleep(0.3)  # shutdown has begun: the stage takes nothing new
    gated.gate.set()  # the upload in flight completes
    stopping.join(30)
    assert not stopping.is_alive()
    assert ingestor.queue.counts_by_state() == {"archived": 1, "spooled": 1}
    assert ingestor.uploading == 0
    summary = station.ingestor().resume()  # the next start
    counts = station.ingestor().queue.counts_by_state()
    station.close()
    assert summary.ok and counts == {"archived": 2}
