"""Mounting docked devices read-only, and proving it.

The first part runs anywhere: mountinfo parsing and the mounter's decisions with a fake runner.
The second part is root only and uses the real stack: card images on loop devices, fusefat,
exfat-fuse and the kernel's ext4.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.config import DockConfig, DockRule
from evidence_daemon.errors import DeviceError
from evidence_daemon.sources.mounter import (
    Mounter,
    cannot_run,
    find_mount,
    parse_mountinfo,
    substitute,
)
from evidence_daemon.sources.rules import DeviceInfo, DockMatch

from .dock_fixtures import LoopDevices, make_card_image, require_tools

MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
42 22 0:39 / /run/evidence-daemon/mnt/generic-label-582D-079F ro,nosuid,nodev,noexec,relatime - fuse.fusefat fusefat ro,user_id=0,group_id=0
43 22 7:1 / /run/evidence-daemon/mnt/a\\040b ro,nosuid,nodev,relatime shared:5 master:2 - fuseblk /dev/loop1 ro,user_id=0,group_id=0,default_permissions,allow_other,blksize=4096
44 22 7:2 / /mnt/x rw,relatime - ext4 /dev/loop2 ro
45 22 7:3 / /mnt/x rw,relatime - ext4 /dev/loop3 rw
not a mountinfo line
"""


def test_parse_mountinfo() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert [entry.mountpoint for entry in entries] == [
        "/", "/run/evidence-daemon/mnt/generic-label-582D-079F", "/run/evidence-daemon/mnt/a b",
        "/mnt/x", "/mnt/x"]
    fusefat, exfat = entries[1], entries[2]
    assert (fusefat.fs_type, fusefat.source, fusefat.read_only, fusefat.is_fuse) == (
        "fuse.fusefat", "fusefat", True, True)
    assert {"ro", "nosuid", "nodev", "noexec"} <= fusefat.options
    assert (exfat.fs_type, exfat.source, exfat.is_fuse, "noexec" in exfat.options) == (
        "fuseblk", "/dev/loop1", True, False)
    assert not entries[0].read_only and not entries[0].is_fuse
    assert entries[3].read_only  # a read-only superblock makes the mount read-only too


def test_find_mount_takes_the_mount_on_top() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    found = find_mount(entries, "/mnt/x")
    assert found is not None and found.source == "/dev/loop3" and not found.read_only
    assert find_mount(entries, "/mnt/y") is None


@pytest.mark.parametrize(("template", "expected"), [
    ("fusefat -o ro {device} {mountpoint}", ["fusefat", "-o", "ro", "/dev/sd b1", "/run/m p"]),
    ("jmtpfs -device={busnum},{devnum} {mountpoint}", ["jmtpfs", "-device=1,5", "/run/m p"]),
    ("unlock --model '{model}' --x {unknown}", ["unlock", "--model", "A8; rm -rf /", "--x", "{unknown}"]),
])
def test_substitute_keeps_each_value_one_argument(template: str, expected: list[str]) -> None:
    values = {"device": "/dev/sd b1", "mountpoint": "/run/m p", "busnum": "1", "devnum": "5",
              "model": "A8; rm -rf /"}
    assert substitute(template, values) == expected


class FakeSystem:
    """A runner that records commands and keeps a mountinfo file as a mount would."""

    def __init__(self, directory: Path, *, mount_options: str = "ro,nosuid,nodev,noexec",
                 fail: str = "") -> None:
        self.mountinfo = directory / "mountinfo"
        self.mountinfo.write_text("22 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n")
        self.calls: list[list[str]] = []
        self.mount_options = mount_options
        self.fail = fail

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs.get("shell") is not True
        self.calls.append(list(argv))
        if argv[0] == self.fail:
            return subprocess.CompletedProcess(argv, 32, "", f"{argv[0]}: it went wrong\n")
        if argv[0] == "fake-mount":
            read_only = "ro" if "ro" in self.mount_options.split(",") else "rw"
            with self.mountinfo.open("a") as handle:
                handle.write(f"50 22 0:50 / {argv[-1]} {self.mount_options} - fuse.fake fake {read_only}\n")
        if argv[0] == "fake-umount":
            lines = self.mountinfo.read_text().splitlines(keepends=True)
            self.mountinfo.write_text("".join(line for line in lines if f" {argv[-1]} " not in line))
        return subprocess.CompletedProcess(argv, 0, "", "")


def fake_config(runtime_dir: Path) -> DockConfig:
    return DockConfig(runtime_dir=runtime_dir, mount_commands=(("vfat", "fake-mount -o ro {device} {mountpoint}"),),
                      unmount_command="fake-umount {mountpoint}")


CARD = DeviceInfo(sys_path="/sys/devices/virtual/block/loop0", devnode="/dev/loop0", subsystem="block",
                  fs_type="vfat", fs_label="BODYCAM", fs_uuid="582D-079F")
TAGGED = DockMatch("recorder", "generic-label", None)


def test_mount_runs_the_hook_then_the_command_and_checks_the_result(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    rule = DockRule(label_pattern="BODYCAM", pre_mount="vendor-unlock --dev {device} --model {model}")
    mountpoint = mounter.mount(CARD, "generic-label-582D-079F", DockMatch("recorder", "A 8", rule))
    assert mountpoint == tmp_path / "run" / "mnt" / "generic-label-582D-079F"
    assert system.calls == [
        ["vendor-unlock", "--dev", "/dev/loop0", "--model", "A 8"],
        ["fake-mount", "-o", "ro", "/dev/loop0", str(mountpoint)],
    ]
    assert mountpoint.stat().st_mode & 0o777 == 0o750
    mounter.unmount(mountpoint)
    assert system.calls[-1] == ["fake-umount", str(mountpoint)]
    assert not mountpoint.exists()
    mounter.unmount(mountpoint)  # already gone: nothing to do, no error
    assert len(system.calls) == 3


def test_mount_refuses_a_type_without_a_command(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    exfat = DeviceInfo(sys_path="", devnode="/dev/loop0", subsystem="block", fs_type="ntfs")
    with pytest.raises(DeviceError, match="no mount command for filesystem type 'ntfs'"):
        mounter.mount(exfat, "x-1", TAGGED)
    assert system.calls == []


def test_a_failing_mount_command_is_a_device_error_with_its_message(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, fail="fake-mount")
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    with pytest.raises(DeviceError, match="fake-mount: it went wrong"):
        mounter.mount(CARD, "x-1", TAGGED)
    assert not (tmp_path / "run" / "mnt" / "x-1").exists()


def test_a_failing_hook_stops_the_mount(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, fail="vendor-unlock")
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    rule = DockRule(label_pattern="BODYCAM", pre_mount="vendor-unlock {device}")
    with pytest.raises(DeviceError, match="pre-mount hook"):
        mounter.mount(CARD, "x-1", DockMatch("recorder", "m", rule))
    assert [call[0] for call in system.calls] == ["vendor-unlock"]


def test_a_writable_mount_is_undone_and_refused(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, mount_options="rw,nosuid,nodev,noexec")
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    with pytest.raises(DeviceError, match="mounted it writable"):
        mounter.mount(CARD, "x-1", TAGGED)
    assert [call[0] for call in system.calls] == ["fake-mount", "fake-umount"]
    assert find_mount(parse_mountinfo(system.mountinfo.read_text()), tmp_path / "run/mnt/x-1") is None


def test_missing_hardening_options_are_added_with_a_bind_remount(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, mount_options="ro,nosuid,nodev")
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    mountpoint = mounter.mount(CARD, "x-1", TAGGED)
    assert system.calls[-1] == ["mount", "-o", "remount,bind,ro,nosuid,nodev,noexec", str(mountpoint)]


@pytest.mark.parametrize("identity", ["", ".", "..", "a/b", "-o", "x" * 65])
def test_an_unsafe_identity_never_names_a_mountpoint(tmp_path: Path, identity: str) -> None:
    system = FakeSystem(tmp_path)
    mounter = Mounter(fake_config(tmp_path / "run"), run=system, mountinfo_path=system.mountinfo)
    with pytest.raises(DeviceError, match="cannot name a mountpoint"):
        mounter.mount(CARD, identity, TAGGED)


@pytest.mark.parametrize(("exc", "said"), [
    (FileNotFoundError(errno.ENOENT, "No such file"), "fusefat not found (is its package installed?)"),
    (subprocess.TimeoutExpired(["fusefat"], 30), "fusefat did not finish in 2.5 s"),
    (PermissionError(errno.EACCES, "Permission denied"), "cannot run fusefat: Permission denied"),
])
def test_why_a_mount_helper_did_not_run(exc: OSError | subprocess.TimeoutExpired, said: str) -> None:
    assert cannot_run("fusefat", exc, 2.5) == said


def test_a_missing_program_is_a_device_error(tmp_path: Path) -> None:
    config = DockConfig(runtime_dir=tmp_path / "run",
                        mount_commands=(("vfat", "no-such-mount-helper-x {device} {mountpoint}"),))
    with pytest.raises(DeviceError, match="no-such-mount-helper-x not found"):
        Mounter(config).mount(CARD, "x-1", TAGGED)


# -- the real stack (root) -------------------------------------------------------------------------

root = pytest.mark.root
VIDEO = os.urandom(3 * 1024 * 1024 + 17)
FILES: dict[str, bytes] = {
    "DCIM/100MEDIA/DSJ-A8_000123_20240301081500_0001.MP4": VIDEO,
    "DCIM/100MEDIA/VID_20240301_090000_0002.MOV": b"\x00" * 1000,
    "RECORD/AUDIO/REC_20240301_100000.WAV": b"RIFF" + b"\x01" * 500,
}


def card(devnode: str, fs_type: str, label: str = "BODYCAM") -> DeviceInfo:
    return DeviceInfo(sys_path="", devnode=devnode, subsystem="block", fs_type=fs_type,
                      fs_label=label, fs_uuid="0000-0000")


def assert_read_only(mountpoint: Path) -> None:
    with pytest.raises(OSError) as raised:
        (mountpoint / "new.txt").write_bytes(b"evidence must not change")
    assert raised.value.errno == errno.EROFS
    with pytest.raises(OSError):
        (mountpoint / "DCIM" / "100MEDIA" / "VID_20240301_090000_0002.MOV").unlink()
    entry = find_mount(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), mountpoint)
    assert entry is not None and entry.read_only
    assert {"ro", "nosuid", "nodev", "noexec"} <= entry.options


def assert_same_files(mountpoint: Path) -> None:
    for rel_path, data in FILES.items():
        assert (mountpoint / rel_path).read_bytes() == data, rel_path


@root
def test_vfat_card_with_fusefat(tmp_path: Path, loop_devices: LoopDevices) -> None:
    require_tools("fusefat", "umount")
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="vfat", size_mib=16))
    mounter = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir))
    mountpoint = mounter.mount(card(devnode, "vfat"), "generic-label-0000-0000", TAGGED)
    assert mountpoint == loop_devices.runtime_dir / "mnt" / "generic-label-0000-0000"
    assert_same_files(mountpoint)
    assert_read_only(mountpoint)
    mounter.unmount(mountpoint)
    assert not mountpoint.exists()
    assert find_mount(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), mountpoint) is None


@root
def test_exfat_card_with_exfat_fuse(tmp_path: Path, loop_devices: LoopDevices) -> None:
    require_tools("mount.exfat-fuse", "umount")
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="exfat", size_mib=16))
    mounter = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir))
    mountpoint = mounter.mount(card(devnode, "exfat"), "generic-label-1", TAGGED)
    assert_same_files(mountpoint)
    assert_read_only(mountpoint)  # noexec included: exfat-fuse drops it, the mounter adds it
    with pytest.raises(DeviceError, match="not supported for exfat"):
        mounter.remount_writable(mountpoint, card(devnode, "exfat"))
    mounter.unmount(mountpoint)
    assert not mountpoint.exists()


@root
def test_a_command_that_mounts_writable_is_refused(tmp_path: Path, loop_devices: LoopDevices) -> None:
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="ext4", size_mib=16))
    config = DockConfig(runtime_dir=loop_devices.runtime_dir,
                        mount_commands=(("ext4", "mount -t ext4 -o rw {device} {mountpoint}"),))
    mounter = Mounter(config)
    with pytest.raises(DeviceError, match="writable"):
        mounter.mount(card(devnode, "ext4"), "careless-1", TAGGED)
    mountpoint = loop_devices.runtime_dir / "mnt" / "careless-1"
    assert find_mount(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), mountpoint) is None
    assert not mountpoint.exists()


@root
def test_ext4_read_only_then_writable_for_the_wipe(tmp_path: Path, loop_devices: LoopDevices) -> None:
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="ext4", size_mib=16))
    mounter = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir))
    info = card(devnode, "ext4")
    mountpoint = mounter.mount(info, "ext4-1", TAGGED)
    assert_same_files(mountpoint)
    assert_read_only(mountpoint)
    mounter.remount_writable(mountpoint, info)
    (mountpoint / "DCIM" / "100MEDIA" / "VID_20240301_090000_0002.MOV").unlink()
    mounter.unmount(mountpoint)
    assert not mountpoint.exists()


@root
def test_a_device_mounted_elsewhere_is_refused(tmp_path: Path, loop_devices: LoopDevices) -> None:
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="ext4", size_mib=16))
    elsewhere = tmp_path / "automounted"
    elsewhere.mkdir()
    loop_devices.clean_mounts_under(elsewhere)
    subprocess.run(["mount", "-t", "ext4", "-o", "ro", devnode, str(elsewhere)], check=True)
    with pytest.raises(DeviceError, match="already mounted at"):
        Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir)).mount(card(devnode, "ext4"), "e-1", TAGGED)


@root
def test_a_mount_left_by_a_killed_daemon_is_replaced(tmp_path: Path, loop_devices: LoopDevices) -> None:
    require_tools("fusefat")
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="vfat", size_mib=16))
    first = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir))
    mountpoint = first.mount(card(devnode, "vfat"), "stale-1", TAGGED)
    again = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir)).mount(card(devnode, "vfat"), "stale-1", TAGGED)
    assert again == mountpoint
    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert [entry.mountpoint for entry in entries].count(str(mountpoint)) == 1
    assert_same_files(mountpoint)


@root
def test_unmount_after_the_device_vanished_mid_copy(tmp_path: Path, loop_devices: LoopDevices) -> None:
    require_tools("fusefat")
    devnode = loop_devices.attach(make_card_image(tmp_path, "BODYCAM", FILES, fs="vfat", size_mib=16))
    mounter = Mounter(DockConfig(runtime_dir=loop_devices.runtime_dir))
    mountpoint = mounter.mount(card(devnode, "vfat"), "vanished-1", TAGGED)
    with (mountpoint / next(iter(FILES))).open("rb") as being_copied:
        being_copied.read(65536)
        loop_devices.detach(devnode)  # pulled out mid-copy; the open file keeps the mount busy
        started = time.monotonic()
        mounter.unmount(mountpoint)  # umount fails (busy): detached lazily instead
        assert time.monotonic() - started < 10
        entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        assert find_mount(entries, mountpoint) is None
    assert not mountpoint.exists()
    mounter.unmount(mountpoint)  # and again: already gone, no error
