"""Settling by readiness (issue 14): a docked device is mounted as soon as its node opens and
reads, with ``dock.settle_s`` only the upper bound. Real files stand in for device nodes (the
real udev path is tested as root in test_dock.py)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from evidence_daemon.config import load_config
from evidence_daemon.dock.manager import DockManager
from evidence_daemon.sources.readiness import probe_device, wait_until_ready
from evidence_daemon.station import open_station

from .helpers import write_config
from .test_dock_manager import FakeMounter, FakeRegistry, card, finish, info


def node(tmp_path: Path, name: str = "sdz1") -> Path:
    """A stand-in for a device node: a file with a boot sector's worth of bytes."""
    path = tmp_path / name
    path.write_bytes(b"\xeb\x58\x90MSDOS5.0" + bytes(502))
    return path


def test_a_readable_node_is_ready_at_once(tmp_path: Path) -> None:
    device = replace(info(), devnode=str(node(tmp_path)))
    assert probe_device(device) is None
    readiness = wait_until_ready(device, 5.0, threading.Event())
    assert readiness.ready and readiness.waited_s < 0.5


def test_a_node_that_appears_late_is_ready_when_it_appears_not_at_the_limit(tmp_path: Path) -> None:
    device = replace(info(), devnode=str(tmp_path / "late"))
    assert probe_device(device) is not None and "does not open" in (probe_device(device) or "")
    threading.Timer(0.3, node, (tmp_path, "late")).start()
    readiness = wait_until_ready(device, 5.0, threading.Event(), poll_s=0.02)
    assert readiness.ready and 0.25 <= readiness.waited_s < 1.5, readiness


def test_waiting_ends_at_the_limit_or_when_stopping(tmp_path: Path) -> None:
    device = replace(info(), devnode=str(tmp_path / "never"))
    readiness = wait_until_ready(device, 0.3, threading.Event(), poll_s=0.05)
    assert not readiness.ready and 0.3 <= readiness.waited_s < 1.0
    assert "never" in readiness.reason
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not wait_until_ready(device, 30.0, stop).ready
    assert time.monotonic() - started < 2.0
    assert not wait_until_ready(device, 0.0, threading.Event()).ready  # 0: one look only


def test_no_filesystem_yet_is_not_ready_and_mtp_or_no_rights_cannot_be_judged(tmp_path: Path) -> None:
    assert probe_device(replace(info(), devnode=str(node(tmp_path)), fs_type="")) is not None
    assert probe_device(replace(info(), devnode="", fs_type="mtp", subsystem="usb")) is None
    if os.geteuid() != 0:  # root opens anything: the refusal cannot be made as root
        locked = node(tmp_path, "locked")
        locked.chmod(0)
        assert probe_device(replace(info(), devnode=str(locked))) is None


def test_the_dock_mounts_a_ready_device_without_waiting_settle_s(tmp_path: Path) -> None:
    """dock.settle_s = 10: the fixed wait it used to be would take 10 s before the mount."""
    config = load_config(write_config(tmp_path, extra="[ingest]\nprobe = false\n[dock]\nsettle_s = 10\n"),
                         environ={})
    station = open_station(config)
    mounter = FakeMounter(card(tmp_path))
    manager = DockManager(config, station.ingestor(), FakeRegistry(), mounter, station.database,
                          station.ledger)
    started = time.monotonic()
    manager.device_added(replace(info(role="recorder"), devnode=str(node(tmp_path))))
    finish(manager)
    elapsed_s = time.monotonic() - started
    [job] = manager.snapshot()
    manager.shutdown()
    station.close()
    assert job["state"] == "done" and job["result"] == {"spooled, uploading": 3}, job
    assert elapsed_s < 5.0, elapsed_s
