"""Which docked devices are recorders or terminals, and what they are called: pure functions.

The input is the property set udev gives a device (``udevadm info --query=property``); the
output is a plain decision. No I/O here, so every rule is a row in a table test.

Never decide anything here from a device's *content*: only from what udev reports about it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..config import DockRule

ROLES = ("recorder", "terminal")
# ID_FS_TYPE given to MTP devices (phones, Android terminals): they carry no block filesystem,
# but ``dock.mount_commands.mtp`` (jmtpfs) mounts them through {busnum},{devnum}.
MTP_FS_TYPE = "mtp"
IDENTITY_MAX_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class DeviceInfo:
    """What udev says about one device node. Missing properties are empty strings."""

    sys_path: str
    devnode: str
    subsystem: str
    devtype: str = ""
    fs_type: str = ""
    fs_label: str = ""
    fs_uuid: str = ""
    vendor_id: str = ""
    product_id: str = ""
    serial: str = ""
    model: str = ""
    bus_num: str = ""
    dev_num: str = ""
    evidence_role: str = ""  # ENV{EVIDENCE_ROLE} set by config/udev/99-evidence-dock.rules
    evidence_model: str = ""  # ENV{EVIDENCE_MODEL}

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> DeviceInfo:
        """Build from udev properties (pyudev's ``Device.properties`` or a test table)."""

        def prop(name: str) -> str:
            return str(props.get(name, "") or "").strip()

        subsystem = prop("SUBSYSTEM")
        fs_type = prop("ID_FS_TYPE")
        if not fs_type and subsystem == "usb" and prop("ID_MTP_DEVICE") == "1":
            fs_type = MTP_FS_TYPE
        devpath = prop("DEVPATH")
        return cls(
            sys_path="/sys" + devpath if devpath else "",
            devnode=prop("DEVNAME"),
            subsystem=subsystem,
            devtype=prop("DEVTYPE"),
            fs_type=fs_type,
            # udev's ID_FS_LABEL replaces unsafe characters; the _ENC form is only escaped.
            fs_label=prop("ID_FS_LABEL"),
            fs_uuid=prop("ID_FS_UUID"),
            vendor_id=prop("ID_VENDOR_ID").lower(),
            product_id=prop("ID_MODEL_ID").lower(),
            serial=prop("ID_SERIAL_SHORT"),
            model=prop("ID_MODEL"),
            bus_num=prop("BUSNUM"),
            dev_num=prop("DEVNUM"),
            evidence_role=prop("EVIDENCE_ROLE"),
            evidence_model=prop("EVIDENCE_MODEL"),
        )

    @property
    def is_mtp(self) -> bool:
        return self.fs_type == MTP_FS_TYPE


@dataclass(frozen=True)
class DockMatch:
    """A device recognised as a recorder or terminal, and the config rule that applies to it."""

    role: str
    model: str
    rule: DockRule | None  # carries wipe / pre_mount; None when only udev tagged the device


def has_media(info: DeviceInfo, fs_types: Collection[str] | None = None) -> bool:
    """Whether the device carries something mountable right now.

    A block device (disk or partition) with a filesystem, or an MTP device. ``fs_types`` limits
    this to the types the configuration has a mount command for; None accepts any type.
    """
    if not info.fs_type or not info.devnode:
        return False
    if info.is_mtp:
        if info.subsystem != "usb" or not (info.bus_num and info.dev_num):
            return False
    elif info.subsystem != "block":
        return False
    return fs_types is None or info.fs_type in fs_types


def rule_matches(info: DeviceInfo, rule: DockRule) -> bool:
    """Every criterion the rule gives must match; a criterion on a value udev did not report
    does not match (a device without a serial never matches a serial pattern, even ``.*``)."""
    criteria = (
        (rule.vendor_id, info.vendor_id, _same_hex),
        (rule.product_id, info.product_id, _same_hex),
        (rule.serial_pattern, info.serial, _full_match),
        (rule.label_pattern, info.fs_label, _full_match),
    )
    given = [(wanted, actual, test) for wanted, actual, test in criteria if wanted]
    return bool(given) and all(actual and test(wanted, actual) for wanted, actual, test in given)


def match_device(info: DeviceInfo, rules: Sequence[DockRule]) -> DockMatch | None:
    """Recorder or terminal? None for a device nobody claimed (the caller logs and ignores it).

    A device the udev rules tagged (``EVIDENCE_ROLE``) keeps the tagged role and model; the
    first config rule that matches it still applies its settings (wipe, pre-mount hook).
    An untagged device is claimed by the first config rule that matches it.
    """
    rule = next((candidate for candidate in rules if rule_matches(info, candidate)), None)
    if info.evidence_role in ROLES:
        model = info.evidence_model or (rule.model if rule else "") or info.model
        return DockMatch(role=info.evidence_role, model=model or "unknown", rule=rule)
    if rule is None:
        return None
    return DockMatch(role=rule.role, model=rule.model or info.model or "unknown", rule=rule)


def device_identity(info: DeviceInfo, match: DockMatch | None) -> str | None:
    """``<model>-<serial>``, else ``<model>-<filesystem uuid>``; None when the device has neither.

    The identity names a directory and a device in the registry, so it is reduced to
    ``[A-Za-z0-9._-]``, never starts with '.' or '-', and is at most 64 characters (a longer one
    is cut and ends in a hash of the whole, so two long serials never collide).
    """
    unique = info.serial or info.fs_uuid
    if not unique:
        return None
    model = (match.model if match else "") or info.model or "unknown"
    raw = f"{model}-{unique}"
    safe = _UNSAFE.sub("_", raw).lstrip(".-") or "device"
    if len(safe) > IDENTITY_MAX_CHARS:
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]
        safe = safe[: IDENTITY_MAX_CHARS - 9] + "-" + digest
    return safe


def _same_hex(wanted: str, actual: str) -> bool:
    return wanted.lower() == actual.lower()


def _full_match(pattern: str, actual: str) -> bool:
    return re.fullmatch(pattern, actual) is not None
