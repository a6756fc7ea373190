"""Is a docked device ready to be mounted? Waiting for it, not for a fixed time.

udev reports a device (``sources/udev.py``) only once it has probed a filesystem on it
(``ID_FS_TYPE``): what is left before mounting is that its node opens and its first sector
reads (a card reader may still be spinning its card up, a USB device may still be settling).
``wait_until_ready`` asks that every ``poll_s`` and returns as soon as the answer is yes, or
after ``limit_s`` (``dock.settle_s``: the upper bound, no longer a fixed wait) in any case —
the mount then says what is wrong if the device really is not ready.

A node the daemon may not open (``EACCES``: the mount command has its own rights) cannot be
judged here and counts as ready; so does an MTP device, which has no block node to open.

What must never happen: a write to a device (the node is opened read-only, never locked), or
a wait without an end.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .rules import DeviceInfo

# What the daemon may not do to the node says nothing about the device being ready.
_CANNOT_TELL = frozenset({errno.EACCES, errno.EPERM})
_PROBE_BYTES = 512  # one sector: where every FAT/exFAT boot sector starts


@dataclass(frozen=True)
class Readiness:
    ready: bool
    waited_s: float
    reason: str = ""  # why not ready (the last probe's answer)


Probe = Callable[[DeviceInfo], str | None]


def probe_device(info: DeviceInfo) -> str | None:
    """None when ``info``'s filesystem can be read now, else why not (one open and one read)."""
    if info.is_mtp or not info.devnode:
        return None
    if not info.fs_type:
        return "udev has found no filesystem yet"
    try:
        fd = os.open(info.devnode, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return None if exc.errno in _CANNOT_TELL else f"{info.devnode} does not open: {exc.strerror}"
    try:
        os.pread(fd, _PROBE_BYTES, 0)
    except OSError as exc:
        return None if exc.errno in _CANNOT_TELL else f"{info.devnode} does not read: {exc.strerror}"
    finally:
        os.close(fd)
    return None


def wait_until_ready(
    info: DeviceInfo,
    limit_s: float,
    stop: threading.Event,
    *,
    probe: Probe = probe_device,
    poll_s: float = 0.05,
    monotonic: Callable[[], float] = time.monotonic,
) -> Readiness:
    """Probe ``info`` until it is ready, ``limit_s`` has passed or ``stop`` is set."""
    started = monotonic()
    while True:
        reason = probe(info)
        waited_s = monotonic() - started
        if reason is None:
            return Readiness(True, waited_s)
        if waited_s >= limit_s or stop.wait(min(poll_s, max(limit_s - waited_s, 0.0))):
            return Readiness(False, monotonic() - started, reason)
