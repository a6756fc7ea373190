"""``recordings`` and ``status``: the local catalog, the queue, compliance and the backlog."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime
from typing import Any

from ..compliance.forecast import Forecast
from ..compliance.rules import STATES as COMPLIANCE_STATES
from ..config import Config
from ..state import transitions as st
from ..state.queue import WorkQueue
from ..station import open_station
from ..i18n import N_, _, word
from ..terminal import clip, columns, pad, safe
from .exit_codes import ExitCode


def cmd_recordings(config: Config, args: argparse.Namespace) -> ExitCode:
    station = open_station(config, connect_archive=False)
    try:
        recordings = station.recordings()
    finally:
        station.close()
    if args.json:
        json.dump(recordings, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not recordings:
        print(_("no recordings yet"))
        return ExitCode.OK
    print(columns([(_("ID"), 12), (_("SIZE"), 10, ">"), (_("DEVICE"), 10), (_("OFFICER"), 8),
                   (_("RECORDED END (local)"), 25), (_("COMPLIANCE"), 10),
                   (_("FLAGS / FIRST SOURCE"), 0)]))
    for recording in recordings:
        source = recording["sources"][0]["path"] if recording["sources"] else ""
        end = recording["recorded_end"] or "-"
        flags = ",".join(recording["flags"])
        print(f"{recording['id'][:12]}  {recording['size_bytes']:>10,}  "
              f"{pad(clip(safe(recording['device_id'] or '-'), 10), 10)}  "
              f"{pad(clip(safe(recording['officer_id'] or '-'), 8), 8)}  "
              f"{end[:25]:25}  {pad(word(recording['compliance']), 10)}  "
              f"{flags + ' ' if flags else ''}{safe(source)}")
    return ExitCode.OK


def cmd_status(config: Config, args: argparse.Namespace) -> ExitCode:
    from ..daemon import read_status

    daemon_status = read_status(config.dock.runtime_dir)
    measured_rate = daemon_status.get("upload_rate_bytes_per_s") if daemon_status else None
    station = open_station(config, connect_archive=False)
    try:
        queue = WorkQueue(station.database).counts_by_state()
        oldest_pending = WorkQueue(station.database).oldest_discovered(sorted(st.PENDING_STATES))
        recordings = station.recordings()
        outlook = station.forecast(measured_rate if isinstance(measured_rate, (int, float)) else None)
    finally:
        station.close()
    compliance = Counter(recording["compliance"] for recording in recordings)
    queue_counts = {state: queue.get(state, 0) for state in st.STATES}
    compliance_counts = {state: compliance.get(state, 0) for state in COMPLIANCE_STATES}
    report: dict[str, Any] = {
        "station": config.station.id,
        "archive": config.archive.backend,
        "queue": queue_counts,
        "oldest_pending": oldest_pending,
        "recordings": len(recordings),
        "compliance": compliance_counts,
        "overdue": compliance_counts["overdue"],
        "backlog": _backlog_report(outlook, config.archive.max_upload_mbps),
        "daemon": daemon_status,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return ExitCode.OK
    if daemon_status is None:
        print(_("daemon not running"))
    else:
        print(_("daemon running (pid {pid})").format(pid=daemon_status['pid']))
        for job in daemon_status.get("jobs", []):
            print("  " + safe(_describe_job(job)))
    print(_("station {station}  archive {backend}  recordings {count}").format(
        station=config.station.id, backend=config.archive.backend, count=len(recordings)))
    print(pad(_("queue"), 8) + " "
          + "  ".join(f"{word(state)} {count}" for state, count in queue_counts.items()))
    if oldest_pending:
        age_s = (station.clock() - datetime.fromisoformat(oldest_pending)).total_seconds()
        print(_("oldest pending since {since} ({hours:.1f} h)").format(
            since=oldest_pending, hours=age_s / 3600))
    else:
        print(_("oldest pending: none"))
    print(pad(_("compliance"), 10) + " "
          + "  ".join(f"{word(state)} {count}" for state, count in compliance_counts.items()))
    print(_("overdue") + f" {report['overdue']}")
    for line in _describe_backlog(report["backlog"]):
        print(line)
    return ExitCode.OK


def _backlog_report(outlook: Forecast, cap_mbps: float) -> dict[str, Any]:
    """The spool's backlog and its deadline forecast, in the ``status --json`` contract."""
    return {
        "recordings": outlook.recordings,
        "size_bytes": outlook.size_bytes,
        "upload_rate_bytes_per_s": outlook.rate_bytes_per_s,
        "rate_source": outlook.rate_source,  # measured | cap | "measured, held to the cap" | null
        "max_upload_mbps": cap_mbps,
        "drain_s": outlook.drain_s,
        "forecast_missed_recordings": outlook.missed_recordings,
        "forecast_missed_bytes": outlook.missed_bytes,
        "first_missed_deadline": outlook.first_miss.isoformat() if outlook.first_miss else None,
    }


def _describe_backlog(backlog: dict[str, Any], width: int = 8) -> list[str]:
    """The backlog, the upload rate and the forecast, for humans; labels ``width`` columns."""
    lines = [pad(_("backlog"), width) + " " + _(
        "{count} recording(s), {size} waiting in the spool for upload").format(
            count=backlog['recordings'], size=_size(backlog['size_bytes']))]
    rate = backlog["upload_rate_bytes_per_s"]
    if rate is None:
        lines.append(pad(_("upload"), width) + " " + _(
            "rate not measured yet (no upload since the daemon started, and "
            "archive.max_upload_mbps = 0): no forecast"))
        return lines
    lines.append(pad(_("upload"), width) + " " + _(
        "{rate}/s ({megabits:,.4g} Mbit/s, {source}); backlog archived in {duration}").format(
            rate=_size(rate), megabits=rate * 8 / 1e6, source=_(backlog['rate_source']),
            duration=_duration(backlog['drain_s'])))
    missed = backlog["forecast_missed_recordings"]
    if not missed:
        lines.append(pad(_("forecast"), width) + " "
                     + _("every waiting recording meets its deadline"))
    else:
        lines.append(pad(_("forecast"), width) + " " + _(
            "{count} recording(s), {size} would miss their deadline (the first at {first}): "
            "raise archive.max_upload_mbps or the link, or archive them elsewhere").format(
                count=missed, size=_size(backlog['forecast_missed_bytes']),
                first=backlog['first_missed_deadline']))
    return lines


# The sources of an upload rate (``Forecast.rate_source``), for the catalogue.
_RATE_SOURCES = (N_("measured"), N_("cap"), N_("measured, held to the cap"))


def _size(count: float) -> str:
    """Bytes for humans, in powers of 1000 as links and disks are sold."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:.0f} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return _("{seconds:.0f} s").format(seconds=seconds)
    if seconds < 7200:
        return _("{minutes:.0f} min").format(minutes=seconds / 60)
    return _("{hours:.1f} h").format(hours=seconds / 3600)


def _describe_job(job: dict[str, Any]) -> str:
    """One docked device (or inbox batch) with its progress, for humans."""
    line = f"{word(job['kind'])} {job['name']}: {word(job['state'])}"
    if job["state"] == "ingesting":
        percent = 100 * job["bytes_done"] / job["bytes_total"] if job["bytes_total"] else 100.0
        line += "  " + _(
            "{done}/{total} files  {megabytes_done:,.1f}/{megabytes_total:,.1f} MB ({percent:.0f} %)"
            "  {rate:,.1f} MB/s").format(
                done=job['files_done'], total=job['files_total'],
                megabytes_done=job['bytes_done'] / 1e6, megabytes_total=job['bytes_total'] / 1e6,
                percent=percent, rate=job['rate_bytes_per_s'] / 1e6)
        if job["current_file"]:
            line += "  " + _("now {path}").format(path=job['current_file'])
    elif job["result"]:
        line += "  " + ", ".join(f"{count} {word(name)}"
                                 for name, count in sorted(job["result"].items()))
    if job["removed"]:
        line += "  " + _("(removed before the end: the rest is taken at the next dock)")
    if job["error"]:
        line += "  " + _("error: {error}").format(error=job['error'])
    return line
