"""The dock manager's policy with simple fakes for the mounter and registry (the real ones are
tested as root in test_dock.py): which devices are served, wipe rules, removal mid-job."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon.config import DockRule, load_config
from evidence_daemon.devices.registry import DeviceIdentity
from evidence_daemon.dock.manager import DockManager, fat_label_names, fuse_artifacts
from evidence_daemon.dock.release import Decision, SourceRecord, Verdict, release_decision
from evidence_daemon.sources.rules import DeviceInfo, DockMatch
from evidence_daemon.station import open_station

from .helpers import run_cli, write_config
from .test_compliance_support import SteppedClock, write_footage


class FakeMounter:
    """'Mounts' by handing out a prepared directory; records what happened."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.mounted: list[str] = []
        self.unmounted: list[Path] = []
        self.writable: list[Path] = []

    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path:
        self.mounted.append(identity)
        return self.tree

    def unmount(self, mountpoint: Path) -> None:
        self.unmounted.append(mountpoint)

    def remount_writable(self, mountpoint: Path, info: DeviceInfo) -> None:
        self.writable.append(mountpoint)


class FakeRegistry:
    def __init__(self) -> None:
        self.docked_devices: list[DeviceIdentity] = []
        self.newest_file_times: list[datetime | None] = []

    def docked(self, identity: DeviceIdentity, *, newest_file_time: datetime | None = None) -> None:
        self.docked_devices.append(identity)
        self.newest_file_times.append(newest_file_time)


def card(tmp_path: Path) -> Path:
    tree = tmp_path / "card"
    (tree / "DCIM").mkdir(parents=True)
    for index in range(3):
        (tree / "DCIM" / f"DSJ001_10086_2026112508{index:02d}00_{index:04d}.MP4").write_bytes(os.urandom(5000))
    (tree / "BODYCAM").write_bytes(b"")  # what fusefat shows for the volume label
    return tree


def manager_for(tmp_path: Path, rules: str) -> tuple[DockManager, FakeMounter, FakeRegistry]:
    config = load_config(write_config(tmp_path, extra=f"[ingest]\nprobe = false\n[dock]\nsettle_s = 0\n{rules}"),
                         environ={})
    station = open_station(config)
    mounter, registry = FakeMounter(card(tmp_path)), FakeRegistry()
    manager = DockManager(config, station.ingestor(), registry, mounter, station.database, station.ledger)
    return manager, mounter, registry


def info(label: str = "BODYCAM", serial: str = "SN0042", devnode: str = "/dev/sdz1", role: str = "") -> DeviceInfo:
    return DeviceInfo(sys_path="/sys/x", devnode=devnode, subsystem="block", devtype="partition",
                      fs_type="vfat", fs_label=label, fs_uuid="1234-ABCD", serial=serial,
                      evidence_role=role, evidence_model="generic-label" if role else "")


def finish(manager: DockManager) -> None:
    deadline = time.monotonic() + 30
    while manager.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not manager.busy


def test_an_unknown_device_is_left_alone(tmp_path: Path) -> None:
    manager, mounter, _ = manager_for(tmp_path, "")
    manager.device_added(info(label="HOLIDAY"))
    finish(manager)
    assert mounter.mounted == [] and manager.snapshot() == []


def test_a_tagged_device_is_mounted_ingested_registered_and_unmounted(tmp_path: Path) -> None:
    manager, mounter, registry = manager_for(tmp_path, "")
    manager.device_added(info(role="recorder"))
    manager.device_added(info(role="recorder"))  # udev repeats itself: served once
    finish(manager)
    [job] = manager.snapshot()
    # released once spooled: the upload stage archived them after (finish waits for it)
    assert job["state"] == "done" and job["result"] == {"spooled, uploading": 3}, job
    assert manager.ingestor.queue.counts_by_state() == {"archived": 3}
    assert mounter.mounted == ["generic-label-SN0042"] and len(mounter.unmounted) == 1
    assert [d.device_id for d in registry.docked_devices] == ["generic-label-SN0042"]
    assert mounter.writable == []  # no rule asked for a wipe
    assert job["files_done"] == 3 and job["bytes_done"] == 15000
    assert job["files_total"] == 3  # the fusefat label file is not counted
    [newest] = registry.newest_file_times
    assert newest is not None and newest == max(
        datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        for path in (mounter.tree / "DCIM").iterdir())


def test_each_dock_records_the_devices_apparent_clock_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Newest file time on the device minus the dock time, with the real registry: in the
    device row, its device-docked event and `devices list`. A clock 3 h ahead, then set right."""
    dock = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
    clock = SteppedClock(dock)
    config = load_config(write_config(tmp_path, extra="[ingest]\nprobe = false\n[dock]\nsettle_s = 0\n"),
                         environ={})
    station = open_station(config, clock=clock)
    tree = card(tmp_path)
    ahead = dock + timedelta(hours=3)
    for index, path in enumerate(sorted((tree / "DCIM").iterdir())):
        moment = ahead - timedelta(minutes=10 * index)
        os.utime(path, (moment.timestamp(), moment.timestamp()))
    # junk the station never takes says nothing about the recorder's clock
    far = datetime(2099, 1, 1, tzinfo=timezone.utc).timestamp()
    os.utime(tree / "BODYCAM", (far, far))
    (tree / ".DS_Store").write_bytes(b"a Mac was here")
    os.utime(tree / ".DS_Store", (far, far))
    mounter = FakeMounter(tree)
    manager = DockManager(config, station.ingestor(), station.devices(), mounter, station.database,
                          station.ledger)
    manager.device_added(info(role="recorder"))
    finish(manager)
    [device] = station.devices().list()
    assert device["clock_offset_s"] == 3 * 3600
    assert device["newest_file_at"] == "2026-11-29T21:00:00+08:00"

    # the clock is set right; footage ends 50 minutes before the next dock
    clock.advance(hours=24)
    right = clock.now - timedelta(minutes=50)
    for path in (tree / "DCIM").iterdir():
        path.unlink()
    write_footage(tree / "DCIM", "DSJ001_10086_20261130173000_0004.MP4", b"new", ended=right)
    manager.device_added(info(role="recorder"))
    finish(manager)
    [device] = station.devices().list()
    assert (device["docks"], device["clock_offset_s"]) == (2, -50 * 60)
    docked = [json.loads(path.read_bytes()) for path in sorted((tmp_path / "archive" / "ledger").rglob("*.json"))]
    assert [(entry["details"]["dock"], entry["details"]["clock_offset_s"], entry["details"]["newest_file_at"])
            for entry in docked if entry["event"] == "device-docked"] == [
        (1, 3 * 3600.0, "2026-11-29T13:00:00.000000+00:00"),
        (2, -3000.0, "2026-11-30T09:10:00.000000+00:00")]
    manager.shutdown()
    station.close()

    code, out, err = run_cli(capsys, "--config", str(tmp_path / "config.toml"), "devices", "list", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert (listed["clock_offset_s"], listed["newest_file_at"]) == (-3000.0, "2026-11-30T17:10:00+08:00")
    code, out, err = run_cli(capsys, "--config", str(tmp_path / "config.toml"), "devices", "list")
    assert code == 0, err
    assert "CLOCK" in out and "-50 min" in out and "newest file time on the device" in out


def test_wipe_runs_only_when_the_rule_says_so_and_deletes_verified_files(tmp_path: Path) -> None:
    manager, mounter, _ = manager_for(tmp_path, '[[dock.rules]]\nmodel = "cam"\nlabel_pattern = "BODY.*"\nwipe = true\n')
    manager.device_added(info())
    finish(manager)
    [job] = manager.snapshot()
    assert job["state"] == "done" and job["result"]["wiped"] == 3, job
    assert mounter.writable == [mounter.tree]
    assert sorted(p.name for p in mounter.tree.rglob("*") if p.is_file()) == ["BODYCAM"]


class HeldMounter(FakeMounter):
    """Mounting waits until the test lets it go; records mounts and unmounts in order."""

    def __init__(self, tree: Path) -> None:
        super().__init__(tree)
        self.calls: list[str] = []
        self.mounting = threading.Event()
        self.release = threading.Event()

    def mount(self, info: DeviceInfo, identity: str, match: DockMatch) -> Path:
        self.calls.append("mount")
        self.mounting.set()
        assert self.release.wait(30)
        return super().mount(info, identity, match)

    def unmount(self, mountpoint: Path) -> None:
        self.calls.append("unmount")
        super().unmount(mountpoint)


def test_a_card_docked_again_on_the_same_node_while_its_last_job_ends_is_served(tmp_path: Path) -> None:
    """Pulled mid-job and docked again at once (the reader gives it the same node): a new dock,
    not udev repeating itself. It is served after the last job ended, never beside it."""
    manager, _, _ = manager_for(tmp_path, "")
    mounter = HeldMounter(card(tmp_path / "held"))
    manager.mounter = mounter
    manager.device_added(info(role="recorder"))
    assert mounter.mounting.wait(30)
    manager.device_removed(info(role="recorder"))  # pulled while it was being mounted
    manager.device_added(info(role="recorder"))  # and docked again
    manager.device_added(info(role="recorder"))  # udev repeats itself: still one new dock
    mounter.release.set()
    finish(manager)
    jobs = manager.snapshot()
    assert [job["state"] for job in jobs] == ["incomplete", "done"], jobs
    assert jobs[1]["started_at"] >= jobs[0]["started_at"]
    assert mounter.calls == ["mount", "unmount", "mount", "unmount"]  # one job per card at a time


def test_fusefat_label_file_is_not_evidence(tmp_path: Path) -> None:
    tree = card(tmp_path)
    assert fuse_artifacts(tree, info(label="BODYCAM")) == ("BODYCAM",)
    assert fuse_artifacts(tree, info(label="OTHER")) == ()


def test_a_label_longer_than_8_characters_is_seen_as_the_8_3_name_fusefat_lists(tmp_path: Path) -> None:
    tree = card(tmp_path)
    (tree / "BODYCAM0.07").write_bytes(b"")  # fusefat's listing of the label "BODYCAM007"
    assert fuse_artifacts(tree, info(label="BODYCAM007")) == ("BODYCAM0.07",)
    (tree / "BODYCAM1.07").write_bytes(b"x")  # a real file is evidence, whatever its name
    assert fuse_artifacts(tree, info(label="BODYCAM107")) == ()


@pytest.mark.parametrize(("label", "names"), [
    ("BODYCAM", {"BODYCAM"}),
    ("BODYCAM007", {"BODYCAM007", "BODYCAM0.07"}),
    ("police cam1", {"POLICE CAM1", "POLICE C.AM1", "POLICEC.AM1"}),  # fusefat: POLICEC.AM1
    ("NO NAME", {"NO NAME", "NONAME"}),
])
def test_fat_label_names(label: str, names: set[str]) -> None:
    assert fat_label_names(label) == names


CHANGED = "the file changed since it was ingested (size or mtime differ)"


@pytest.mark.parametrize(
    ("state", "recorded", "current", "current_sha256", "expected"),
    [
        ("archived", (10, 5, "aa"), (10, 5), "aa", Decision(Verdict.RELEASE)),
        ("duplicate", (10, 5, "aa"), (10, 5), "aa", Decision(Verdict.RELEASE)),
        ("spooled", (10, 5, "aa"), (10, 5), "aa", Decision(Verdict.LEAVE, "not archived yet (state spooled)")),
        ("failed", (10, 5, "aa"), (10, 5), "aa", Decision(Verdict.LEAVE, "not archived yet (state failed)")),
        ("archived", (10, 5, None), (10, 5), "aa", Decision(Verdict.LEAVE, "no archived hash on record")),
        ("archived", (10, 5, "aa"), (11, 5), "aa", Decision(Verdict.LEAVE, CHANGED)),
        ("archived", (10, 5, "aa"), (10, 6), "aa", Decision(Verdict.LEAVE, CHANGED)),
        ("archived", (10, 5, "aa"), (10, 5), None, Decision(Verdict.VERIFY)),
        ("archived", (10, 5, "aa"), (10, 5), "bb", Decision(
            Verdict.LEAVE, "its content differs from the archived copy (SHA-256 bb now, aa archived)")),
    ],
)
def test_wipe_decision(state: str, recorded: tuple[int, int, str | None], current: tuple[int, int],
                       current_sha256: str | None, expected: Decision) -> None:
    size_bytes, mtime_ns, sha256 = recorded
    record = SourceRecord(state, size_bytes, mtime_ns, sha256, "2026-11-25T00:31:00+00:00")
    assert release_decision(record, current, current_sha256) == expected


def test_rule_without_wipe_is_the_default() -> None:
    assert DockRule(label_pattern="X").wipe is False
