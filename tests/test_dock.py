"""Dock and walk away: the running daemon sees a real uevent, mounts the card read-only, archives it.

Real stack: Debian's systemd-udevd, loop-attached FAT32 / ext4 card images, FUSE (fusefat) and
kernel mounts, the daemon as its own process. Root only (CI runs as root).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .dock_fixtures import (
    DaemonProcess,
    LoopDevices,
    make_card_image,
    mounts_under,
    require_root,
    require_tools,
    status,
)
from .faultcheck import hashes_on_card, measure
from .faultlog import FaultLog
from .helpers import recordings_of as recordings
from .helpers import run_cli_process, wait_for, write_config

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def dock(tmp_path: Path, udevd: None, loop_devices: LoopDevices) -> Iterator[tuple[Path, DaemonProcess, LoopDevices]]:
    require_root()
    require_tools("fusefat", "mkfs.vfat", "mcopy")
    runtime_dir = loop_devices.runtime_dir
    config = write_config(tmp_path, station_id="dock-1", extra=f"""
[ingest]
probe = false

[dock]
runtime_dir = "{runtime_dir}"
settle_s = 0.2

[[dock.rules]]
role = "recorder"
model = "wipe-test"
label_pattern = "WIPECAM.*"
wipe = true
""")
    daemon = DaemonProcess(config, runtime_dir)
    daemon.start()
    try:
        yield config, daemon, loop_devices
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()


def card_files(prefix: str, count: int, size_bytes: int) -> dict[str, bytes]:
    return {
        f"DCIM/100MEDIA/{prefix}_10086_2026112508{index:02d}00_{index:04d}.MP4":
            os.urandom(size_bytes) for index in range(count)
    }


def test_a_docked_card_is_archived_with_no_command(
    tmp_path: Path, dock: tuple[Path, DaemonProcess, LoopDevices]
) -> None:
    config, daemon, loops = dock
    files = card_files("DSJ001", 3, 200_000)
    image = make_card_image(tmp_path / "images", "BODYCAM1", files)
    loops.attach(image)
    wait_for(lambda: len(recordings(config)) == 3, what="3 recordings archived", timeout_s=90)
    listed = recordings(config)
    assert all(r["archived_at"] for r in listed)
    assert sorted(s["path"] for r in listed for s in r["sources"]) == sorted(files)
    device_ids = {s["device_id"] for r in listed for s in r["sources"]}
    assert len(device_ids) == 1 and next(iter(device_ids)).startswith("generic-label-")
    # the volume-label file fusefat invents is not evidence
    assert not any(s["path"].upper() == "BODYCAM1" for r in listed for s in r["sources"])
    wait_for(lambda: not mounts_under(daemon.runtime_dir), what="the card to be unmounted")
    devices = run_cli_process("--config", str(config), "devices", "list", "--json")
    assert devices.returncode == 0 and next(iter(device_ids)) in devices.stdout
    assert daemon.stop() == 0, daemon.output()
    assert run_cli_process("--config", str(config), "verify").returncode == 0


def test_two_cards_docked_at_once(tmp_path: Path, dock: tuple[Path, DaemonProcess, LoopDevices]) -> None:
    config, daemon, loops = dock
    first = make_card_image(tmp_path / "images", "BODYCAM2", card_files("DSJ002", 2, 300_000))
    second = make_card_image(tmp_path / "images", "BODYCAM3", card_files("DSJ003", 2, 300_000))
    loops.attach(first)
    loops.attach(second)
    wait_for(lambda: len(recordings(config)) == 4, what="both cards archived", timeout_s=90)
    devices = {s["device_id"] for r in recordings(config) for s in r["sources"]}
    assert len(devices) == 2
    assert daemon.stop() == 0, daemon.output()


def test_a_card_pulled_mid_copy_is_finished_at_the_next_dock(
    tmp_path: Path, dock: tuple[Path, DaemonProcess, LoopDevices], fault_log: FaultLog
) -> None:
    config, daemon, loops = dock
    files = card_files("DSJ004", 12, 6_000_000)
    image = make_card_image(tmp_path / "images", "BODYCAM4", files, size_mib=128)
    sources = hashes_on_card(image, files)
    devnode = loops.attach(image)
    incoming = tmp_path / "state" / "spool" / "incoming"
    seen: set[str] = set()

    def second_file_copying() -> bool:
        try:
            seen.update(os.listdir(incoming))
        except FileNotFoundError:
            pass
        return len(seen) >= 2

    # Freeze the daemon while it copies the second file, pull the card, let it go on: this
    # makes "mid-copy" certain instead of a race with a fast loop device.
    wait_for(second_file_copying, what="the copy to be under way", timeout_s=60, every_s=0.002)
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        # the officer pulls the camera: the mount goes away and the device with it
        for mountpoint in mounts_under(daemon.runtime_dir):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
        loops.detach(devnode)
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    wait_for(lambda: not any(job["finished_at"] is None for job in status(daemon.runtime_dir).get("jobs", [])),
             what="the interrupted job to end", timeout_s=60)
    partial = recordings(config)
    assert len(partial) < 12
    assert all(r["archived_at"] for r in partial)  # nothing half-archived
    [interrupted] = status(daemon.runtime_dir)["jobs"]
    after_pull = measure(config, sources)
    loops.attach(image)
    wait_for(lambda: len(recordings(config)) == 12, what="the rest at the next dock", timeout_s=120)
    listed = recordings(config)
    assert sorted(s["path"] for r in listed for s in r["sources"] if s["state"] == "archived") == sorted(files)
    exit_code = daemon.stop()
    assert exit_code == 0, daemon.output()
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    recovered = measure(config, sources)
    assert (after_pull.wrongly_archived, recovered.files_lost, recovered.wrongly_archived,
            recovered.duplicates, recovered.archived) == (0, 0, 0, 0, 12)
    removed = [line for line in daemon.output().splitlines() if "was removed while" in line]
    fault_log("device pulled mid-copy",
              "vfat card of 12 x 6 MB pulled while file 2 was copied, docked again",
              injected_by="SIGSTOP the daemon mid-copy, umount -l the FUSE mount, losetup --detach, "
                          "SIGCONT; losetup the image again",
              files_lost=recovered.files_lost,
              wrongly_archived=max(after_pull.wrongly_archived, recovered.wrongly_archived),
              duplicates=recovered.duplicates, exit_code=exit_code,
              message=(removed[0].split(": ", 1)[-1] if removed
                       else f"job {interrupted['state']}: {interrupted['result']}"))


def test_wipe_deletes_only_verified_files(tmp_path: Path, dock: tuple[Path, DaemonProcess, LoopDevices]) -> None:
    config, daemon, loops = dock
    files = card_files("DSJ005", 3, 100_000)
    image = make_card_image(tmp_path / "images", "WIPECAM1", files, fs="ext4")
    loops.attach(image)
    wait_for(lambda: len(recordings(config)) == 3, what="the card archived", timeout_s=90)

    def job_done() -> bool:
        jobs = status(daemon.runtime_dir).get("jobs", [])
        return bool(jobs) and all(job["finished_at"] is not None for job in jobs)

    wait_for(job_done, what="the wipe to finish")
    [job] = status(daemon.runtime_dir)["jobs"]
    assert job["state"] == "done" and job["result"].get("wiped") == 3, job
    assert daemon.stop() == 0, daemon.output()
    # look at the card itself: the recordings are gone, the filesystem is intact
    listing = subprocess.run(["debugfs", "-R", "ls -l /DCIM/100MEDIA", str(image)],
                             capture_output=True, text=True, check=True)
    assert not any(name.split("/")[-1] in listing.stdout for name in files)
    ledger = [json.loads(p.read_bytes()) for p in (tmp_path / "archive" / "ledger").rglob("*.json")]
    assert sum(1 for entry in ledger if entry["event"] == "wiped") == 3
    assert run_cli_process("--config", str(config), "verify").returncode == 0


def test_sigterm_mid_ingest_then_restart(tmp_path: Path, dock: tuple[Path, DaemonProcess, LoopDevices]) -> None:
    config, daemon, loops = dock
    files = card_files("DSJ006", 10, 12_000_000)
    image = make_card_image(tmp_path / "images", "BODYCAM6", files, size_mib=192)
    loops.attach(image)

    def copying() -> bool:
        return any(job["state"] == "ingesting" for job in status(daemon.runtime_dir).get("jobs", []))

    wait_for(copying, what="the copy to be under way")
    assert daemon.stop() == 0, daemon.output()
    assert not mounts_under(daemon.runtime_dir)
    stopped_with = recordings(config)
    assert all(r["archived_at"] for r in stopped_with)  # in-flight files finished, none half-done
    daemon.start()  # the card is still docked: found at start-up
    wait_for(lambda: len(recordings(config)) == 10 and all(r["archived_at"] for r in recordings(config)),
             what="the rest after the restart", timeout_s=120)
    assert daemon.stop() == 0, daemon.output()
    assert run_cli_process("--config", str(config), "verify").returncode == 0
