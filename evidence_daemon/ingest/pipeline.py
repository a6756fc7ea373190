"""The ingest pipeline: a source tree in, verified recordings and custody events out.

One thread walks the tree and copies each file into the spool, hashing as it reads; it does
nothing else, because it holds the device. A small pool of upload workers takes each copy
from there: makes it durable, probes it, archives it — so the flush, probe and upload of file
n overlap the copy of file n+1. A bounded queue between them keeps copying from running far
ahead of the workers. Files are copied, and taken from the queue, earliest deadline first, with
files the recorder marked important before all others (``priority``).

Order of durable steps for one recording, each committed locally only after it is durable::

    spool copy fsync'd and renamed -> queue row 'spooled' -> catalog row (pending, deadline)
    original stored and verified -> manifest stored (create-only) -> ledger 'acquired',
    'archived' (once-only) -> queue row 'archived', recording archived_at -> spool copy released

A crash anywhere is recovered by running again: finished steps are found in the archive or the
ledger index and not repeated. This module never deletes or changes anything on the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..archive import keys
from ..archive.base import ArchiveStore, SetAside, StoredObject, hash_stored, rejected_key
from ..archive.link import UploadMeter, UploadSample
from ..compliance.rules import FLAG_TIME_IMPLAUSIBLE, archive_deadline
from ..config import Config
from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..clock import Clock, format_time, utc_now
from ..devices.attribution import attribute
from ..errors import (
    EvidenceError,
    IngestError,
    IntegrityError,
    MediaError,
    ObjectExistsError,
    StorageError,
)
from ..failpoints import failpoint
from ..media.probe import probe_file
from ..state import transitions as st
from ..state.db import Database
from .naming import parse_file_name
from .priority import OrderRules, UploadKey, UploadQueue, key_for
from .scanner import FILE, Found, scan_paths, scan_tree
from .spool import Copied, Spool, SpoolFullError
from .timing import ClockWindow, derive_times, judge_clock, parse_iso_time

log = logging.getLogger(__name__)

Prober = Callable[[Path], dict[str, Any]]
# (device id, recorded time) -> the officer assigned that device then, if any
OfficerLookup = Callable[[str, datetime], str | None]
# (source id, its fresh copy still to be made durable — or None when it is already spooled)
WorkItem = tuple[int, Copied | None]


class IngestMetrics(Protocol):
    """What the pipeline reports for monitoring (``metrics.station.PipelineMetrics``).

    Called from the copy thread and the upload workers; implementations must be thread-safe
    and must never raise.
    """

    def file_finished(self, result: str, size_bytes: int) -> None:
        """A source reached ``result`` (archived, duplicate, failed, skipped)."""

    def upload_failed(self) -> None:
        """An upload attempt failed because the archive was unreachable."""

    def recording_archived(self, *, duration_s: float, late: bool) -> None:
        """A recording's original was stored and verified, taking ``duration_s``."""


class NoMetrics:
    """The default: nobody is watching."""

    def file_finished(self, result: str, size_bytes: int) -> None:
        pass

    def upload_failed(self) -> None:
        pass

    def recording_archived(self, *, duration_s: float, late: bool) -> None:
        pass


# What happened to one file in one run, beside the source states of ``state.transitions``
# (archived, duplicate, failed, skipped). Each file of a run is counted exactly once.
ALREADY_ARCHIVED = "already archived"  # archived by an earlier run of this station
ALREADY_IN_ARCHIVE = "already in the archive"  # found verified in the archive (state rebuilt)
RETRY_LATER = "retry later"  # the archive is up but this copy did not verify
SPOOL_FULL = "spool full"  # not copied: no space in the spool; still on the device
NOT_STARTED = "not started (stopping)"
# Outcomes that leave a file's bytes outside the archive and outside the spool (still on the
# source). A file whose stored copy did not verify (RETRY_LATER) stays spooled: ``pending``.
UNREAD_OUTCOMES = (st.FAILED, SPOOL_FULL, NOT_STARTED)


@dataclass
class Summary:
    """What one ingest run did, for the CLI and the daemon's status."""

    counts: Counter[str] = field(default_factory=Counter)
    bytes_copied: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    archive_error: str | None = None
    pending: int = 0  # in the spool, not yet archived (archive away, or a copy to retry)
    spool_error: str | None = None  # the spool filled up: why the run stopped copying

    @property
    def not_archived(self) -> int:
        """Files of this run whose bytes are not proven in the archive: each is listed."""
        return self.pending + sum(self.counts[outcome] for outcome in UNREAD_OUTCOMES)

    @property
    def waiting_for_archive(self) -> int:
        """Spooled files that only wait for the archive (not counted under another outcome)."""
        return max(0, self.pending - self.counts[RETRY_LATER])

    @property
    def ok(self) -> bool:
        return self.archive_error is None and self.not_archived == 0


@dataclass(frozen=True)
class Origin:
    """Who the files belong to: the docked device, and defaults for officer attribution."""

    root: Path
    device_id: str | None = None
    officer_id: str | None = None

    @property
    def name(self) -> str:
        return self.device_id or str(self.root)


def source_key(origin: str, found: Found) -> str:
    raw = b"\0".join(
        [origin.encode("utf-8", "surrogateescape"), found.rel_path,
         str(found.size_bytes).encode(), str(found.mtime_ns).encode()]
    )
    return hashlib.sha256(raw).hexdigest()[:32]


def _iso(moment: datetime | None, zone: zoneinfo.ZoneInfo) -> str | None:
    """ISO 8601 in the station's time zone: what the officer's clock showed, with its offset."""
    return moment.astimezone(zone).isoformat() if moment is not None else None


class Ingestor:
    """Copies, archives and records. One per station process; safe to call repeatedly."""

    def __init__(
        self,
        config: Config,
        store: ArchiveStore,
        database: Database,
        ledger: LedgerWriter,
        *,
        clock: Clock = utc_now,
        prober: Prober = probe_file,
        progress: Callable[[str, dict[str, Any]], None] | None = None,
        officer_lookup: OfficerLookup | None = None,
        metrics: IngestMetrics | None = None,
        upload_meter: UploadMeter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.db = database
        self.ledger = ledger
        self.clock = clock
        self.prober = prober
        self.progress = progress or (lambda event, info: None)
        self.officer_lookup = officer_lookup
        self.metrics: IngestMetrics = metrics or NoMetrics()
        # How fast originals really reach the archive: the backlog forecast counts on it.
        self.upload_meter = upload_meter or UploadMeter()
        self.actor = f"station:{config.station.id}"
        self.timezone = zoneinfo.ZoneInfo(config.station.timezone)
        self.spool = Spool(
            config.spool_dir,
            chunk_bytes=config.ingest.copy_chunk_kib * 1024,
            hash_sm3=config.ingest.hash_sm3,
        )
        self._recording_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._spool_prepared = False
        # Sources a running ingest has queued: another run (a second docked device, the
        # retry job) leaves them to it, so each dock's summary counts its own files only.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self.order_rules = OrderRules.from_config(config)

    # -- the run --------------------------------------------------------------------------

    def ingest(
        self,
        origin: Origin,
        *,
        archive_error: str | None = None,
        paths: Sequence[bytes] | None = None,
        progress: Callable[[str, dict[str, Any]], None] | None = None,
        stop: threading.Event | None = None,
        skip: Sequence[str] = (),
    ) -> Summary:
        """Ingest every file under ``origin.root``, and finish work left by earlier runs.

        With ``archive_error`` (the archive is known to be unreachable) files are still copied
        into the spool — a docked device can be released — and left there for the next run.
        With ``paths`` (relative to the root, as bytes) only those files are taken.
        ``progress`` overrides the constructor's callback for this run (one per docked
        device); when ``stop`` is set no further file is started — what was copied is still
        made durable and archived, the rest waits for the next dock. ``skip`` adds names to
        the configured skip list for this run.
        """
        progress = progress or self.progress
        root = Path(origin.root)
        if not root.is_dir():
            raise IngestError(f"{root} is not a directory")
        with self._locks_guard:
            if not self._spool_prepared:
                # Once per process: a concurrent ingest's .part files are not leftovers.
                self.spool.prepare()
                self._spool_prepared = True
        summary = Summary(archive_error=archive_error)
        # Workers take the most urgent queued item first (``priority.upload_key``).
        work: UploadQueue[WorkItem] = UploadQueue(maxsize=self.config.ingest.queue_depth)
        archive_down = threading.Event()
        if archive_error is not None:
            archive_down.set()
        workers = [
            threading.Thread(
                target=self._upload_worker, args=(work, summary, archive_down), daemon=True,
                name=f"upload-{index}",
            )
            for index in range(self.config.archive.upload_workers)
        ]
        for worker in workers:
            worker.start()
        taken: list[int] = []  # sources this run queued: its summary speaks for these only
        taken_ids: set[int] = set()  # the same, to count a file found again by the scan once
        try:
            with self._held_lock:
                resume = [entry for entry in self._resume_list() if entry[0] not in self._held]
                self._held.update(source_id for source_id, _ in resume)
            for source_id, _ in resume:
                taken.append(source_id)
                taken_ids.add(source_id)
            skip_names = (*self.config.ingest.skip, *skip)
            found_entries = (
                scan_tree(os.fsencode(root), skip_names) if paths is None
                else scan_paths(os.fsencode(root), paths, skip_names)
            )
            for (important, deadline, first_seen), entry in self._walk_order(resume, found_entries):
                if isinstance(entry, int):  # left spooled by an earlier run: only to upload
                    work.put((important, deadline, first_seen), (entry, None))
                    continue
                found = entry
                if stop is not None and stop.is_set():
                    summary.counts[NOT_STARTED] += 1
                    continue
                if summary.spool_error is not None:
                    summary.counts[SPOOL_FULL] += 1
                    continue
                item = self._take_with_room(origin, found, summary, progress, work, taken_ids)
                if item is not None:
                    with self._held_lock:
                        self._held.add(item[0])
                    taken.append(item[0])
                    taken_ids.add(item[0])
                    work.put((important, deadline, item[0]), item)
        finally:
            work.close(len(workers))
            for worker in workers:
                worker.join()
            with self._held_lock:
                self._held.difference_update(taken)
        summary.pending = self._count_spooled(taken)
        progress("done", {"summary": summary})
        return summary

    def resume(self, *, archive_error: str | None = None) -> Summary:
        """Finish what earlier runs left spooled or unreported, reading no device."""
        self.spool.root.mkdir(parents=True, exist_ok=True)
        return self.ingest(Origin(self.spool.root), paths=[], archive_error=archive_error)

    def _resume_list(self) -> list[tuple[int, UploadKey]]:
        """Sources earlier runs left spooled (or unreported), most urgent first: by their
        catalogued deadline once ``_catalog_pending`` gave them one, else the estimate."""
        listed = []
        for row in self.db.query(
            "SELECT s.id, s.rel_path, s.mtime_ns, s.discovered_at, r.archive_deadline"
            " FROM sources AS s LEFT JOIN recordings AS r ON r.sha256 = s.sha256"
            " WHERE s.state = ? OR (s.state IN (?, ?) AND s.reported = 0)",
            (st.SPOOLED, st.FAILED, st.SKIPPED),
        ):
            deadline = row["archive_deadline"]
            listed.append((int(row["id"]), key_for(
                row["rel_path"], row["mtime_ns"], first_seen=int(row["id"]),
                seen_at=datetime.fromisoformat(row["discovered_at"]), rules=self.order_rules,
                deadline=datetime.fromisoformat(deadline) if deadline else None,
            )))
        return listed

    def _walk_order(
        self, resume: list[tuple[int, UploadKey]], found_entries: Iterable[Found]
    ) -> list[tuple[UploadKey, int | Found]]:
        """What this run queues, most urgent first: the resume list (source ids) and the
        device's files (copied in this order, so the most urgent reach the spool first; the
        dock's survey already walked the tree, so listing it first costs little). On a tie,
        what earlier runs left goes before what this run finds."""
        seen_at = self.clock()
        after_resume = max((source_id for source_id, _ in resume), default=0) + 1
        walk: list[tuple[UploadKey, int | Found]] = [(key, source_id) for source_id, key in resume]
        walk.extend(
            (key_for(found.display_path, found.mtime_ns, first_seen=after_resume + index,
                     seen_at=seen_at, rules=self.order_rules), found)
            for index, found in enumerate(found_entries)
        )
        walk.sort(key=lambda entry: entry[0])
        return walk

    def _count_spooled(self, source_ids: list[int]) -> int:
        count = 0
        for start in range(0, len(source_ids), 500):
            batch = source_ids[start:start + 500]
            count += int(self.db.scalar(
                f"SELECT COUNT(*) FROM sources WHERE state = ? AND id IN ({','.join('?' * len(batch))})",
                (st.SPOOLED, *batch),
            ))
        return count

    # -- copy stage (one thread) ---------------------------------------------------------

    def _take_with_room(
        self, origin: Origin, found: Found, summary: Summary,
        progress: Callable[[str, dict[str, Any]], None],
        work: UploadQueue[WorkItem], taken_ids: set[int],
    ) -> WorkItem | None:
        """``_take``; when the spool is full, wait once for the workers to archive (and so
        release) what is queued, then try again. A spool that is still full stops the copying:
        every later file would fail the same way, and all of them stay on the device."""
        try:
            return self._take(origin, found, summary, progress, taken_ids)
        except SpoolFullError as first:
            if work.unfinished_tasks:
                log.warning("%s; waiting for queued files to be archived", first.message)
                work.join()
                try:
                    return self._take(origin, found, summary, progress, taken_ids)
                except SpoolFullError as again:
                    error = again
            else:
                error = first
        summary.spool_error = error.message
        summary.counts[SPOOL_FULL] += 1
        summary.problems.append((found.display_path, error.message))
        log.error("%s: %s", found.display_path, error.message)
        return None

    def _take(
        self, origin: Origin, found: Found, summary: Summary,
        progress: Callable[[str, dict[str, Any]], None], taken_ids: set[int],
    ) -> WorkItem | None:
        """Register one entry and copy it into the spool; returns the work for a worker.
        Raises ``SpoolFullError`` (the source is left as it was: the spool, not the file, is
        to blame)."""
        key = source_key(origin.name, found)
        row = self.db.query_one("SELECT id, state FROM sources WHERE source_key = ?", (key,))
        if row is not None and int(row["id"]) in taken_ids and row["state"] != st.FAILED:
            return None  # queued from the resume list: counted when its worker finishes it
        if row is not None and row["state"] in st.FINAL_STATES:
            summary.counts[ALREADY_ARCHIVED if row["state"] != st.SKIPPED else st.SKIPPED] += 1
            return None
        if row is not None and row["state"] == st.SPOOLED:
            return None  # queued from the resume list already
        now = format_time(self.clock())
        if row is None:
            with self.db.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO sources (source_key, origin, root, rel_path, rel_path_b64,"
                    " device_id, officer_id, size_bytes, mtime_ns, state, discovered_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, origin.name, str(origin.root), found.display_path, found.rel_path_b64,
                     origin.device_id, origin.officer_id, found.size_bytes, found.mtime_ns,
                     st.DISCOVERED, now, now),
                )
                source_id = int(cursor.lastrowid or 0)
        else:
            source_id = int(row["id"])
        if found.kind != FILE:
            target = st.SKIPPED if found.kind != "unreadable" else st.FAILED
            self._set_state(source_id, target, found.reason, count_attempt=target == st.FAILED)
            self.metrics.file_finished(target, 0)
            summary.counts[target] += 1
            summary.problems.append((found.display_path, found.reason or target))
            return source_id, None
        progress("copying", {"path": found.display_path, "size_bytes": found.size_bytes})
        try:
            copied = self.spool.copy_in(
                os.path.join(os.fsencode(origin.root), found.rel_path),
                source_id,
                expected_size=found.size_bytes,
                expected_mtime_ns=found.mtime_ns,
                on_bytes=lambda count: progress("bytes", {"count": count}),
            )
        except SpoolFullError as exc:
            self.db.execute("UPDATE sources SET reason = ?, updated_at = ? WHERE id = ?",
                            (exc.message, now, source_id))
            raise
        except IngestError as exc:
            self._set_state(source_id, st.FAILED, exc.message, count_attempt=True)
            self.metrics.file_finished(st.FAILED, 0)
            summary.counts[st.FAILED] += 1
            summary.problems.append((found.display_path, exc.message))
            log.warning("%s: %s", found.display_path, exc.message)
            return source_id, None
        summary.bytes_copied += copied.size_bytes
        return source_id, copied

    def _make_durable(self, source_id: int, copied: Copied, summary: Summary) -> None:
        """fsync a fresh copy and mark its source spooled. On a worker, so the disk's
        write-back of file n overlaps the copy of file n+1."""
        try:
            spool_path = self.spool.make_durable(copied)
        except IngestError as exc:
            self._set_state(source_id, st.FAILED, exc.message, count_attempt=True)
            summary.counts[st.FAILED] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error("source %s: %s", source_id, exc.message)
            return
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE sources SET state = ?, reason = NULL, sha256 = ?, sm3 = ?, spool_path = ?,"
                " acquired_at = ?, updated_at = ? WHERE id = ?",
                (st.SPOOLED, copied.sha256, copied.sm3, str(spool_path),
                 format_time(self.clock()), format_time(self.clock()), source_id),
            )

    def _catalog_pending(self, source: Any) -> None:
        """Enter a spooled recording in the local catalog as pending, with its times and media
        facts. Runs on an upload worker (ffprobe takes ~0.15 s a file, off the copy's path)
        and before any archive access, so a pending recording shows its deadline even while
        the archive is away."""
        sha256, size_bytes = source["sha256"], source["size_bytes"]
        if self.db.query_one("SELECT 1 FROM recordings WHERE sha256 = ?", (sha256,)) is not None:
            return
        flags: dict[str, str] = {}
        media: dict[str, Any] | None = None
        if size_bytes == 0:
            flags["empty"] = "the file has no bytes (0-byte file on the device)"
        elif self.config.ingest.probe:
            try:
                media = self.prober(Path(source["spool_path"]))
            except MediaError as exc:
                flags["unplayable"] = exc.message
        file_name = source["rel_path"].rpartition("/")[2]
        name_facts = parse_file_name(file_name, self.config.ingest.filename_patterns, self.timezone)
        times = derive_times(
            name_start=name_facts.recorded_start if name_facts else None,
            creation_time=parse_iso_time(media.get("creation_time")) if media else None,
            duration_s=media.get("duration_s") if media else None,
            mtime=datetime.fromtimestamp(source["mtime_ns"] / 1e9, tz=timezone.utc),
        )
        first_seen_at = self.clock()
        verdict = judge_clock(
            times, self._clock_window(first_seen_at),
            invalid_name_time=name_facts.invalid_start if name_facts else None, zone=self.timezone,
        )
        if verdict.implausible is not None:
            # Kept apart from real lateness: the deadline counts from when the station saw it.
            flags[FLAG_TIME_IMPLAUSIBLE] = verdict.implausible
            log.warning("%s: recorder clock not believed: %s", source["rel_path"], verdict.implausible)
        deadline = archive_deadline(verdict.counts_from, self.config.compliance.deadline_hours)
        device_id = (name_facts.device_id if name_facts else None) or source["device_id"]
        # The assignment is that of the physical device docked (the source's), at the time the
        # recording started: a device handed over mid-recording stays with who started it.
        # A recorder clock that is not believed says nothing about who held the device; the
        # holder when the station first saw the file (usually whoever docked it) is the best known.
        recorded_at = (times.recorded_start or times.recorded_end if verdict.implausible is None
                       else first_seen_at)
        assigned_officer = (
            self.officer_lookup(source["device_id"], recorded_at)
            if self.officer_lookup is not None and source["device_id"] and recorded_at is not None
            else None
        )
        officer_id, officer_flags = attribute(
            name_officer=name_facts.officer_id if name_facts else None,
            assigned_officer=assigned_officer,
            default_officer=source["officer_id"],
        )
        flags.update(officer_flags)
        extension = keys.safe_extension(file_name)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO recordings (sha256, sm3, size_bytes, extension, object_key,"
                " device_id, officer_id, recorded_start, recorded_end, time_source,"
                " archive_deadline, flags, flag_reasons, media, first_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sha256, source["sm3"], size_bytes, extension, keys.original_key(sha256, extension),
                 device_id, officer_id, _iso(times.recorded_start, self.timezone),
                 _iso(times.recorded_end, self.timezone), times.time_source,
                 _iso(deadline, self.timezone), json.dumps(sorted(flags)),
                 json.dumps(flags, ensure_ascii=False),
                 json.dumps(media, ensure_ascii=False) if media is not None else None,
                 format_time(first_seen_at)),
            )

    def _clock_window(self, seen_at: datetime) -> ClockWindow:
        """When a recorder's time is believed, for a file the station saw at ``seen_at``."""
        compliance = self.config.compliance
        return ClockWindow(
            earliest=compliance.earliest_plausible_at(self.timezone), seen_at=seen_at,
            tolerance=timedelta(hours=compliance.clock_tolerance_hours),
        )

    def _set_state(self, source_id: int, state: str, reason: str | None, *, count_attempt: bool = False) -> None:
        with self.db.transaction() as conn:
            current = conn.execute("SELECT state FROM sources WHERE id = ?", (source_id,)).fetchone()
            if current["state"] != state and not st.can_move(current["state"], state):
                raise IngestError(f"source {source_id}: cannot move from {current['state']} to {state}")
            conn.execute(
                "UPDATE sources SET state = ?, reason = ?, reported = CASE WHEN ? THEN 0 ELSE reported END,"
                " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (state, reason, state in (st.FAILED, st.SKIPPED), 1 if count_attempt else 0,
                 format_time(self.clock()), source_id),
            )

    # -- upload stage (worker threads) ------------------------------------------------------

    def _upload_worker(
        self, work: UploadQueue[WorkItem], summary: Summary, archive_down: threading.Event
    ) -> None:
        while (item := work.get()) is not None:
            try:
                self._work_on(item, summary, archive_down)
            finally:
                work.task_done()  # the copy thread may wait for the queue to drain (spool full)
        work.task_done()

    def _work_on(self, item: WorkItem, summary: Summary, archive_down: threading.Event) -> None:
        source_id, copied = item
        try:
            if copied is not None:
                self._make_durable(source_id, copied, summary)
            self.catalog(source_id)
            if archive_down.is_set():
                return  # stays spooled; the next run (or the daemon's retry) takes it
            outcome = self.process(source_id)
        except (IntegrityError, ObjectExistsError) as exc:
            # This file's stored copy is wrong (or was altered): the archive itself is up.
            summary.counts[RETRY_LATER] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error("source %s: %s", source_id, exc.message)
            self.db.execute(
                "UPDATE sources SET reason = ?, attempts = attempts + 1 WHERE id = ?",
                (exc.message, source_id),
            )
            return
        except StorageError as exc:
            self.metrics.upload_failed()
            archive_down.set()
            summary.archive_error = exc.message
            log.error("archive unreachable, files stay safe in the spool: %s", exc.message)
            self.db.execute(
                "UPDATE sources SET reason = ?, attempts = attempts + 1 WHERE id = ?",
                (f"not yet archived: {exc.message}", source_id),
            )
            return
        except IngestError as exc:
            # The spool copy turned out bad: the source is failed, to be read again.
            summary.counts[st.FAILED] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error("source %s: %s", source_id, exc.message)
            return
        except EvidenceError as exc:
            # Anything else about this one file (the state database refused, ...): record, go on.
            summary.counts[RETRY_LATER] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error("source %s: %s", source_id, exc.message)
            return
        if outcome:
            summary.counts[outcome] += 1
            size = self.db.scalar("SELECT size_bytes FROM sources WHERE id = ?", (source_id,))
            self.metrics.file_finished(st.ARCHIVED if outcome == ALREADY_IN_ARCHIVE else outcome,
                                       int(size or 0))

    def _describe_source(self, source_id: int) -> str:
        """The source's path as on the device, for a problem line (its id if unreadable)."""
        try:
            row = self.db.query_one("SELECT rel_path FROM sources WHERE id = ?", (source_id,))
        except EvidenceError:
            row = None
        return str(row["rel_path"]) if row is not None else f"source {source_id}"

    def _lock_for(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._recording_locks.setdefault(sha256, threading.Lock())

    def catalog(self, source_id: int) -> None:
        """Make sure a spooled source's recording is in the local catalog (idempotent)."""
        source = self.db.query_one("SELECT * FROM sources WHERE id = ?", (source_id,))
        if source is not None and source["state"] == st.SPOOLED:
            with self._lock_for(source["sha256"]):
                self._catalog_pending(source)

    def process(self, source_id: int) -> str | None:
        """Carry one queued source as far as it can go; returns what happened to it."""
        source = self.db.query_one("SELECT * FROM sources WHERE id = ?", (source_id,))
        if source is None:
            return None
        if source["state"] in (st.FAILED, st.SKIPPED):
            if not source["reported"]:
                self._report_unarchivable(source)
            return None
        if source["state"] != st.SPOOLED:
            return None
        sha256 = source["sha256"]
        with self._lock_for(sha256):
            # Concurrent ingests (several docked devices) may both hold this source: whoever
            # gets the lock second must see what the first did.
            source = self.db.query_one("SELECT * FROM sources WHERE id = ?", (source_id,))
            if source is None or source["state"] != st.SPOOLED:
                return None
            self._catalog_pending(source)
            recording = self.db.query_one("SELECT * FROM recordings WHERE sha256 = ?", (sha256,))
            assert recording is not None, "_catalog_pending made it"
            if recording["archived_at"] is not None:
                self._record_duplicate(source, recording)
                return st.DUPLICATE
            return self._archive(source, recording)

    def _source_details(self, source: Any) -> dict[str, Any]:
        details = {
            "source_key": source["source_key"],
            "path": source["rel_path"],
            "root": source["root"],
            "device_id": source["device_id"],
            "officer_id": source["officer_id"],
            "size_bytes": source["size_bytes"],
            "mtime": format_time(datetime.fromtimestamp(source["mtime_ns"] / 1e9, tz=timezone.utc))
            if source["mtime_ns"] is not None else None,
            "acquired_at": source["acquired_at"],
        }
        if source["rel_path_b64"]:
            details["path_b64"] = source["rel_path_b64"]
        return details

    def _archive(self, source: Any, recording: Any) -> str:
        started = time.monotonic()
        sha256 = recording["sha256"]
        spool_path = Path(source["spool_path"])
        object_key = recording["object_key"]
        if not spool_path.exists() and self.store.stat(object_key) is None:
            self._set_state(source["id"], st.FAILED, "spool copy was lost; read again at next dock",
                            count_attempt=True)
            raise IngestError(f"{source['rel_path']}: spool copy {spool_path} is missing")
        self.progress("uploading", {"path": source["rel_path"], "size_bytes": recording["size_bytes"]})
        metadata = {"sha256": sha256, "station": self.config.station.id}
        if recording["sm3"]:
            metadata["sm3"] = recording["sm3"]
        already_in_archive = self.store.stat(keys.manifest_key(sha256)) is not None
        upload_started = time.monotonic()
        stored = self._store_original(source, recording, spool_path, metadata)
        if not already_in_archive:
            self.upload_meter.record(UploadSample(upload_started, time.monotonic(),
                                                  int(recording["size_bytes"])))
        failpoint("archive.after_upload")
        manifest_bytes = self._write_manifest(source, recording, stored.verified_by, stored.version_id,
                                              stored.retain_until)
        manifest = json.loads(manifest_bytes)
        failpoint("archive.after_manifest")
        self.ledger.append(
            Event.ACQUIRED, recording=sha256, actor=self.actor, once=True,
            details={**self._source_details(source), "sha256": sha256, "sm3": recording["sm3"]},
        )
        self.ledger.append(
            Event.ARCHIVED, recording=sha256, actor=self.actor, once=True,
            details={
                "original_key": object_key,
                "manifest_key": keys.manifest_key(sha256),
                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "size_bytes": recording["size_bytes"],
                "verified_by": stored.verified_by,
                "verified_at": manifest["verified_at"],
                "archive": self.store.location,
            },
        )
        failpoint("ingest.before_commit")
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE recordings SET archived_at = ?, manifest_sha256 = ?, verified_by = ?"
                " WHERE sha256 = ?",
                (manifest["verified_at"], hashlib.sha256(manifest_bytes).hexdigest(),
                 stored.verified_by, sha256),
            )
            conn.execute(
                "UPDATE sources SET state = ?, reason = NULL, updated_at = ? WHERE id = ?",
                (st.ARCHIVED, format_time(self.clock()), source["id"]),
            )
        self._release_spool(sha256)
        if already_in_archive:
            return ALREADY_IN_ARCHIVE
        deadline = recording["archive_deadline"]
        self.metrics.recording_archived(
            duration_s=time.monotonic() - started,
            late=deadline is not None
            and datetime.fromisoformat(manifest["verified_at"]) > datetime.fromisoformat(deadline),
        )
        log.info("archived %s (%s) as %s", source["rel_path"], sha256[:12], object_key)
        return st.ARCHIVED

    def _store_original(
        self, source: Any, recording: Any, spool_path: Path, metadata: dict[str, str]
    ) -> StoredObject:
        """``put_original``, and the way out when the key holds a copy that never verified.

        A stored original that does not hash to its recording id blocks the key (the store
        never overwrites). If no custody event ever named it — no manifest, no ``archived``
        event: it was never proven, so it is no evidence of anything — it is set aside
        (``set_aside``: moved, or left as an old version, never deleted) with a signed
        ``set-aside`` event first, and the spool copy is stored. If the spool copy is the bad
        one, it is dropped and its sources are read again from the device at the next dock.
        """
        sha256, size_bytes = recording["sha256"], recording["size_bytes"]
        object_key = recording["object_key"]

        def put(replacing: SetAside | None = None) -> StoredObject:
            return self.store.put_original(
                object_key, spool_path, sha256=sha256, size_bytes=size_bytes, metadata=metadata,
                replacing=replacing,
            )

        try:
            return put()
        except (IntegrityError, ObjectExistsError) as exc:
            problem = exc.message
            refused = exc
        damage = self.spool.check(sha256, size_bytes)
        if damage is not None:
            self._spool_copy_damaged(sha256, damage)
            raise IngestError(f"{source['rel_path']}: {damage}; nothing was archived from it, "
                              "the file is read again from the device at the next dock")
        if self.store.stat(keys.manifest_key(sha256)) is not None or self.db.query_one(
            "SELECT 1 FROM ledger WHERE event = 'archived' AND recording = ?", (sha256,)
        ) is not None:
            raise IntegrityError(
                f"{problem}; the archive holds a manifest or an 'archived' event for it, so "
                "it is evidence of tampering and stays as it is (run verify)"
            )
        if self.store.stat(object_key) is None:
            raise refused  # nothing was published under the key: nothing to set aside
        found_sha256, found_size = hash_stored(self.store, object_key)
        found = self.store.stat(object_key)
        version_id = found.version_id if found is not None else None
        tag = found_sha256[:16]
        where = (f"version {version_id}" if version_id and version_id != "null"
                 else rejected_key(object_key, tag))
        self.ledger.append(
            Event.SET_ASIDE, recording=sha256, actor=self.actor, once=True,
            details={
                "source_key": f"set-aside:{object_key}:{found_sha256}:{version_id}",
                "key": object_key, "found_sha256": found_sha256, "found_size_bytes": found_size,
                "expected_size_bytes": size_bytes, "version_id": version_id,
                "set_aside_as": where, "reason": problem,
            },
        )
        aside = self.store.set_aside(object_key, tag=tag)
        log.warning("%s held a copy that never verified (%s); set aside as %s, storing the "
                    "spool copy", object_key, problem, aside.location)
        return put(replacing=aside)

    def _spool_copy_damaged(self, sha256: str, reason: str) -> None:
        self.spool.discard_damaged(sha256)
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE sources SET state = ?, reason = ?, reported = 0, attempts = attempts + 1,"
                " updated_at = ? WHERE sha256 = ? AND state = ?",
                (st.FAILED, f"{reason}; read again at the next dock", format_time(self.clock()),
                 sha256, st.SPOOLED),
            )

    def _write_manifest(
        self, source: Any, recording: Any, verified_by: str | None, version_id: str | None,
        retain_until: str | None,
    ) -> bytes:
        """Store the manifest once; if an earlier attempt stored it, use that one unchanged."""
        key = keys.manifest_key(recording["sha256"])
        if self.store.stat(key) is not None:
            return self.store.get_bytes(key)
        flags = json.loads(recording["flags"])
        manifest = {
            "manifest_version": 1,
            "recording": recording["sha256"],
            "sha256": recording["sha256"],
            "sm3": recording["sm3"],
            "size_bytes": recording["size_bytes"],
            "original_key": recording["object_key"],
            "extension": recording["extension"],
            "station": self.config.station.id,
            "device_id": recording["device_id"],
            "officer_id": recording["officer_id"],
            "recorded_start": recording["recorded_start"],
            "recorded_end": recording["recorded_end"],
            "time_source": recording["time_source"],
            "timezone": self.config.station.timezone,
            "archive_deadline": recording["archive_deadline"],
            "source": self._source_details(source),
            "media": json.loads(recording["media"]) if recording["media"] else None,
            "flags": flags,
            "flag_reasons": json.loads(recording["flag_reasons"]),
            "first_seen_at": recording["first_seen_at"],
            "verified_at": format_time(self.clock()),
            "storage": {"verified_by": verified_by, "version_id": version_id, "retain_until": retain_until},
            "software": {"name": "evidence-daemon", "version": __version__},
        }
        data = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"
        try:
            self.store.put_bytes(key, data)
        except ObjectExistsError:
            return self.store.get_bytes(key)
        return data

    def _record_duplicate(self, source: Any, recording: Any) -> None:
        self.ledger.append(
            Event.DUPLICATE_SOURCE, recording=recording["sha256"], actor=self.actor, once=True,
            details={**self._source_details(source), "sha256": recording["sha256"]},
        )
        failpoint("ingest.before_commit")
        self._set_state(source["id"], st.DUPLICATE, None)
        self._release_spool(recording["sha256"])

    def _release_spool(self, sha256: str) -> None:
        waiting = self.db.scalar(
            "SELECT COUNT(*) FROM sources WHERE sha256 = ? AND state = ?", (sha256, st.SPOOLED)
        )
        if int(waiting) == 0:
            self.spool.release(sha256)

    def _report_unarchivable(self, source: Any) -> None:
        self.ledger.append(
            Event.QUARANTINED, recording=None, actor=self.actor, once=True,
            details={**self._source_details(source), "reason": source["reason"], "state": source["state"]},
        )
        self.db.execute("UPDATE sources SET reported = 1 WHERE id = ?", (source["id"],))
