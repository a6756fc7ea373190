"""``ingest``: archive every file under a path, wait, print a summary and an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from ..compliance.rules import STATES as COMPLIANCE_STATES
from ..config import Config
from ..errors import StorageError
from ..ingest.outcomes import Progress as Event
from ..ingest.pipeline import (
    ALREADY_ARCHIVED,
    ALREADY_IN_ARCHIVE,
    NOT_STARTED,
    RETRY_LATER,
    SPOOL_FULL,
    Origin,
    Summary,
)
from ..state import transitions as st
from ..station import IngestLock, open_station
from ..terminal import safe
from .exit_codes import ExitCode
from ..i18n import N_, _, word

log = logging.getLogger("evidence_daemon")


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

    def __call__(self, event: Event, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event == Event.COPYING:
            self.files += 1
            self.current = info["path"]
        elif event == Event.BYTES:
            self.bytes_done += info["count"]
        elif event == Event.DONE:
            self.stream.write("\r\033[K")
            self.stream.flush()
            return
        now = time.monotonic()
        if now - self.last_draw < 0.2 and event == Event.BYTES:
            return
        self.last_draw = now
        rate = self.bytes_done / max(now - self.started, 1e-6) / 1e6
        line = _("file {number}: {path}  {megabytes:,.1f} MB  {rate:,.0f} MB/s").format(
            number=self.files, path=safe(self.current)[-50:], megabytes=self.bytes_done / 1e6,
            rate=rate)
        self.stream.write("\r\033[K" + line[: 120])
        self.stream.flush()


def cmd_ingest(config: Config, args: argparse.Namespace) -> ExitCode:
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
                log.error(_("archive unreachable; copying to the spool only: %s"), exc.message)
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


def _ingest_exit(summary: Summary, err: TextIO) -> ExitCode:
    """The exit code of an ingest run: 0 only when every file found is archived (or was)."""
    if summary.archive_error:
        err.write(_(
            "evidence-daemon: error: {count} file(s) are safe in the spool but not yet "
            "archived: {error}\nRun the same command again once the "
            "archive is reachable; nothing will be copied twice.\n"
        ).format(count=summary.pending, error=safe(summary.archive_error)))
        return ExitCode.ARCHIVE_UNREACHABLE
    if summary.not_archived:
        err.write(_("evidence-daemon: error: {count} file(s) are not archived; "
                    "each is listed above with its reason. Nothing was lost: they are still on "
                    "the source (or safe in the spool). Run again once the cause is fixed.\n"
                    ).format(count=summary.not_archived))
        if summary.spool_error:
            err.write(_("evidence-daemon: the spool is full: {error}\n"
                        "Free space in ingest.spool_dir (or give it a larger disk) and run "
                        "again.\n").format(error=safe(summary.spool_error)))
        return ExitCode.NOT_ARCHIVED
    return ExitCode.OK


_LABELS = {
    st.ARCHIVED: N_("archived (new recordings)"),
    ALREADY_IN_ARCHIVE: N_("already in the archive (verified again, nothing stored twice)"),
    st.DUPLICATE: N_("duplicates of archived content"),
    ALREADY_ARCHIVED: N_("already archived earlier"),
    st.SKIPPED: N_("skipped (links, special files)"),
    st.FAILED: N_("not archived: could not be read, changed while read, or spool copy bad"),
    RETRY_LATER: N_("not archived: stored copy did not verify"),
    SPOOL_FULL: N_("not archived: not copied, the spool is full"),
    NOT_STARTED: N_("not archived: not started (stopping)"),
}


def _print_summary(
    root: Path, summary: Summary, recordings: list[dict[str, Any]], seconds: float, out: TextIO
) -> None:
    out.write(_("Ingest of {path}").format(path=safe(root)) + "\n")
    for key, label in _LABELS.items():
        if summary.counts.get(key):
            out.write(f"  {summary.counts[key]:6d}  {_(label)}\n")
    if summary.waiting_for_archive:
        out.write(f"  {summary.waiting_for_archive:6d}  "
                  + _("waiting in the spool for the archive") + "\n")
    if not summary.counts and not summary.pending:
        out.write("  " + _("no files found") + "\n")
    rate = summary.bytes_copied / max(seconds, 1e-6) / 1e6
    out.write("  " + _("copied {megabytes:,.1f} MB in {seconds:.1f} s ({rate:,.1f} MB/s)").format(
        megabytes=summary.bytes_copied / 1e6, seconds=seconds, rate=rate) + "\n")
    if summary.problems:
        out.write(_("Problems (each is recorded in the custody ledger):") + "\n")
        for path, reason in summary.problems:
            out.write(f"  {safe(path)}: {safe(reason)}\n")
    states = Counter(recording["compliance"] for recording in recordings)
    out.write(_("Compliance (all recordings of this station): ")
              + _(", ").join(f"{states[name]} {word(name)}" for name in COMPLIANCE_STATES)
              + "\n")
