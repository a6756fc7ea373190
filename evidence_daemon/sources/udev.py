"""Docked devices as they come and go, from udev (pyudev): "media added" / "media removed".

Two kinds of uevents mean the same thing and both are handled:

- a real USB recorder or card gives ``add`` when it appears and ``remove`` when it is pulled;
- a card reader swapping cards, or a loop device (``losetup``) attaching and detaching an image,
  gives ``change``: with ``ID_FS_TYPE`` when a filesystem appeared, without it when it went.

Each appearance and disappearance is reported once per device node, whatever the number of
events udev sends about it. The callbacks run on the observer thread and block it: hand the
work to a queue or a worker, do not mount or copy in them.

This module never mounts, opens or reads a device; it only listens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pyudev

from ..errors import DeviceError
from .rules import DeviceInfo, has_media
from ..i18n import _

log = logging.getLogger(__name__)

DeviceCallback = Callable[[DeviceInfo], None]

# Events that (re)state a device's properties. "remove" is handled on its own; "bind",
# "unbind", "move", "online" and "offline" say nothing about media.
_STATE_ACTIONS = ("add", "change")


class UdevSource:
    """Reports block devices (disks and partitions) and MTP devices that carry media.

    ``fs_types`` limits reports to filesystems the caller can mount (the keys of
    ``dock.mount_commands``); None reports every filesystem.
    """

    def __init__(
        self,
        on_added: DeviceCallback,
        on_removed: DeviceCallback,
        *,
        context: pyudev.Context | None = None,
        fs_types: Collection[str] | None = None,
    ) -> None:
        self._on_added = on_added
        self._on_removed = on_removed
        self._context = context
        self._fs_types = frozenset(fs_types) if fs_types is not None else None
        self._present: dict[str, DeviceInfo] = {}
        self._lock = threading.Lock()
        self._observer: pyudev.MonitorObserver | None = None

    def start(self) -> None:
        """Report the media already present, then listen for changes on a background thread."""
        if self._observer is not None:
            return
        try:
            context = self._context or pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context, source="udev")
            monitor.filter_by("block")
            monitor.filter_by("usb", "usb_device")
            # Listen before enumerating: a device docked in between is then seen by one or the
            # other (or both, and the present set reports it once).
            monitor.start()
            present = [
                *context.list_devices(subsystem="block"),
                *context.list_devices(subsystem="usb", ID_MTP_DEVICE="1"),
            ]
        except (OSError, ImportError) as exc:
            raise DeviceError(_("cannot listen to udev: {exc}").format(exc=exc)) from exc
        for device in present:
            self._dispatch("add", device)
        observer = pyudev.MonitorObserver(monitor, callback=self._on_event, name="udev-source")
        observer.start()
        self._observer = observer
        log.info("listening to udev for docked devices (%d with media present)", len(self._present))

    def stop(self) -> None:
        """Stop listening; once this returns no callback runs any more."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()

    @property
    def running(self) -> bool:
        """False once the observer thread has ended (stopped, or the netlink socket failed):
        a daemon should stop its watchdog pings then rather than run blind."""
        return self._observer is not None and self._observer.is_alive()

    def present(self) -> list[DeviceInfo]:
        """The devices with media, as last reported."""
        with self._lock:
            return list(self._present.values())

    # -- the observer thread -------------------------------------------------------------------

    def _on_event(self, device: Any) -> None:
        self._dispatch(str(device.action), device)

    def _dispatch(self, action: str, device: Any) -> None:
        # An exception escaping here would end pyudev's observer thread, and with it every
        # later dock: log it and carry on.
        try:
            self._handle(action, device.properties)
        except Exception:
            log.exception(_("udev event for %s could not be handled"), getattr(device, "device_node", "?"))

    def _handle(self, action: str, properties: Mapping[str, str]) -> None:
        info = DeviceInfo.from_properties(dict(properties))
        key = info.devnode or info.sys_path
        if not key:
            return
        if action == "remove":
            self._gone(key)
        elif action in _STATE_ACTIONS:
            if has_media(info, self._fs_types):
                self._appeared(key, info)
            else:
                self._gone(key)

    def _appeared(self, key: str, info: DeviceInfo) -> None:
        with self._lock:
            previous = self._present.get(key)
            if previous is not None and previous.fs_uuid == info.fs_uuid \
                    and previous.fs_type == info.fs_type:
                return
            self._present[key] = info
        if previous is not None:
            # Another card in the same reader, with no empty-slot event in between.
            self._report(self._on_removed, previous, "removed")
        self._report(self._on_added, info, "added")

    def _gone(self, key: str) -> None:
        with self._lock:
            previous = self._present.pop(key, None)
        if previous is not None:
            self._report(self._on_removed, previous, "removed")

    def _report(self, callback: DeviceCallback, info: DeviceInfo, what: str) -> None:
        log.debug("media %s: %s (%s, label %r)", what, info.devnode, info.fs_type, info.fs_label)
        try:
            callback(info)
        except Exception:
            log.exception(_("handling media %s on %s failed"), what, info.devnode)

