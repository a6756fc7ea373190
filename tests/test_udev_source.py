"""The udev source against a real systemd-udevd: card images attached with losetup (root only).

Loop devices announce media with ``change`` uevents, not ``add``: attaching gives a change with
ID_FS_TYPE, detaching a change without it. Other processes may use loop devices at the same time,
so every assertion looks only at the device node this test attached.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evidence_daemon.config import DockRule
from evidence_daemon.sources.rules import DeviceInfo, DockMatch, match_device
from evidence_daemon.sources.udev import UdevSource

from .dock_fixtures import LoopDevices, make_card_image

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("udevd")]

FOOTAGE = {"DCIM/100MEDIA/VID_20240301_081500_0001.MP4": b"\x00\x00\x00\x18ftypmp42" + b"x" * 4096}


class Events:
    """What the source reported, per callback, safe to read from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: list[DeviceInfo] = []
        self._removed: list[DeviceInfo] = []

    def on_added(self, info: DeviceInfo) -> None:
        with self._lock:
            self._added.append(info)

    def on_removed(self, info: DeviceInfo) -> None:
        with self._lock:
            self._removed.append(info)

    def added(self, devnode: str) -> list[DeviceInfo]:
        with self._lock:
            return [info for info in self._added if info.devnode == devnode]

    def removed(self, devnode: str) -> list[DeviceInfo]:
        with self._lock:
            return [info for info in self._removed if info.devnode == devnode]


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"nothing within {timeout_s} s")
        time.sleep(0.05)


def listening(events: Events, on_added: Callable[[DeviceInfo], None] | None = None) -> UdevSource:
    source = UdevSource(on_added or events.on_added, events.on_removed)
    source.start()
    return source


def test_a_bodycam_card_is_reported_once_when_attached_and_once_when_detached(
    tmp_path: Path, loop_devices: LoopDevices,
) -> None:
    image = make_card_image(tmp_path, "BODYCAM", FOOTAGE, fs="vfat", size_mib=16)
    events = Events()
    source = listening(events)
    try:
        devnode = loop_devices.attach(image)
        wait_for(lambda: events.added(devnode), timeout_s=5)
        time.sleep(1.0)  # udev sends more change events for the same card (its "watch" option)
        [info] = events.added(devnode)
        assert (info.subsystem, info.fs_type, info.fs_label) == ("block", "vfat", "BODYCAM")
        assert info.fs_uuid
        assert (info.evidence_role, info.evidence_model) == ("recorder", "generic-label")
        assert match_device(info, ()) == DockMatch("recorder", "generic-label", None)
        assert info in source.present()
        assert source.running

        loop_devices.detach(devnode)
        wait_for(lambda: events.removed(devnode), timeout_s=5)
        time.sleep(0.5)
        assert events.removed(devnode) == [info]  # as it was when it appeared
        assert len(events.added(devnode)) == 1
        assert info not in source.present()
    finally:
        source.stop()


def test_a_card_with_another_label_is_reported_but_matches_no_rule(
    tmp_path: Path, loop_devices: LoopDevices,
) -> None:
    image = make_card_image(tmp_path, "HOLIDAY", {"IMG_0001.JPG": b"\xff\xd8\xff"}, fs="vfat", size_mib=16)
    events = Events()
    source = listening(events)
    try:
        devnode = loop_devices.attach(image)
        wait_for(lambda: events.added(devnode), timeout_s=5)
        [info] = events.added(devnode)
        assert (info.fs_label, info.evidence_role) == ("HOLIDAY", "")
        assert match_device(info, ()) is None
        configured = DockRule(role="terminal", model="T3", label_pattern="HOLI.*")
        assert match_device(info, (configured,)) == DockMatch("terminal", "T3", configured)
    finally:
        source.stop()


def test_a_card_docked_before_the_source_starts_is_reported_at_start(
    tmp_path: Path, loop_devices: LoopDevices,
) -> None:
    image = make_card_image(tmp_path, "BODYCAM2", FOOTAGE, fs="exfat", size_mib=16)
    devnode = loop_devices.attach(image)
    _settle()
    events = Events()
    source = listening(events)
    try:
        [info] = events.added(devnode)  # from the enumeration, before start() returned
        assert (info.fs_type, info.fs_label, info.evidence_role) == ("exfat", "BODYCAM2", "recorder")
        loop_devices.detach(devnode)
        wait_for(lambda: events.removed(devnode), timeout_s=5)
    finally:
        source.stop()


def test_an_exception_in_a_callback_does_not_stop_the_source(
    tmp_path: Path, loop_devices: LoopDevices, caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()

    def failing(info: DeviceInfo) -> None:
        events.on_added(info)
        raise RuntimeError("the daemon had a bad day")

    first = make_card_image(tmp_path, "BODYCAM", FOOTAGE, size_mib=16)
    second = make_card_image(tmp_path, "BODYCAM", FOOTAGE, size_mib=16)
    source = listening(events, on_added=failing)
    try:
        first_node = loop_devices.attach(first)
        wait_for(lambda: events.added(first_node), timeout_s=5)
        second_node = loop_devices.attach(second)
        wait_for(lambda: events.added(second_node), timeout_s=5)
        loop_devices.detach(first_node)
        wait_for(lambda: events.removed(first_node), timeout_s=5)
    finally:
        source.stop()
    assert "the daemon had a bad day" in caplog.text


def test_stop_is_final(tmp_path: Path, loop_devices: LoopDevices) -> None:
    events = Events()
    source = listening(events)
    source.stop()
    source.stop()  # twice is fine
    assert not source.running
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FOOTAGE, size_mib=16))
    _settle()
    time.sleep(0.3)
    assert events.added(devnode) == []


def _settle() -> None:
    """Wait until udevd has processed every queued event (the card's properties are known)."""
    subprocess.run(["udevadm", "settle", "--timeout=10"], check=False, timeout=30)
