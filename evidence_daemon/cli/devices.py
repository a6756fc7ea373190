"""``devices list`` and ``devices assign``: registered devices and who carries them when."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from ..config import Config
from ..errors import StorageError
from ..i18n import _, word
from ..station import open_station
from ..terminal import clip, columns, pad
from .common import _operator, _parse_time
from .exit_codes import ExitCode


def cmd_devices(config: Config, args: argparse.Namespace) -> ExitCode:
    zone = ZoneInfo(config.station.timezone)
    station = open_station(config, connect_archive=False)
    try:
        registry = station.devices()
        if args.devices_action == "list":
            _print_devices(registry.list(), registry.pending_events(), args.json, sys.stdout)
            return ExitCode.OK
        valid_from = (_parse_time(args.valid_from, "--from", zone) if args.valid_from is not None
                      else station.clock())
        valid_to = _parse_time(args.valid_to, "--to", zone) if args.valid_to is not None else None
        archive_error = None
        try:
            station.connect()
        except StorageError as exc:
            # The assignment still takes effect; its ledger event waits in the outbox.
            archive_error = exc.message
        outcome = registry.assign(args.device, args.officer, valid_from, valid_to, args.note,
                                  requested_by=_operator())
        waiting = registry.pending_events()
    finally:
        station.close()
    if outcome.registered:
        print(_("device {device} was not registered: registered it now "
                "(it has not docked here yet)").format(device=outcome.assignment.device_id))
    for closed in outcome.closed:
        print(_("closed: {assignment}").format(assignment=closed.describe()))
    print(_("assigned device {device} to {assignment}").format(
        device=outcome.assignment.device_id, assignment=outcome.assignment.describe()))
    if waiting:
        print(_("evidence-daemon: error: the assignment is saved and in effect, but {count} "
                "device event(s) are not yet in the custody ledger: {error}\n"
                "They are appended at the next dock or devices assign once the archive is "
                "reachable.").format(count=waiting, error=archive_error or _("see the log")),
              file=sys.stderr)
        return ExitCode.ARCHIVE_UNREACHABLE
    return ExitCode.OK


def _print_devices(devices: list[dict[str, Any]], waiting: int, as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(devices, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    if not devices:
        out.write(_("no devices registered yet") + "\n")
    else:
        out.write(columns([(_("DEVICE"), 20), (_("MODEL"), 12), (_("ROLE"), 8),
                           (_("DOCKS"), 5, ">"), (_("LAST DOCKED (local)"), 19),
                           (_("CLOCK"), 10, ">"), (_("OFFICER NOW"), 0)]) + "\n")
    never, out_of_service = _("never"), "  " + _("(out of service)")
    for device in devices:
        out.write(f"{pad(clip(device['device_id'], 20), 20)}  "
                  f"{pad(clip(device['model'] or '-', 12), 12)}  "
                  f"{pad(clip(word(device['role']) if device['role'] else '-', 8), 8)}  "
                  f"{device['docks']:>5}  "
                  f"{pad(_minutes(device['last_docked_at']) or never, 19)}  "
                  f"{pad(_offset(device['clock_offset_s']), 10, '>')}  "
                  f"{device['current_officer'] or '-'}"
                  f"{'' if device['in_service'] else out_of_service}\n")
        for assignment in device["assignments"]:
            note = f"  {assignment['note']}" if assignment["note"] else ""
            out.write("    " + _("officer {officer}  from {start}  to {end}").format(
                officer=assignment['officer_id'], start=_minutes(assignment['valid_from']),
                end=_minutes(assignment['valid_to']) or _("open-ended")) + f"{note}\n")
    if any(device["clock_offset_s"] is not None for device in devices):
        out.write(_("CLOCK: newest file time on the device minus its last dock time (a little "
                    "negative is normal; + means ahead)") + "\n")
    if waiting:
        out.write(_("{count} device event(s) wait for the archive before entering the "
                    "ledger").format(count=waiting) + "\n")


def _offset(seconds: float | None) -> str:
    """A device's apparent clock offset in a unit a person reads at a glance."""
    if seconds is None:
        return "-"
    if abs(seconds) < 3600:
        return _("{minutes:+.0f} min").format(minutes=seconds / 60)
    if abs(seconds) < 72 * 3600:
        return _("{hours:+.1f} h").format(hours=seconds / 3600)
    return _("{days:+,.0f} d").format(days=seconds / 86400)


def _minutes(text: str | None) -> str | None:
    """A stored time as the station's wall clock shows it, to the minute (None stays None)."""
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M") if text else None
