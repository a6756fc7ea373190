"""Which docked devices are recorders or terminals, and what they are called: table tests."""

from __future__ import annotations

import dataclasses

import pytest

from evidence_daemon.config import DockRule
from evidence_daemon.sources.rules import (
    DeviceInfo,
    DockMatch,
    device_identity,
    has_media,
    match_device,
)

# Properties of a real uevent: a FAT card image attached with losetup, tagged by the shipped
# rules (config/udev/99-evidence-dock.rules) because of its label.
LOOP_VFAT = {
    "ACTION": "change", "CURRENT_TAGS": ":systemd:", "DEVNAME": "/dev/loop0",
    "DEVLINKS": "/dev/disk/by-label/BODYCAM /dev/disk/by-diskseq/21 /dev/disk/by-uuid/582D-079F",
    "DEVPATH": "/devices/virtual/block/loop0", "DEVTYPE": "disk", "DISKSEQ": "21",
    "EVIDENCE_MODEL": "generic-label", "EVIDENCE_ROLE": "recorder", "ID_FS_LABEL": "BODYCAM",
    "ID_FS_LABEL_ENC": "BODYCAM", "ID_FS_TYPE": "vfat", "ID_FS_USAGE": "filesystem",
    "ID_FS_UUID": "582D-079F", "ID_FS_UUID_ENC": "582D-079F", "ID_FS_VERSION": "FAT16",
    "MAJOR": "7", "MINOR": "0", "SEQNUM": "844", "SUBSYSTEM": "block", "TAGS": ":systemd:",
}
# A USB mass-storage recorder's partition, as 60-persistent-storage.rules describes it.
USB_PARTITION = {
    "ACTION": "add", "DEVNAME": "/dev/sdb1", "SUBSYSTEM": "block", "DEVTYPE": "partition",
    "DEVPATH": "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb/sdb1",
    "ID_BUS": "usb", "ID_VENDOR_ID": "2207", "ID_MODEL_ID": "0A1B", "ID_MODEL": "DSJ-A8",
    "ID_SERIAL_SHORT": "A8X0001234", "ID_FS_TYPE": "exfat", "ID_FS_LABEL": "NO_NAME",
    "ID_FS_UUID": "1234-ABCD",
}
# An Android terminal over MTP: a USB device, no block device, no filesystem.
MTP_TERMINAL = {
    "ACTION": "add", "DEVNAME": "/dev/bus/usb/001/005", "SUBSYSTEM": "usb", "DEVTYPE": "usb_device",
    "DEVPATH": "/devices/pci0000:00/0000:00:14.0/usb1/1-3", "ID_MTP_DEVICE": "1",
    "ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_MODEL": "ZFB-T3",
    "ID_SERIAL_SHORT": "T3-7788", "BUSNUM": "001", "DEVNUM": "005",
}


def info(**changes: str) -> DeviceInfo:
    return dataclasses.replace(DeviceInfo.from_properties(USB_PARTITION), **changes)


def test_from_properties_of_a_real_loop_uevent() -> None:
    device = DeviceInfo.from_properties(LOOP_VFAT)
    assert device == DeviceInfo(
        sys_path="/sys/devices/virtual/block/loop0", devnode="/dev/loop0", subsystem="block",
        devtype="disk", fs_type="vfat", fs_label="BODYCAM", fs_uuid="582D-079F",
        evidence_role="recorder", evidence_model="generic-label",
    )


def test_from_properties_of_a_usb_partition_lowercases_the_ids() -> None:
    device = DeviceInfo.from_properties(USB_PARTITION)
    assert (device.vendor_id, device.product_id) == ("2207", "0a1b")
    assert (device.serial, device.model, device.fs_type, device.devtype) == (
        "A8X0001234", "DSJ-A8", "exfat", "partition")
    assert device.evidence_role == device.bus_num == ""


def test_from_properties_of_an_mtp_device_names_its_type_mtp() -> None:
    device = DeviceInfo.from_properties(MTP_TERMINAL)
    assert (device.fs_type, device.bus_num, device.dev_num, device.is_mtp) == ("mtp", "001", "005", True)


def test_from_properties_of_nothing() -> None:
    device = DeviceInfo.from_properties({})
    assert device == DeviceInfo(sys_path="", devnode="", subsystem="")
    assert not has_media(device)


@pytest.mark.parametrize(("properties", "fs_types", "expected"), [
    (LOOP_VFAT, None, True),
    (LOOP_VFAT, {"vfat", "exfat"}, True),
    (LOOP_VFAT, {"exfat"}, False),  # no mount command for it
    ({**LOOP_VFAT, "ID_FS_TYPE": ""}, None, False),  # a detached loop: change without a filesystem
    ({k: v for k, v in LOOP_VFAT.items() if not k.startswith("ID_FS")}, None, False),
    ({**USB_PARTITION, "DEVNAME": ""}, None, False),
    ({**USB_PARTITION, "ID_FS_TYPE": "", "ID_PART_TABLE_TYPE": "dos", "DEVTYPE": "disk"}, None, False),
    (MTP_TERMINAL, None, True),
    (MTP_TERMINAL, {"vfat"}, False),
    ({**MTP_TERMINAL, "BUSNUM": ""}, None, False),
    ({**MTP_TERMINAL, "ID_MTP_DEVICE": "0"}, None, False),  # a USB device that is not MTP
    ({**USB_PARTITION, "SUBSYSTEM": "usb"}, None, False),  # a filesystem type on a non-block device
])
def test_has_media(properties: dict[str, str], fs_types: set[str] | None, expected: bool) -> None:
    assert has_media(DeviceInfo.from_properties(properties), fs_types) is expected


DSJ = DockRule(role="recorder", model="DSJ-A8", vendor_id="2207", product_id="0a1b")
DSJ_UPPER = DockRule(role="recorder", model="DSJ-A8u", vendor_id="2207", product_id="0A1B")
OTHER_PRODUCT = DockRule(role="recorder", model="DSJ-B1", vendor_id="2207", product_id="0b00")
SERIAL_A8 = DockRule(role="terminal", model="by-serial", serial_pattern="A8X\\d+")
SERIAL_PREFIX = DockRule(role="terminal", model="prefix", serial_pattern="A8X")
ANY_SERIAL = DockRule(role="terminal", model="any-serial", serial_pattern=".*")
LABEL_NO_NAME = DockRule(role="recorder", model="by-label", label_pattern="NO_NAME")
LABEL_BODYCAM = DockRule(role="recorder", model="", label_pattern="BODYCAM.*", wipe=True)
VENDOR_AND_LABEL = DockRule(role="recorder", model="both", vendor_id="2207", label_pattern="OTHER")


@pytest.mark.parametrize(("device", "rules", "expected"), [
    # untagged: the first rule whose every criterion matches
    (info(), (), None),
    (info(), (DSJ,), DockMatch("recorder", "DSJ-A8", DSJ)),
    (info(), (DSJ_UPPER,), DockMatch("recorder", "DSJ-A8u", DSJ_UPPER)),  # ids case-insensitive
    (info(product_id="0A1B"), (DSJ,), DockMatch("recorder", "DSJ-A8", DSJ)),
    (info(), (OTHER_PRODUCT,), None),
    (info(), (OTHER_PRODUCT, SERIAL_A8, DSJ), DockMatch("terminal", "by-serial", SERIAL_A8)),
    (info(), (SERIAL_PREFIX,), None),  # patterns match the whole serial
    (info(serial=""), (ANY_SERIAL,), None),  # a criterion on a missing value never matches
    (info(), (LABEL_NO_NAME,), DockMatch("recorder", "by-label", LABEL_NO_NAME)),
    (info(fs_label="XNO_NAME"), (LABEL_NO_NAME,), None),
    (info(), (VENDOR_AND_LABEL,), None),  # all criteria, not any
    (info(fs_label="OTHER"), (VENDOR_AND_LABEL,), DockMatch("recorder", "both", VENDOR_AND_LABEL)),
    (info(fs_label="BODYCAM7"), (LABEL_BODYCAM,), DockMatch("recorder", "DSJ-A8", LABEL_BODYCAM)),
    (info(fs_label="BODYCAM7", model=""), (LABEL_BODYCAM,),
     DockMatch("recorder", "unknown", LABEL_BODYCAM)),
    # tagged by udev: the tag's role and model; a matching rule still brings its settings
    (info(evidence_role="recorder", evidence_model="generic-label"), (),
     DockMatch("recorder", "generic-label", None)),
    (info(evidence_role="terminal", evidence_model="T3"), (DSJ,), DockMatch("terminal", "T3", DSJ)),
    (info(evidence_role="terminal"), (OTHER_PRODUCT,), DockMatch("terminal", "DSJ-A8", None)),
    (info(evidence_role="terminal", model=""), (), DockMatch("terminal", "unknown", None)),
    (info(evidence_role="terminal", model=""), (DSJ,), DockMatch("terminal", "DSJ-A8", DSJ)),
    (info(evidence_role="camera", evidence_model="x"), (), None),  # not a role we know
])
def test_match_device(device: DeviceInfo, rules: tuple[DockRule, ...], expected: DockMatch | None) -> None:
    assert match_device(device, rules) == expected


def test_match_device_on_real_loop_properties() -> None:
    device = DeviceInfo.from_properties(LOOP_VFAT)
    assert match_device(device, ()) == DockMatch("recorder", "generic-label", None)
    untagged = DeviceInfo.from_properties({**LOOP_VFAT, "EVIDENCE_ROLE": "", "EVIDENCE_MODEL": ""})
    assert match_device(untagged, ()) is None
    assert match_device(untagged, (LABEL_BODYCAM,)) == DockMatch("recorder", "unknown", LABEL_BODYCAM)


RECORDER = DockMatch("recorder", "DSJ-A8", None)


@pytest.mark.parametrize(("device", "match", "expected"), [
    (info(), RECORDER, "DSJ-A8-A8X0001234"),
    (info(serial=""), RECORDER, "DSJ-A8-1234-ABCD"),  # no USB serial: the filesystem UUID
    (info(serial="", fs_uuid=""), RECORDER, None),
    (info(), None, "DSJ-A8-A8X0001234"),  # the udev model when nothing matched
    (info(model=""), None, "unknown-A8X0001234"),
    (info(serial="12 34/../x"), DockMatch("recorder", "DSJ A8", None), "DSJ_A8-12_34_.._x"),
    (info(serial="序列号1"), DockMatch("recorder", "记录仪", None), "___-___1"),
    (info(), DockMatch("recorder", "../..", None), "_..-A8X0001234"),
    (info(), DockMatch("recorder", "..", None), "A8X0001234"),  # never hidden, never "."/".."
    (info(), DockMatch("recorder", "-o", None), "o-A8X0001234"),  # never read as an option
])
def test_device_identity(device: DeviceInfo, match: DockMatch | None, expected: str | None) -> None:
    assert device_identity(device, match) == expected


def test_device_identity_of_a_long_serial_is_cut_with_a_hash() -> None:
    first = device_identity(info(serial="S" * 100 + "1"), RECORDER)
    second = device_identity(info(serial="S" * 100 + "2"), RECORDER)
    assert first is not None and second is not None
    assert len(first) == len(second) == 64
    assert first != second
    assert first.startswith("DSJ-A8-SSSS")
