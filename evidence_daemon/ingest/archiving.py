"""Carrying one spooled source into the archive: the upload stage's steps, in their order.

Order of durable steps for one recording, each committed locally only after it is durable::

    catalog row (pending, deadline) -> original stored and verified -> manifest stored
    (create-only) -> ledger 'acquired', 'archived' (once-only) -> recording archived_at and
    source 'archived' (one transaction) -> spool copy released when no source still needs it

A crash anywhere is recovered by running again: a step already done is found in the archive
(the original, the manifest) or in the ledger index (once-only events) and not repeated.
Nothing is marked archived before its original verified; a stored object that does not verify
is never overwritten or deleted — at most set aside, with a signed event first, when no custody
event ever named it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from datetime import datetime
from pathlib import Path


from ..archive import keys
from ..archive.base import ArchiveStore, SetAside, StoredObject, hash_stored, rejected_key
from ..archive.link import UploadMeter, UploadSample
from ..clock import Clock, format_time
from ..config import Config
from ..custody.chain import Event
from ..custody.ledger import LedgerWriter
from ..custody.manifest import Manifest, Storage
from ..errors import IngestError, IntegrityError, ObjectExistsError
from ..failpoints import failpoint
from ..state import transitions as st
from ..state.catalog import Catalog, Recording
from ..state.db import Database
from ..state.queue import Source, WorkQueue
from .describe import Describer, manifest_for
from .outcomes import ALREADY_IN_ARCHIVE, IngestMetrics, Progress, ProgressCallback
from .spool import Spool
from ..i18n import _

log = logging.getLogger(__name__)


class Archiver:
    """The upload stage for one station: safe to call from several workers at once (one
    lock per recording) and from several concurrent ingests (several docked devices)."""

    def __init__(
        self, *, config: Config, store: ArchiveStore, database: Database, ledger: LedgerWriter,
        spool: Spool, describer: Describer, clock: Clock, metrics: IngestMetrics,
        upload_meter: UploadMeter, progress: ProgressCallback,
    ) -> None:
        self.config = config
        self.store = store
        self.db = database
        self.queue = WorkQueue(database)
        self.catalogue = Catalog(database)
        self.ledger = ledger
        self.spool = spool
        self.describer = describer
        self.clock = clock
        self.metrics = metrics
        self.upload_meter = upload_meter
        self.progress = progress
        self.actor = f"station:{config.station.id}"
        self._recording_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._recording_locks.setdefault(sha256, threading.Lock())

    def _now(self) -> str:
        return format_time(self.clock())

    def catalog(self, source_id: int) -> None:
        """Make sure a spooled source's recording is in the local catalog (idempotent). Runs
        before any archive access, so a pending recording shows its deadline even while the
        archive is away."""
        source = self.queue.get(source_id)
        if source is not None and source.state == st.SPOOLED and source.sha256 is not None:
            with self._lock_for(source.sha256):
                self._catalog_pending(source)

    def _catalog_pending(self, source: Source) -> Recording:
        assert source.sha256 is not None, "spooled"
        recording = self.catalogue.get(source.sha256)
        if recording is None:
            self.catalogue.add_pending(self.describer.describe_pending(source, clock=self.clock))
            recording = self.catalogue.get(source.sha256)
            assert recording is not None, "just entered"
        return recording

    def process(self, source_id: int) -> str | None:
        """Carry one queued source as far as it can go; returns what happened to it."""
        source = self.queue.get(source_id)
        if source is None:
            return None
        if source.state in (st.FAILED, st.SKIPPED):
            if not source.reported:
                self._report_unarchivable(source)
            return None
        if source.state != st.SPOOLED or source.sha256 is None:
            return None
        with self._lock_for(source.sha256):
            # Concurrent ingests (several docked devices) may both hold this source: whoever
            # gets the lock second must see what the first did.
            source = self.queue.get(source_id)
            if source is None or source.state != st.SPOOLED:
                return None
            recording = self._catalog_pending(source)
            if recording.archived_at is not None:
                self._record_duplicate(source, recording)
                return st.DUPLICATE
            return self._archive(source, recording)

    def _archive(self, source: Source, recording: Recording) -> str:
        started = time.monotonic()
        sha256 = recording.sha256
        spool_path = Path(source.spool_path or "")
        object_key = recording.object_key
        if not spool_path.exists() and self.store.stat(object_key) is None:
            self.queue.move(source.id, st.FAILED, "spool copy was lost; read again at next dock",
                            at=self._now(), count_attempt=True)
            raise IngestError(_("{rel_path}: spool copy {spool_path} is missing").format(
                rel_path=source.rel_path, spool_path=spool_path))
        self.progress(Progress.UPLOADING, {"path": source.rel_path, "size_bytes": recording.size_bytes})
        metadata = {"sha256": sha256, "station": self.config.station.id}
        if recording.sm3:
            metadata["sm3"] = recording.sm3
        already_in_archive = self.store.stat(keys.manifest_key(sha256)) is not None
        upload_started = time.monotonic()
        stored = self._store_original(source, recording, spool_path, metadata)
        if not already_in_archive:
            self.upload_meter.record(UploadSample(upload_started, time.monotonic(),
                                                  recording.size_bytes))
        failpoint("archive.after_upload")
        manifest_bytes = self._write_manifest(source, recording, Storage(
            verified_by=stored.verified_by, version_id=stored.version_id,
            retain_until=stored.retain_until))
        manifest = Manifest.from_json(manifest_bytes)
        manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        failpoint("archive.after_manifest")
        self.ledger.append(
            Event.ACQUIRED, recording=sha256, actor=self.actor, once=True,
            details={**source.custody_details(), "sha256": sha256, "sm3": recording.sm3},
        )
        self.ledger.append(
            Event.ARCHIVED, recording=sha256, actor=self.actor, once=True,
            details={
                "original_key": object_key,
                "manifest_key": keys.manifest_key(sha256),
                "manifest_sha256": manifest_sha256,
                "size_bytes": recording.size_bytes,
                "verified_by": stored.verified_by,
                "verified_at": manifest.verified_at,
                "archive": self.store.location,
            },
        )
        failpoint("ingest.before_commit")
        self.catalogue.mark_archived(sha256, archived_at=manifest.verified_at,
                                     manifest_sha256=manifest_sha256,
                                     verified_by=stored.verified_by, source_id=source.id,
                                     at=self._now())
        self._release_spool(sha256)
        if already_in_archive:
            return ALREADY_IN_ARCHIVE
        deadline = recording.archive_deadline
        self.metrics.recording_archived(
            duration_s=time.monotonic() - started,
            late=deadline is not None
            and datetime.fromisoformat(manifest.verified_at) > datetime.fromisoformat(deadline),
        )
        log.info("archived %s (%s) as %s", source.rel_path, sha256[:12], object_key)
        return st.ARCHIVED

    def _store_original(
        self, source: Source, recording: Recording, spool_path: Path, metadata: dict[str, str]
    ) -> StoredObject:
        """``put_original``, and the way out when the key holds a copy that never verified.

        A stored original that does not hash to its recording id blocks the key (the store
        never overwrites). If no custody event ever named it — no manifest, no ``archived``
        event: it was never proven, so it is no evidence of anything — it is set aside
        (``set_aside``: moved, or left as an old version, never deleted) with a signed
        ``set-aside`` event first, and the spool copy is stored. If the spool copy is the bad
        one, it is dropped and its sources are read again from the device at the next dock.
        """
        sha256, size_bytes = recording.sha256, recording.size_bytes
        object_key = recording.object_key

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
            self.spool.discard_damaged(sha256)
            self.queue.fail_spooled_copies(sha256, f"{damage}; read again at the next dock",
                                           at=self._now())
            raise IngestError(_("{rel_path}: {damage}; nothing was archived from it, the file is "
                                "read again from the device at the next dock").format(
                                    rel_path=source.rel_path, damage=damage))
        # The ledger index (``custody.ledger``) says whether any 'archived' event named it.
        if self.store.stat(keys.manifest_key(sha256)) is not None or self.db.query_one(
            "SELECT 1 FROM ledger WHERE event = 'archived' AND recording = ?", (sha256,)
        ) is not None:
            raise IntegrityError(
                _("{problem}; the archive holds a manifest or an 'archived' event for it, so it "
                  "is evidence of tampering and stays as it is (run verify)").format(
                      problem=problem)
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
        log.warning(_("%s held a copy that never verified (%s); set aside as %s, storing the "
                      "spool copy"), object_key, problem, aside.location)
        return put(replacing=aside)

    def _write_manifest(self, source: Source, recording: Recording, storage: Storage) -> bytes:
        """Store the manifest once; if an earlier attempt stored it, use that one unchanged."""
        key = keys.manifest_key(recording.sha256)
        if self.store.stat(key) is not None:
            return self.store.get_bytes(key)
        data = manifest_for(recording, source, station=self.config.station.id,
                            zone_name=self.config.station.timezone, verified_at=self._now(),
                            storage=storage).to_json()
        try:
            self.store.put_bytes(key, data)
        except ObjectExistsError:
            return self.store.get_bytes(key)
        return data

    def _record_duplicate(self, source: Source, recording: Recording) -> None:
        self.ledger.append(
            Event.DUPLICATE_SOURCE, recording=recording.sha256, actor=self.actor, once=True,
            details={**source.custody_details(), "sha256": recording.sha256},
        )
        failpoint("ingest.before_commit")
        self.queue.move(source.id, st.DUPLICATE, None, at=self._now())
        self._release_spool(recording.sha256)

    def _release_spool(self, sha256: str) -> None:
        if self.queue.spooled_copies_of(sha256) == 0:
            self.spool.release(sha256)

    def _report_unarchivable(self, source: Source) -> None:
        self.ledger.append(
            Event.QUARANTINED, recording=None, actor=self.actor, once=True,
            details={**source.custody_details(), "reason": source.reason,
                     "state": source.state.value},
        )
        self.queue.mark_reported(source.id)
