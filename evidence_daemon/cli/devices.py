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
from ..station import open_station
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
        print(f"device {outcome.assignment.device_id} was not registered: registered it now "
              "(it has not docked here yet)")
    for closed in outcome.closed:
        print(f"closed: {closed.describe()}")
    print(f"assigned device {outcome.assignment.device_id} to {outcome.assignment.describe()}")
    if waiting:
        print(f"evidence-daemon: error: the assignment is saved and in effect, but {waiting} device "
              f"event(s) are not yet in the custody ledger: {archive_error or 'see the log'}\n"
              "They are appended at the next dock or devices assign once the archive is reachable.",
              file=sys.stderr)
        return ExitCode.ARCHIVE_UNREACHABLE
    return ExitCode.OK


def _print_devices(devices: list[dict[str, Any]], waiting: int, as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(devices, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    if not devices:
        out.write("no devices registered yet\n")
    else:
        out.write(f"{'DEVICE':20}  {'MODEL':12}  {'ROLE':8}  {'DOCKS':>5}  "
                  f"{'LAST DOCKED (local)':19}  {'CLOCK':>10}  OFFICER NOW\n")
    for device in devices:
        out.write(f"{device['device_id'][:20]:20}  {(device['model'] or '-')[:12]:12}  "
                  f"{(device['role'] or '-')[:8]:8}  {device['docks']:>5}  "
                  f"{_minutes(device['last_docked_at']) or 'never':19}  "
                  f"{_offset(device['clock_offset_s']):>10}  "
                  f"{device['current_officer'] or '-'}"
                  f"{'' if device['in_service'] else '  (out of service)'}\n")
        for assignment in device["assignments"]:
            note = f"  {assignment['note']}" if assignment["note"] else ""
            out.write(f"    officer {assignment['officer_id']}  from {_minutes(assignment['valid_from'])}"
                      f"  to {_minutes(assignment['valid_to']) or 'open-ended'}{note}\n")
    if any(device["clock_offset_s"] is not None for device in devices):
        out.write("CLOCK: newest file time on the device minus its last dock time (a little "
                  "negative is normal; + means ahead)\n")
    if waiting:
        out.write(f"{waiting} device event(s) wait for the archive before entering the ledger\n")


def _offset(seconds: float | None) -> str:
    """A device's apparent clock offset in a unit a person reads at a glance."""
    if seconds is None:
        return "-"
    if abs(seconds) < 3600:
        return f"{seconds / 60:+.0f} min"
    if abs(seconds) < 72 * 3600:
        return f"{seconds / 3600:+.1f} h"
    return f"{seconds / 86400:+,.0f} d"


def _minutes(text: str | None) -> str | None:
    """A stored time as the station's wall clock shows it, to the minute (None stays None)."""
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M") if text else None
