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
from ..terminal import safe
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
        print("no recordings yet")
        return ExitCode.OK
    print(f"{'ID':12}  {'SIZE':>10}  {'DEVICE':10}  {'OFFICER':8}  {'RECORDED END (local)':25}  "
          f"{'COMPLIANCE':10}  FLAGS / FIRST SOURCE")
    for recording in recordings:
        source = recording["sources"][0]["path"] if recording["sources"] else ""
        end = recording["recorded_end"] or "-"
        flags = ",".join(recording["flags"])
        print(f"{recording['id'][:12]}  {recording['size_bytes']:>10,}  "
              f"{safe(recording['device_id'] or '-')[:10]:10}  "
              f"{safe(recording['officer_id'] or '-')[:8]:8}  "
              f"{end[:25]:25}  {recording['compliance']:10}  {flags + ' ' if flags else ''}{safe(source)}")
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
        print("daemon not running")
    else:
        print(f"daemon running (pid {daemon_status['pid']})")
        for job in daemon_status.get("jobs", []):
            print("  " + safe(_describe_job(job)))
    print(f"station {config.station.id}  archive {config.archive.backend}  "
          f"recordings {len(recordings)}")
    print("queue    " + "  ".join(f"{state} {count}" for state, count in queue_counts.items()))
    if oldest_pending:
        age_s = (station.clock() - datetime.fromisoformat(oldest_pending)).total_seconds()
        print(f"oldest pending since {oldest_pending} ({age_s / 3600:.1f} h)")
    else:
        print("oldest pending: none")
    print("compliance " + "  ".join(f"{state} {count}" for state, count in compliance_counts.items()))
    print(f"overdue {report['overdue']}")
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


def _describe_backlog(backlog: dict[str, Any]) -> list[str]:
    """The backlog, the upload rate and the forecast, for humans."""
    lines = [f"backlog  {backlog['recordings']} recording(s), "
             f"{_size(backlog['size_bytes'])} waiting in the spool for upload"]
    rate = backlog["upload_rate_bytes_per_s"]
    if rate is None:
        lines.append("upload   rate not measured yet (no upload since the daemon started, and "
                     "archive.max_upload_mbps = 0): no forecast")
        return lines
    lines.append(f"upload   {_size(rate)}/s ({rate * 8 / 1e6:,.4g} Mbit/s, "
                 f"{backlog['rate_source']}); backlog archived in {_duration(backlog['drain_s'])}")
    missed = backlog["forecast_missed_recordings"]
    if not missed:
        lines.append("forecast every waiting recording meets its deadline")
    else:
        lines.append(f"forecast {missed} recording(s), {_size(backlog['forecast_missed_bytes'])} "
                     f"would miss their deadline (the first at {backlog['first_missed_deadline']}): "
                     "raise archive.max_upload_mbps or the link, or archive them elsewhere")
    return lines


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
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _describe_job(job: dict[str, Any]) -> str:
    """One docked device (or inbox batch) with its progress, for humans."""
    line = f"{job['kind']} {job['name']}: {job['state']}"
    if job["state"] == "ingesting":
        percent = 100 * job["bytes_done"] / job["bytes_total"] if job["bytes_total"] else 100.0
        line += (f"  {job['files_done']}/{job['files_total']} files  "
                 f"{job['bytes_done'] / 1e6:,.1f}/{job['bytes_total'] / 1e6:,.1f} MB ({percent:.0f} %)  "
                 f"{job['rate_bytes_per_s'] / 1e6:,.1f} MB/s")
        if job["current_file"]:
            line += f"  now {job['current_file']}"
    elif job["result"]:
        line += "  " + ", ".join(f"{count} {name}" for name, count in sorted(job["result"].items()))
    if job["removed"]:
        line += "  (removed before the end: the rest is taken at the next dock)"
    if job["error"]:
        line += f"  error: {job['error']}"
    return line
