"""The ingest pipeline: a source tree in, verified recordings and custody events out.

One thread walks the tree and copies each file into the spool, hashing as it reads; it does
nothing else, because it holds the device. A small pool of upload workers takes each copy
from there: makes it durable, probes it, archives it — so the flush, probe and upload of file
n overlap the copy of file n+1. A bounded queue between them keeps copying from running far
ahead of the workers. Files are copied, and taken from the queue, earliest deadline first, with
files the recorder marked important before all others (``priority``).

A docked device need not wait for its uploads (``ingest(release_spooled=True)``): the run's
workers then only make each copy durable and catalogue it, and hand it to the station's one
upload stage — long-lived workers taking what every device spooled in one order, important
first, then earliest deadline — and the run ends once every file it read is durable in the
spool. Until uploaded a handed-over source stays ``spooled`` (what a crash leaves is resumed).

What one source's row says is kept by ``state.queue`` (the ``sources`` table) and
``state.catalog`` (``recordings``); the steps that carry a spooled copy into the archive, and
their order, are ``archiving.Archiver``'s. This module only orchestrates: the copy thread, the
workers, the order of work, and the run's summary. A spool copy is marked spooled only after
it is fsync'd and renamed; a crash anywhere is recovered by running again. This module never
deletes or changes anything on the source.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path


from ..archive.base import ArchiveStore
from ..archive.link import UploadMeter
from ..clock import Clock, format_time, utc_now
from ..config import Config
from ..custody.ledger import LedgerWriter
from ..errors import (
    EvidenceError,
    IngestError,
    IntegrityError,
    ObjectExistsError,
    StorageError,
)
from ..media.probe import probe_file
from ..state import transitions as st
from ..state.db import Database
from ..state.queue import QueuedSource, WorkQueue
from .archiving import Archiver
from .describe import Describer, OfficerLookup, Prober
from .outcomes import (
    Progress,
    ProgressCallback,
    ALREADY_ARCHIVED,
    ALREADY_IN_ARCHIVE,
    NOT_STARTED,
    RETRY_LATER,
    SPOOL_FULL,
    UNREAD_OUTCOMES,
    UPLOADING,
    IngestMetrics,
    NoMetrics,
    Origin,
    Outcome,
    Summary,
    source_key,
)
from .priority import OrderRules, UploadKey, UploadQueue, key_for
from .scanner import FILE, Found, scan_paths, scan_tree
from .spool import Copied, Spool, SpoolFullError
from ..i18n import _

__all__ = [
    "ALREADY_ARCHIVED", "ALREADY_IN_ARCHIVE", "NOT_STARTED", "RETRY_LATER", "SPOOL_FULL",
    "UNREAD_OUTCOMES", "IngestMetrics", "Ingestor", "NoMetrics", "OfficerLookup", "Origin",
    "Outcome", "Prober", "Summary", "source_key",
]

log = logging.getLogger(__name__)

# (source id, its fresh copy still to be made durable — or None when it is already spooled)
WorkItem = tuple[int, Copied | None]
# (source id, its run's "archive unreachable" flag): what the upload stage takes
HandedOver = tuple[int, threading.Event]


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
        progress: ProgressCallback | None = None,
        officer_lookup: OfficerLookup | None = None,
        metrics: IngestMetrics | None = None,
        upload_meter: UploadMeter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.db = database
        self.queue = WorkQueue(database)
        self.ledger = ledger
        self.clock = clock
        self.progress = progress or (lambda event, info: None)
        # How fast originals really reach the archive: the backlog forecast counts on it.
        self.upload_meter = upload_meter or UploadMeter()
        self.spool = Spool(
            config.spool_dir,
            chunk_bytes=config.ingest.copy_chunk_kib * 1024,
            hash_sm3=config.ingest.hash_sm3,
        )
        self.archiver = Archiver(
            config=config, store=store, database=database, ledger=ledger, spool=self.spool,
            describer=Describer(config, prober, officer_lookup), clock=clock,
            metrics=metrics or NoMetrics(), upload_meter=self.upload_meter, progress=self.progress)
        self._spool_lock = threading.Lock()
        self._spool_prepared = False
        # Sources a running ingest has queued: another run (a second docked device, the
        # retry job) leaves them to it, so each dock's summary counts its own files only.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self.order_rules = OrderRules.from_config(config)
        # The station's upload stage (started at the first hand-over): ids only, unbounded.
        self._stage: UploadQueue[HandedOver] = UploadQueue(maxsize=0)
        self._stage_workers: list[threading.Thread] = []
        self._stage_lock = threading.Lock()
        self._stage_stop = threading.Event()

    @property
    def metrics(self) -> IngestMetrics:
        """Where the pipeline reports for monitoring (replaceable, e.g. by a test)."""
        return self.archiver.metrics

    @metrics.setter
    def metrics(self, metrics: IngestMetrics) -> None:
        self.archiver.metrics = metrics

    # -- the run --------------------------------------------------------------------------

    def ingest(
        self,
        origin: Origin,
        *,
        archive_error: str | None = None,
        paths: Sequence[bytes] | None = None,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        skip: Sequence[str] = (),
        release_spooled: bool = False,
    ) -> Summary:
        """Ingest every file under ``origin.root``, and finish work left by earlier runs.

        With ``archive_error`` (the archive is known to be unreachable) files are still copied
        into the spool — a docked device can be released — and left there for the next run.
        With ``paths`` (relative to the root, as bytes) only those files are taken.
        ``progress`` overrides the constructor's callback for this run (one per docked
        device); when ``stop`` is set no further file is started — what was copied is still
        made durable and archived, the rest waits for the next dock. ``skip`` adds names to
        the configured skip list for this run. With ``release_spooled`` the run ends once
        every file it read is durable in the spool; their uploads go on in the upload stage
        (counted ``UPLOADING``).
        """
        progress = progress or self.progress
        root = Path(origin.root)
        if not root.is_dir():
            raise IngestError(_("{root} is not a directory").format(root=root))
        with self._spool_lock:
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
        handed_over: set[int] = set()
        workers = [
            threading.Thread(
                target=self._upload_worker,
                args=(work, summary, archive_down, handed_over if release_spooled else None),
                daemon=True, name=f"upload-{index}",
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
            for source_id, _found in resume:
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
            with self._held_lock:  # the upload stage lets go of what it was handed
                self._held.difference_update(set(taken) - handed_over)
        summary.pending = self.queue.count_spooled([i for i in taken if i not in handed_over])
        progress(Progress.DONE, {"summary": summary})
        return summary

    def resume(self, *, archive_error: str | None = None) -> Summary:
        """Finish what earlier runs left spooled or unreported, reading no device."""
        self.spool.root.mkdir(parents=True, exist_ok=True)
        return self.ingest(Origin(self.spool.root), paths=[], archive_error=archive_error)

    def _resume_list(self) -> list[tuple[int, UploadKey]]:
        """Sources earlier runs left spooled (or unreported), most urgent first: by their
        catalogued deadline once ``catalog`` gave them one, else the estimate."""
        return [(queued.id, self._upload_key(queued)) for queued in self.queue.left_by_earlier_runs()]

    def _upload_key(self, queued: QueuedSource) -> UploadKey:
        deadline = queued.archive_deadline
        return key_for(queued.rel_path, queued.mtime_ns, first_seen=queued.id,
                       seen_at=datetime.fromisoformat(queued.discovered_at), rules=self.order_rules,
                       deadline=datetime.fromisoformat(deadline) if deadline else None)

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

    # -- copy stage (one thread) ---------------------------------------------------------

    def _take_with_room(
        self, origin: Origin, found: Found, summary: Summary,
        progress: ProgressCallback,
        work: UploadQueue[WorkItem], taken_ids: set[int],
    ) -> WorkItem | None:
        """``_take``; when the spool is full, wait once for the workers to archive (and so
        release) what is queued, then try again. A spool that is still full stops the copying:
        every later file would fail the same way, and all of them stay on the device."""
        try:
            return self._take(origin, found, summary, progress, taken_ids)
        except SpoolFullError as first:
            if work.unfinished_tasks:
                log.warning(_("%s; waiting for queued files to be archived"), first.message)
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
        progress: ProgressCallback, taken_ids: set[int],
    ) -> WorkItem | None:
        """Register one entry and copy it into the spool; returns the work for a worker.
        Raises ``SpoolFullError`` (the source is left as it was: the spool, not the file, is
        to blame)."""
        key = source_key(origin.name, found)
        known = self.queue.find(key)
        if known is not None and known.id in taken_ids and known.state != st.FAILED:
            return None  # queued from the resume list: counted when its worker finishes it
        if known is not None and known.state in st.FINAL_STATES:
            summary.counts[ALREADY_ARCHIVED if known.state != st.SKIPPED else st.SKIPPED] += 1
            return None
        if known is not None and known.state == st.SPOOLED:
            return None  # queued from the resume list already
        now = format_time(self.clock())
        if known is None:
            source_id = self.queue.add(
                source_key=key, origin=origin.name, root=str(origin.root),
                rel_path=found.display_path, rel_path_b64=found.rel_path_b64,
                device_id=origin.device_id, officer_id=origin.officer_id,
                size_bytes=found.size_bytes, mtime_ns=found.mtime_ns, at=now)
        else:
            source_id = known.id
        if found.kind != FILE:
            target = st.SKIPPED if found.kind != "unreadable" else st.FAILED
            self._set_state(source_id, target, found.reason, count_attempt=target == st.FAILED)
            self.metrics.file_finished(target, 0)
            summary.counts[target] += 1
            summary.problems.append((found.display_path, found.reason or target))
            return source_id, None
        progress(Progress.COPYING, {"path": found.display_path, "size_bytes": found.size_bytes})
        try:
            copied = self.spool.copy_in(
                os.path.join(os.fsencode(origin.root), found.rel_path),
                source_id,
                expected_size=found.size_bytes,
                expected_mtime_ns=found.mtime_ns,
                on_bytes=lambda count: progress(Progress.BYTES, {"count": count}),
            )
        except SpoolFullError as exc:
            self.queue.note(source_id, exc.message, at=now)
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

    def _make_durable(self, source_id: int, copied: Copied, summary: Summary) -> bool:
        """fsync a fresh copy and mark its source spooled. On a worker, so the disk's
        write-back of file n overlaps the copy of file n+1."""
        try:
            spool_path = self.spool.make_durable(copied)
        except IngestError as exc:
            self._set_state(source_id, st.FAILED, exc.message, count_attempt=True)
            summary.counts[st.FAILED] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error(_("source %s: %s"), source_id, exc.message)
            return False
        self.queue.mark_spooled(source_id, sha256=copied.sha256, sm3=copied.sm3,
                                spool_path=str(spool_path), at=format_time(self.clock()))
        return True

    def _set_state(self, source_id: int, state: st.SourceState, reason: str | None, *,
                   count_attempt: bool = False) -> None:
        self.queue.move(source_id, state, reason, at=format_time(self.clock()),
                        count_attempt=count_attempt)

    # -- upload stage (worker threads) ------------------------------------------------------

    def _upload_worker(
        self, work: UploadQueue[WorkItem], summary: Summary, archive_down: threading.Event,
        handed_over: set[int] | None,
    ) -> None:
        """A run's worker: makes its copies durable and catalogues them, then archives each
        itself — or, with ``handed_over``, hands each to the upload stage and notes its id."""
        while (item := work.get()) is not None:
            source_id, copied = item
            try:
                if copied is None or self._make_durable(source_id, copied, summary):
                    self._archive(source_id, summary, archive_down, handed_over=handed_over)
            except EvidenceError as exc:
                # The state database refused (full disk, ...): this file stays where it is
                # (spooled or on the source) for the next run; the worker goes on, or the
                # run would wait for it forever.
                summary.counts[RETRY_LATER] += 1
                summary.problems.append((self._describe_source(source_id), exc.message))
                log.error(_("source %s: %s"), source_id, exc.message)
            finally:
                work.task_done()  # the copy thread may wait for the queue to drain (spool full)
        work.task_done()

    def _archive(self, source_id: int, summary: Summary, archive_down: threading.Event, *,
                 handed_over: set[int] | None = None) -> None:
        """Catalogue a spooled source, then archive it — or, with ``handed_over``, hand it
        to the upload stage (noting its id there)."""
        try:
            self.archiver.catalog(source_id)
            if (handed_over is not None and not archive_down.is_set() and self._spooled(source_id)
                    and self._hand_over(source_id, archive_down)):
                handed_over.add(source_id)  # set.add: atomic under the GIL
                summary.counts[UPLOADING] += 1
                return
            if archive_down.is_set():
                return  # stays spooled; the next run (or the daemon's retry) takes it
            outcome = self.archiver.process(source_id)
        except (IntegrityError, ObjectExistsError) as exc:
            # This file's stored copy is wrong (or was altered): the archive itself is up.
            summary.counts[RETRY_LATER] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error(_("source %s: %s"), source_id, exc.message)
            self.queue.note(source_id, exc.message, count_attempt=True)
            return
        except StorageError as exc:
            self.metrics.upload_failed()
            archive_down.set()
            summary.archive_error = exc.message
            log.error(_("archive unreachable, files stay safe in the spool: %s"), exc.message)
            self.queue.note(source_id, f"not yet archived: {exc.message}", count_attempt=True)
            return
        except IngestError as exc:
            # The spool copy turned out bad: the source is failed, to be read again.
            summary.counts[st.FAILED] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error(_("source %s: %s"), source_id, exc.message)
            return
        except EvidenceError as exc:
            # Anything else about this one file (the state database refused, ...): record, go on.
            summary.counts[RETRY_LATER] += 1
            summary.problems.append((self._describe_source(source_id), exc.message))
            log.error(_("source %s: %s"), source_id, exc.message)
            return
        if outcome:
            summary.counts[outcome] += 1
            finished = self.queue.get(source_id)
            self.metrics.file_finished(st.ARCHIVED if outcome == ALREADY_IN_ARCHIVE else outcome,
                                       int(finished.size_bytes or 0) if finished else 0)

    # -- the upload stage (station-wide worker threads) --------------------------------------

    def _spooled(self, source_id: int) -> bool:
        """Waits in the spool for the archive (a failed or skipped source is reported by its
        run, not handed over)."""
        source = self.queue.get(source_id)
        return source is not None and source.state == st.SPOOLED

    def _hand_over(self, source_id: int, archive_down: threading.Event) -> bool:
        """Queue a durable, catalogued source for the upload stage, in upload order (its
        catalogued deadline); it stays held until the stage is done with it. False once the
        stage has stopped (the run then archives it itself)."""
        queued = self.queue.queued(source_id)
        key = self._upload_key(queued) if queued is not None else (1, math.inf, source_id)
        with self._stage_lock:
            if self._stage_stop.is_set():
                return False
            if not self._stage_workers:
                self._stage_workers = [
                    threading.Thread(target=self._stage_worker, daemon=True, name=f"uploads-{index}")
                    for index in range(self.config.archive.upload_workers)
                ]
                for worker in self._stage_workers:
                    worker.start()
            self._stage.put(key, (source_id, archive_down))
        return True

    def _stage_worker(self) -> None:
        while (entry := self._stage.get()) is not None:
            source_id, archive_down = entry
            try:
                if not self._stage_stop.is_set():  # stopping: it stays spooled, resumed later
                    self._archive(source_id, Summary(), archive_down)  # its run has ended
            except Exception:  # a worker must not die with the station's uploads
                log.exception(_("source %s: unexpected error in the upload stage"), source_id)
            finally:
                with self._held_lock:
                    self._held.discard(source_id)
                self._stage.task_done()
        self._stage.task_done()

    @property
    def uploading(self) -> int:
        """Sources handed to the upload stage and not yet done with."""
        return self._stage.unfinished_tasks

    def stop_uploads(self) -> None:
        """Finish the uploads in flight; what else was handed over stays spooled (durable,
        taken by the next run or start). Once only, at the station's shutdown."""
        with self._stage_lock:
            self._stage_stop.set()
            workers, self._stage_workers = self._stage_workers, []
            self._stage.close(len(workers))
        for worker in workers:
            worker.join()

    def _describe_source(self, source_id: int) -> str:
        """The source's path as on the device, for a problem line (its id if unreadable)."""
        try:
            source = self.queue.get(source_id)
        except EvidenceError:
            source = None
        return source.rel_path if source is not None else f"source {source_id}"
