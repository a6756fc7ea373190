"""The ``evidence-daemon`` command line. Its command names, flags and JSON are a contract.

``main()`` is the only place that turns an ``EvidenceError`` into a message and an exit code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from . import __version__
from .api.cli import HANDLERS as API_HANDLERS
from .api.cli import add_commands as add_api_commands
from .archive import keys
from .compliance.forecast import Forecast
from .compliance.rules import STATES as COMPLIANCE_STATES
from .config import Config, load_config
from .custody.chain import Head, Problem, ProblemKind, compare_with_witness
from .custody.checkpoints import read_saved, saved_checkpoint
from .custody.signing import load_private_key
from .custody.timestamp import load_tsa_trust
from .custody.trust import anchors_from
from .custody.verify import Report as VerifyReport
from .custody.verify import verify_archive
from .errors import ConfigError, EvidenceError, StorageError
from .ingest.pipeline import (
    ALREADY_ARCHIVED,
    ALREADY_IN_ARCHIVE,
    NOT_STARTED,
    RETRY_LATER,
    SPOOL_FULL,
    Origin,
    Summary,
)
from .media.proxy import ProxyQueue, ProxyWorker
from .state import transitions as st
from .state.catalog import Catalog
from .state.db import Database
from .state.queue import WorkQueue
from .station import IngestLock, Station, build_store, open_station
from .terminal import safe

log = logging.getLogger("evidence_daemon")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evidence-daemon",
        description="Archive body-camera footage bit-exact, with a signed chain of custody.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: "
                        "$EVIDENCE_CONFIG or /etc/evidence-daemon/config.toml)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        dest="overrides", help="override one configuration key (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="archive every file under PATH and wait")
    ingest.add_argument("path", metavar="PATH", type=Path)
    ingest.add_argument("--device-id", help="the device the files came from")
    ingest.add_argument("--officer-id", help="officer to attribute files to when the file "
                        "name does not say")

    recordings = commands.add_parser("recordings", help="list the local catalog")
    recordings.add_argument("--json", action="store_true", help="one JSON array")

    verify = commands.add_parser("verify", help="re-hash originals, check manifests and the ledger")
    verify.add_argument("--all", action="store_true", help="every recording (the default)")
    verify.add_argument("ids", nargs="*", metavar="ID", help="recording ids (>= 12 hex digits)")
    verify.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT",
                        help="a writer key believed (SHA256:..., published out of band); "
                        "adds to [verify] trusted_keys. Without any, only consistency is checked")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="also check the archive against a checkpoint saved earlier with "
                        "`evidence-daemon checkpoint --out FILE`: a chain shorter than it, or "
                        "different from it, is a problem")

    checkpoint = commands.add_parser(
        "checkpoint", help="print the latest signed checkpoint of every ledger writer; with "
        "--out, save them for a later `verify --checkpoint`")
    checkpoint.add_argument("--out", type=Path, metavar="FILE",
                            help="write the checkpoint (JSON) here; keep it away from the archive")

    status = commands.add_parser("status", help="queue and compliance at a glance")
    status.add_argument("--json", action="store_true")

    run = commands.add_parser("run", help="the dock-station daemon: docked devices and inbox "
                              "folders, unattended, until SIGTERM")
    run.add_argument("--no-udev", action="store_true",
                     help="serve only the [[watch]] inbox folders (no device docking)")

    devices = commands.add_parser("devices", help="registered devices and officer assignments")
    device_actions = devices.add_subparsers(dest="devices_action", required=True, metavar="ACTION")
    devices_list = device_actions.add_parser("list", help="devices, docks, assignment history")
    devices_list.add_argument("--json", action="store_true", help="one JSON array")
    assign = device_actions.add_parser(
        "assign", help="assign DEVICE to OFFICER from a time on (closes the current assignment)")
    assign.add_argument("device", metavar="DEVICE")
    assign.add_argument("officer", metavar="OFFICER")
    assign.add_argument("--from", dest="valid_from", metavar="T", help="ISO 8601 time; without "
                        "an offset it is local time in station.timezone (default: now)")
    assign.add_argument("--to", dest="valid_to", metavar="T", help="end, exclusive (default: "
                        "open-ended, until the next assignment)")
    assign.add_argument("--note", default="", help="why, e.g. a shift plan or a ticket number")

    proxies = commands.add_parser("proxies", help="viewing copies: the queue, failures, retries")
    proxies.add_argument("--retry-failed", action="store_true", help="requeue failed proxy jobs")
    proxies.add_argument("--run", action="store_true", help="make the due proxies now, then exit")
    proxies.add_argument("--json", action="store_true", help="one JSON object")
    report = commands.add_parser("report", help="24-hour compliance per officer, device or "
                                 "station over a period")
    report.add_argument("--from", dest="period_from", required=True, metavar="DATE",
                        help="start (ISO 8601 date or time; local time in station.timezone)")
    report.add_argument("--to", dest="period_to", required=True, metavar="DATE",
                        help="end: a date includes that whole day; a time is exclusive")
    report.add_argument("--by", choices=("officer", "device", "station"), default="officer")
    report.add_argument("--format", dest="output_format", choices=("table", "csv", "json"),
                        default="table")
    add_api_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config, overrides=_parse_overrides(args.overrides))
        handler = {"ingest": cmd_ingest, "recordings": cmd_recordings, "verify": cmd_verify,
                   "checkpoint": cmd_checkpoint,
                   "status": cmd_status, "devices": cmd_devices, "run": cmd_run,
                   "proxies": cmd_proxies, "report": cmd_report, **API_HANDLERS}[args.command]
        return handler(config, args)
    except EvidenceError as exc:
        print(f"evidence-daemon: error: {safe(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("evidence-daemon: interrupted; finished work is kept, the rest resumes next run",
              file=sys.stderr)
        return 130


def _parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected SECTION.KEY=VALUE")
        overrides[key.strip()] = value
    return overrides


# -- ingest -------------------------------------------------------------------------------

class Progress:
    """One self-rewriting status line on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.files = 0
        self.bytes_done = 0
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.current = ""

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event == "copying":
            self.files += 1
            self.current = info["path"]
        elif event == "bytes":
            self.bytes_done += info["count"]
        elif event == "done":
            self.stream.write("\r\033[K")
            self.stream.flush()
            return
        now = time.monotonic()
        if now - self.last_draw < 0.2 and event == "bytes":
            return
        self.last_draw = now
        rate = self.bytes_done / max(now - self.started, 1e-6) / 1e6
        line = f"file {self.files}: {safe(self.current)[-50:]}  {self.bytes_done / 1e6:,.1f} MB  {rate:,.0f} MB/s"
        self.stream.write("\r\033[K" + line[: 120])
        self.stream.flush()


def cmd_ingest(config: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    station = open_station(config, connect_archive=False)
    try:
        with IngestLock(config.station.state_dir):
            archive_error = None
            try:
                station.connect()
            except StorageError as exc:
                # Still copy everything into the spool, so the device can be released.
                archive_error = exc.message
                log.error("archive unreachable; copying to the spool only: %s", exc.message)
            else:
                station.remove_leftovers()  # what an interrupted run left half-written
            summary = station.ingestor(progress=Progress(sys.stderr)).ingest(
                Origin(args.path, device_id=args.device_id, officer_id=args.officer_id),
                archive_error=archive_error,
            )
            if summary.archive_error is None:
                station.checkpoint()  # what this run appended, signed as a tree head
        recordings = station.recordings()
    finally:
        station.close()
    _print_summary(args.path, summary, recordings, time.monotonic() - started, sys.stdout)
    return _ingest_exit(summary, sys.stderr)


def _ingest_exit(summary: Summary, err: TextIO) -> int:
    """The exit code of an ingest run: 0 only when every file found is archived (or was)."""
    if summary.archive_error:
        err.write(
            f"evidence-daemon: error: {summary.pending} file(s) are safe in the spool but not yet "
            f"archived: {safe(summary.archive_error)}\nRun the same command again once the "
            "archive is reachable; nothing will be copied twice.\n"
        )
        return 6
    if summary.not_archived:
        err.write(f"evidence-daemon: error: {summary.not_archived} file(s) are not archived; "
                  "each is listed above with its reason. Nothing was lost: they are still on the "
                  "source (or safe in the spool). Run again once the cause is fixed.\n")
        if summary.spool_error:
            err.write(f"evidence-daemon: the spool is full: {safe(summary.spool_error)}\n"
                      "Free space in ingest.spool_dir (or give it a larger disk) and run again.\n")
        return 5
    return 0


_LABELS = {
    st.ARCHIVED: "archived (new recordings)",
    ALREADY_IN_ARCHIVE: "already in the archive (verified again, nothing stored twice)",
    st.DUPLICATE: "duplicates of archived content",
    ALREADY_ARCHIVED: "already archived earlier",
    st.SKIPPED: "skipped (links, special files)",
    st.FAILED: "not archived: could not be read, changed while read, or spool copy bad",
    RETRY_LATER: "not archived: stored copy did not verify",
    SPOOL_FULL: "not archived: not copied, the spool is full",
    NOT_STARTED: "not archived: not started (stopping)",
}


def _print_summary(
    root: Path, summary: Summary, recordings: list[dict[str, Any]], seconds: float, out: TextIO
) -> None:
    out.write(f"Ingest of {safe(root)}\n")
    for key, label in _LABELS.items():
        if summary.counts.get(key):
            out.write(f"  {summary.counts[key]:6d}  {label}\n")
    if summary.waiting_for_archive:
        out.write(f"  {summary.waiting_for_archive:6d}  waiting in the spool for the archive\n")
    if not summary.counts and not summary.pending:
        out.write("  no files found\n")
    rate = summary.bytes_copied / max(seconds, 1e-6) / 1e6
    out.write(f"  copied {summary.bytes_copied / 1e6:,.1f} MB in {seconds:.1f} s ({rate:,.1f} MB/s)\n")
    if summary.problems:
        out.write("Problems (each is recorded in the custody ledger):\n")
        for path, reason in summary.problems:
            out.write(f"  {safe(path)}: {safe(reason)}\n")
    states = Counter(recording["compliance"] for recording in recordings)
    out.write("Compliance (all recordings of this station): "
              + ", ".join(f"{states[name]} {name.replace('_', ' ')}" for name in COMPLIANCE_STATES)
              + "\n")


# -- recordings ---------------------------------------------------------------------------

def cmd_recordings(config: Config, args: argparse.Namespace) -> int:
    station = open_station(config, connect_archive=False)
    try:
        recordings = station.recordings()
    finally:
        station.close()
    if args.json:
        json.dump(recordings, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    if not recordings:
        print("no recordings yet")
        return 0
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
    return 0


# -- verify -------------------------------------------------------------------------------

def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 when everything checked holds (without trust anchors that means consistent,
    and the output says so), 7 when anything does not."""
    if args.all and args.ids:
        raise ConfigError("verify: give --all or recording ids, not both")
    trust = anchors_from(args.trust, config.verify.trusted_keys)
    tsa = (load_tsa_trust(config.timestamp.tsa_cert_file)
           if config.timestamp.tsa_cert_file is not None else None)
    store = build_store(config)
    store.check()
    saved = read_saved(args.checkpoint, store) if args.checkpoint is not None else None
    report = verify_archive(store, None if args.all or not args.ids else args.ids, trust=trust,
                            saved=saved.seen if saved is not None else (), tsa=tsa)
    if saved is not None and saved.signature_note.startswith("ALTERED"):
        report.problems.append(Problem(str(args.checkpoint), saved.signature_note,
                                       kind=ProblemKind.WITNESS))
    if config.database_path.exists():
        report.problems.extend(_station_head_problems(config, report))
    for writer, fingerprint in sorted(report.writers.items()):
        judgement = report.judgements.get(writer)
        note = f" ({judgement.note()})" if judgement is not None else ""
        print(f"ledger writer {writer}: key {fingerprint}{note}")
    if saved is not None:
        print(f"compared with the checkpoint saved {saved.made_at} by {saved.made_by} "
              f"({len(saved.seen)} writer(s)); file {saved.signature_note}")
    print(f"chains compared with {report.checkpoints_compared} checkpoint(s) seen of them "
          "(witnessed by other writers, saved, time-stamped)")
    for note in report.notes:
        print(f"info: {safe(note)}")
    for problem in report.problems:
        print(f"FAIL {safe(problem)}")
    if not report.trust_checked:
        print("WARNING: no trust anchors given (--trust or [verify] trusted_keys): only the "
              "archive's consistency was checked. Anyone able to write to the archive can add a "
              "writer with a fresh key or re-sign a whole chain consistently; compare the key "
              "fingerprints above with those your agency published.")
    else:
        print(f"writers' keys compared with {len(trust.fingerprints)} trust anchor(s) from "
              f"{trust.source}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    scope = "" if report.trust_checked else " (consistency only)"
    print(f"verified {report.recordings_checked} recording(s) and {report.entries_checked} ledger "
          f"entries from {len(report.writers)} writer(s) in {store.location}{scope}: {verdict}")
    return 0 if report.ok else 7


def _station_head_problems(config: Config, report: VerifyReport) -> list[Problem]:
    """Entries at the end of a chain can be deleted without breaking it; this station's own
    index remembers how far its chain went and the hash there, so a deletion (or a rewritten
    chain) is caught here. (Checkpoints witnessed by other writers generalise this.)"""
    database = Database(config.database_path)
    try:
        row = database.query_one("SELECT seq, entry_hash FROM ledger WHERE writer = ?"
                                 " ORDER BY seq DESC LIMIT 1", (config.station.id,))
    finally:
        database.close()
    if row is None:
        return []
    chain = report.chains.get(config.station.id)
    heads = chain.heads if chain is not None else {}
    problem = compare_with_witness(config.station.id, heads, Head(int(row["seq"]),
                                   str(row["entry_hash"])), witness="this station's own index")
    return [problem] if problem is not None else []


# -- checkpoint ---------------------------------------------------------------------------

def cmd_checkpoint(config: Config, args: argparse.Namespace) -> int:
    """Print (and with --out save) the latest checkpoint of every writer; signed with this
    machine's writer key when it has one it may read."""
    store = build_store(config)
    store.check()
    signing_key, made_by, key_note = None, f"user:{_operator() or 'unknown'}", ""
    for path, maker in ((config.key_path, f"station:{config.station.id}"),
                        (config.api_key_path, f"api:{config.api.id}")):
        if path.exists():
            try:
                signing_key, made_by = load_private_key(path), maker
                break
            except ConfigError as exc:
                key_note = f" (cannot use {path}: {exc.message})"
    saved = saved_checkpoint(store, made_by=made_by, signing_key=signing_key)
    print(f"checkpoint of {store.location}, {saved.document['made_at']}")
    for item in saved.checkpoints:
        details = item.entry["details"]
        print(f"  writer {item.writer}: checkpoint {item.seq} ({item.entry['time']}), tree of "
              f"{details['tree_size']} entries, root {details['root_hash']}, key "
              f"{item.fingerprint}")
    for writer in saved.without:
        print(f"  writer {writer}: no checkpoint yet: its entries are covered by nothing saved "
              "here (it signs one at its next start)")
    if args.out is not None:
        text = json.dumps(saved.document, ensure_ascii=False, indent=2) + "\n"
        temp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
        try:
            with temp.open("x", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, args.out)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise ConfigError(f"--out: cannot write {args.out}: {exc.strerror}") from exc
        signed = (f"signed by {made_by}" if signing_key is not None
                  else f"unsigned{key_note}; the checkpoints inside are signed by their writers")
        print(f"saved {len(saved.checkpoints)} checkpoint(s) to {args.out} ({signed}). Keep it "
              "away from the archive; `evidence-daemon verify --checkpoint "
              f"{args.out}` later shows any entry removed or rewritten up to here.")
    return 0


# -- status -------------------------------------------------------------------------------

def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from .daemon import read_status

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
        return 0
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
    return 0


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


# -- run --------------------------------------------------------------------------------

def cmd_run(config: Config, args: argparse.Namespace) -> int:
    # Imported here: only the daemon needs udev, watchdog and systemd notification.
    from .daemon import Source, run_daemon
    from .dock.manager import DockManager
    from .metrics.station import StationMetrics
    from .sources.mounter import Mounter
    from .sources.udev import UdevSource
    from .sources.watch import WatchFolders, finish

    def build_manager(station: Station, stop: threading.Event) -> DockManager:
        ingestor = station.ingestor(metrics=metrics.pipeline)
        return DockManager(config, ingestor, station.devices(), Mounter(config.dock),
                           station.database, station.ledger, finish_inbox_file=finish, stop=stop)

    def build_sources(manager: DockManager) -> list[Source]:
        sources: list[Source] = []
        if config.watch:
            sources.append(WatchFolders(config.watch, on_ready=manager.inbox_ready,
                                        skip=config.ingest.skip))
        if not args.no_udev:
            sources.append(UdevSource(manager.device_added, manager.device_removed,
                                      fs_types=[fstype for fstype, _ in config.dock.mount_commands]))
        sources.append(ProxyWorker.from_station(station))
        return sources

    station = open_station(config, connect_archive=False)
    metrics = StationMetrics(
        config, station.database, clock=station.clock, ledger=station.ledger,
        forecast=lambda: station.forecast(station.upload_meter.rate_bytes_per_s()))
    try:
        return run_daemon(config, station, build_sources=build_sources, build_manager=build_manager,
                          metrics=metrics)
    finally:
        station.close()


# -- proxies ------------------------------------------------------------------------------

def cmd_proxies(config: Config, args: argparse.Namespace) -> int:
    station = open_station(config, connect_archive=args.run)
    try:
        queue = ProxyQueue(station.database, station.clock)
        requeued = queue.retry_failed() if args.retry_failed else 0
        ran: dict[str, int] | None = None
        if args.run:
            ran = ProxyWorker.from_station(station).run_pending()
        else:
            queue.enqueue_archived()
        report = queue.report()
    finally:
        station.close()
    report["requeued"] = requeued
    report["ran"] = ran
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if args.retry_failed:
        print(f"requeued {requeued} failed proxy job(s)")
    if ran is not None:
        print("made now: " + (", ".join(f"{n} {state}" for state, n in sorted(ran.items()))
                              or "nothing was due"))
    print("proxies  " + "  ".join(f"{state} {n}" for state, n in report["counts"].items()))
    for problem in report["problems"]:
        retry = f", next try {problem['next_attempt_at']}" if problem["next_attempt_at"] else ""
        print(f"  {problem['sha256'][:12]}  {problem['state']} after {problem['attempts']} "
              f"attempt(s){retry}: {problem['reason']}")
    return 0


# -- devices ------------------------------------------------------------------------------

def cmd_devices(config: Config, args: argparse.Namespace) -> int:
    zone = ZoneInfo(config.station.timezone)
    station = open_station(config, connect_archive=False)
    try:
        registry = station.devices()
        if args.devices_action == "list":
            _print_devices(registry.list(), registry.pending_events(), args.json, sys.stdout)
            return 0
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
        return 6
    return 0


def _parse_time(text: str, option: str, zone: ZoneInfo) -> datetime:
    """ISO 8601; a time without an offset is wall-clock time in the station's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: not an ISO 8601 time (for example "
                          "2026-11-25T08:30, or 2026-11-25T08:30+08:00)") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _operator() -> str | None:
    """Who typed the command, for the ledger (the login behind sudo, when there is one)."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):
        return None


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


if __name__ == "__main__":
    sys.exit(main())


# -- report -------------------------------------------------------------------------------

REPORT_COLUMNS = ("group", "total", "on_time", "late", "overdue", "pending", "at_risk",
                  "late_hours_median", "late_hours_max", "time_implausible",
                  "time_implausible_late")


def _period_bound(text: str, option: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A date alone means the start of that day, or for ``--to`` the end of it."""
    moment = _parse_time(text, option, zone)
    if end and len(text.strip()) == 10:  # YYYY-MM-DD
        from datetime import timedelta

        moment += timedelta(days=1)
    return moment


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    import csv

    from .compliance.report import compliance_report

    zone = ZoneInfo(config.station.timezone)
    start = _period_bound(args.period_from, "--from", zone, end=False)
    end = _period_bound(args.period_to, "--to", zone, end=True)
    if end <= start:
        raise ConfigError("--to must be after --from")
    station = open_station(config, connect_archive=False)
    try:
        recordings = station.recordings()
        first_seen = Catalog(station.database).first_seen()
    finally:
        station.close()
    for recording in recordings:
        recording.setdefault("first_seen_at", first_seen.get(recording["id"]))
    groups = [group.as_dict() for group in compliance_report(
        recordings, by=args.by, station=config.station.id, start=start, end=end)]
    if args.output_format == "json":
        json.dump({"from": start.isoformat(), "to": end.isoformat(), "by": args.by,
                   "groups": groups}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif args.output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(groups)
    else:
        print(f"24-hour compliance by {args.by}, {start.isoformat()} to {end.isoformat()}")
        if not groups:
            print("no recordings in this period")
            return 0
        print(f"{args.by.upper():20} {'TOTAL':>6} {'ON TIME':>8} {'LATE':>6} {'OVERDUE':>8} "
              f"{'PENDING':>8} {'AT RISK':>8} {'LATE H MEDIAN':>14} {'LATE H MAX':>11} "
              f"{'BAD CLOCK':>10}")
        for group in groups:
            median = "-" if group["late_hours_median"] is None else f"{group['late_hours_median']:.1f}"
            longest = "-" if group["late_hours_max"] is None else f"{group['late_hours_max']:.1f}"
            bad_clock = str(group["time_implausible"])
            if group["time_implausible_late"]:
                bad_clock += f" ({group['time_implausible_late']} late)"
            print(f"{group['group'][:20]:20} {group['total']:>6} {group['on_time']:>8} "
                  f"{group['late']:>6} {group['overdue']:>8} {group['pending']:>8} "
                  f"{group['at_risk']:>8} {median:>14} {longest:>11} {bad_clock:>10}")
        if any(group["time_implausible"] for group in groups):
            print("BAD CLOCK: recordings whose recorder clock was not believed (flag "
                  "time_implausible), counted in no other column; \"late\" there means more than "
                  f"{config.compliance.deadline_hours:g} h after the station first saw them.")
    return 0
