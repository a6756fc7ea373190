"""The API node's catalog index, built only from what the archive holds.

Reads every writer's public key (``keys/``), ledger entries (``ledger/<writer>/``) and the
manifests that ``archived`` events point to, and fills the catalog tables of ``api.db``
(``writers``, ``events``, ``recordings``, ``case_links``), through ``catalog_tables``, their
only writer; a recording's row is computed by ``catalog_row``. Nothing here reads a station's
database: any API node can drop its catalog and rebuild it from the archive (``reindex``).

How entries are checked and kept:

- Each writer's chain is read from a watermark (``writers.head_seq``/``head_hash``) with one
  ``start_after`` listing per poll, so a poll that finds nothing new costs one listing of
  ``keys/`` plus one listing per writer, and no reads.
- ``events.verified`` and ``problem`` are decided by ``api.entries`` (signature with the key
  as first indexed — a key later changed in the archive is reported, never silently adopted —,
  chain link, role). Indexing goes on past a bad entry, so auditors see everything. A verified
  entry whose *content* is wrong (``entries.content_problem``) changes no catalog state.
- A recording is catalogued from its first verified ``archived`` event whose manifest (always
  at ``keys.manifest_key(recording)``, never at a key taken from an entry) hashes to the
  recorded ``manifest_sha256``. Its derived columns (viewing copies, flags, holds, cases,
  notes, retention) are recomputed from all its verified events whenever one of them is new,
  in the same transaction that stores the event, so the order in which writers are read
  does not matter and a crash never leaves a half-updated row.

- Once indexed, verified entries are told to ``followers`` (the API node's incident and review
  tables follow their events this way, so ``reindex`` rebuilds them too).

This module must never write to, or delete from, the archive, and never decide anything from
a station's local state; a malformed object becomes a recorded problem, not a crash. An
unreachable archive raises ``StorageError`` from ``poll`` (the caller logs and retries).

Why ~520 lines in one file: what is left here is the poll itself — watermarks, key pinning,
batches, the two locks and the order of their steps — which must be read as one algorithm
to see that a crash or a concurrent ``index_own`` never leaves the catalog half-updated; the
pure checks (``entries``), the row (``catalog_row``) and the SQL (``catalog_tables``) are apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..archive import keys
from ..archive.base import ArchiveStore
from ..clock import Clock, format_time, utc_now
from ..custody import chain
from ..custody.chain import Head, Role
from ..custody.signing import fingerprint, load_public_pem
from ..custody.trust import TrustAnchors
from ..errors import EvidenceError, IntegrityError, ObjectMissingError
from ..state.db import Database
from .catalog_row import RECORDING_COLUMNS, catalog_row
from .catalog_tables import CatalogTables
from .entries import (
    SHA256_TEXT,
    CheckedEntry,
    ReadEntry,
    WriterStanding,
    check_entry,
    content_problem,
    link_entry,
    read_entry,
)
from ..i18n import _

log = logging.getLogger(__name__)

BATCH_ENTRIES = 500  # ledger entries per transaction
OWN_CATCH_UP = 4  # entries index_own reads to reach the one asked for
LEDGER_SCAN_INTERVAL_S = 3600.0  # how often to look for writers that published no key

_PUBLIC_KEY_NAME = re.compile(r"^keys/(.+)\.pub$")


@dataclass
class PollResult:
    """What one poll (or reindex) did."""

    entries: int = 0  # ledger entries indexed
    recordings: int = 0  # recordings whose catalog row was written or removed
    problems: list[str] = field(default_factory=list)  # found by this poll, for the log


@dataclass
class _WriterKey:
    public: Ed25519PublicKey
    fingerprint: str


class Indexer:
    """Keeps the catalog tables of ``api.db`` in step with the archive.

    ``poll`` (a background thread) and ``index_own`` (request threads) may run at once: every
    change to the catalog happens under one lock, in one transaction per batch. Two polls never
    run at once.
    """

    def __init__(self, store: ArchiveStore, database: Database, *, clock: Clock = utc_now,
                 ledger_scan_interval_s: float = LEDGER_SCAN_INTERVAL_S,
                 trust: TrustAnchors = TrustAnchors()) -> None:
        self.store = store
        self.database = database
        self.tables = CatalogTables(database)
        self.trust = trust
        self.clock = clock
        self.ledger_scan_interval_s = ledger_scan_interval_s
        self.last_poll_at: str | None = None
        self._lock = threading.Lock()  # around every change to the catalog tables
        self._poll_lock = threading.Lock()  # one poll or reindex at a time
        self._last_ledger_scan: datetime | None = None
        self._reported: set[str] = set()  # odd objects already reported by this instance
        # Told every verified entry once it is indexed, outside the catalog's lock (the
        # node's incident and review tables follow their events this way, so reindex
        # rebuilds them from the archive too). A follower's failure is logged, not raised.
        self.followers: list[Callable[[Sequence[ReadEntry]], None]] = []

    # -- public ---------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """Index what is new in the archive since the watermarks, for every writer.

        Costs, when nothing is new: one listing of ``keys/`` and one ``start_after`` listing
        per writer; no object is read (except the public key of a writer with a recorded
        problem, to see whether it still holds). Writers with entries but no published key
        are looked for in ``ledger/`` on the first poll and then every
        ``ledger_scan_interval_s`` (that listing names every entry). ``StorageError`` when
        the archive cannot be reached; what was indexed before it stays indexed."""
        with self._poll_lock:
            return self._poll()

    def reindex(self) -> PollResult:
        """Empty the catalog tables (``api.db.CATALOG_TABLES``; users, grants and this node's
        ledger index stay) and index the whole archive again."""
        with self._poll_lock:
            with self._lock, self.database.transaction() as conn:
                self.tables.clear(conn)
            self._last_ledger_scan = None
            self._reported.clear()
            return self._poll()

    def index_own(self, writer: str, seq: int) -> bool:
        """Index this node's entry ``seq`` right after ``LedgerWriter.append`` stored it::

            entry = ledger.append(...)
            indexer.index_own(ledger.writer, entry["seq"])

        Reads the entry back from the archive. Indexes it only when it is exactly the next
        entry of ``writer``'s indexed chain and verifies, together with its recording's
        catalog row. True when the entry is in the catalog as verified (now or already);
        False otherwise, and the next poll indexes it (recording any problem).
        ``StorageError`` when the archive cannot be read. Safe to call from request threads
        while ``poll`` runs in another."""
        try:
            keys.check_writer(writer)
        except ValueError:
            return False
        with self._lock:
            row = self.tables.writer(writer)
            if row is None:  # this node's first entries, before any poll
                if seq > OWN_CATCH_UP or self._pin_key(writer, None) is None:
                    return False
                row = self.tables.writer(writer)
            if row is None or row["public_key"] is None:
                return False
            if seq <= row["head_seq"]:
                return self.tables.is_verified(writer, seq)
            if seq - row["head_seq"] > OWN_CATCH_UP or not row["head_hash"]:
                return False
            public = load_public_pem(row["public_key"].encode(), what=f"indexed key of {writer}")
            standing = self._standing(writer, str(row["fingerprint"]))
            head = Head(int(row["head_seq"]), str(row["head_hash"]))
            ready: list[CheckedEntry] = []
            # Usually one entry; more when the writer's key-registered entry came just before.
            for next_seq in range(head.seq + 1, seq + 1):
                try:
                    data = self.store.get_bytes(keys.ledger_key(writer, next_seq))
                except ObjectMissingError:
                    return False
                checked = check_entry(writer, next_seq, data, public, head)
                if not checked.verified or checked.problem or standing.judge(checked) is not None:
                    return False  # the next poll stores it with its problem
                ready.append(checked)
                head = Head(next_seq, checked.chain_hash)
            with self.database.transaction() as conn:
                self.tables.insert_entries(conn, ready)
                self.tables.move_head(conn, writer, head, at=self._now())
                for checked in ready:
                    recording = checked.entry.recording
                    if recording is not None and SHA256_TEXT.fullmatch(recording):
                        self._refresh(conn, recording, {}, PollResult())
        self._tell(ready)
        return True

    def latest_checkpoints(self, *, skip: str | None = None) -> list[chain.SeenCheckpoint]:
        """The newest verified checkpoint entry of every writer but ``skip``, as catalogued:
        what this node witnesses in its own chain after a poll."""
        found: list[chain.SeenCheckpoint] = []
        for row in self.tables.latest_of_each_writer(str(chain.Event.CHECKPOINT)):
            if row["writer"] == skip:
                continue
            seen = chain.checkpoint_seen(str(row["writer"]), int(row["seq"]),
                                         str(row["entry_hash"]), json.loads(row["details"]),
                                         witness=f"writer {row['writer']}")
            if seen is not None:
                found.append(seen)
        return found

    # -- one poll -------------------------------------------------------------------------

    def _poll(self) -> PollResult:
        result = PollResult()
        started = self.clock()
        published = self._published_writers(result)
        known = self.tables.writers()
        writers = set(published) | set(known)
        if (self._last_ledger_scan is None
                or (started - self._last_ledger_scan).total_seconds() >= self.ledger_scan_interval_s):
            writers |= self._ledger_writers(result)
            self._last_ledger_scan = started
        catalogued: set[str] = set()
        for writer in sorted(writers):
            self._poll_writer(writer, writer in published, known.get(writer), result, catalogued)
        result.recordings = len(catalogued)
        self.last_poll_at = format_time(started)
        return result

    def _report_once(self, result: PollResult, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            result.problems.append(problem)

    def _published_writers(self, result: PollResult) -> set[str]:
        writers: set[str] = set()
        for key in self.store.list_keys(keys.KEYS_PREFIX):
            match = _PUBLIC_KEY_NAME.fullmatch(key)
            try:
                if match is None:
                    raise ValueError(key)
                writers.add(keys.check_writer(match.group(1)))
            except ValueError:
                self._report_once(result, f"{key}: unexpected object among the public keys")
        return writers

    def _ledger_writers(self, result: PollResult) -> set[str]:
        writers: set[str] = set()
        for key in self.store.list_keys(keys.LEDGER_PREFIX):
            parsed = keys.parse_ledger_key(key)
            if parsed is None:
                self._report_once(result, f"{key}: unexpected object in the ledger area")
            else:
                writers.add(parsed[0])
        return writers

    def _now(self) -> str:
        return format_time(self.clock())

    def _pin_key(self, writer: str, result: PollResult | None) -> _WriterKey | None:
        """Read a writer's public key from the archive and keep it as the one its entries are
        checked with. Only for writers without an indexed key (one is never replaced). A key
        that is missing or invalid is recorded as the writer's problem, unless ``result`` is
        None (then the next poll does it)."""
        key_name = keys.public_key_key(writer)
        problem = None
        try:
            pem = self.store.get_bytes(key_name)
            public = load_public_pem(pem, what=key_name)
        except ObjectMissingError:
            problem = f"public key {key_name} missing: entries not indexed until it is there"
        except IntegrityError as exc:
            problem = f"{exc.message}: entries not indexed until it is a valid key"
        if problem is not None:
            if result is not None:
                with self.database.transaction() as conn:
                    self._set_writer_problem(conn, writer, problem, result)
            return None
        key_fingerprint = fingerprint(public)
        self.tables.pin_key(writer, pem.decode("ascii", errors="replace"), key_fingerprint,
                            at=self._now())
        return _WriterKey(public, key_fingerprint)

    def _set_writer_problem(self, conn: sqlite3.Connection, writer: str, problem: str | None,
                            result: PollResult, *, new_part: str | None = None) -> None:
        """Store the writer's problem; report ``new_part`` (default: all of it) if it is new.
        (Entry problems are reported one by one as they are indexed.)"""
        stored = self.tables.writer_problem(conn, writer)
        if stored == problem:
            return
        report = new_part if new_part is not None else problem
        if report and report not in (stored or ""):
            result.problems.append(f"writer {writer}: {report}")
        self.tables.set_writer_problem(conn, writer, problem, at=self._now())

    def _key_problem(self, writer: str, indexed: _WriterKey) -> str | None:
        """Re-read the writer's key in the archive: is it still the one indexed?"""
        key_name = keys.public_key_key(writer)
        try:
            current = fingerprint(load_public_pem(self.store.get_bytes(key_name), what=key_name))
        except ObjectMissingError:
            current = "none"
        except IntegrityError:
            current = "not a valid Ed25519 key"
        if current == indexed.fingerprint:
            return None
        return (f"public key {key_name} in the archive changed (indexed {indexed.fingerprint}, "
                f"archive now has {current}); entries are checked with the indexed key")

    def _poll_writer(self, writer: str, published: bool, row: sqlite3.Row | None,
                     result: PollResult, catalogued: set[str]) -> None:
        key_name = keys.public_key_key(writer)
        key_problem: str | None = None
        if row is None or row["public_key"] is None:
            if not published:
                with self._lock, self.database.transaction() as conn:
                    self._set_writer_problem(
                        conn, writer,
                        f"public key {key_name} missing: entries not indexed until it is there",
                        result)
                return
            with self._lock:
                indexed = self._pin_key(writer, result)
            if indexed is None:
                return
            check_key = False
        else:
            indexed = _WriterKey(
                load_public_pem(row["public_key"].encode(), what=f"indexed key of {writer}"),
                row["fingerprint"])
            if not published:
                key_problem = (f"public key {key_name} is no longer in the archive; entries are "
                               "checked with the key indexed earlier")
            check_key = published

        head = self.tables.head(writer)
        start_after = keys.ledger_key(writer, head.seq) if head.seq else ""
        listed: list[tuple[int, str]] = []
        for key in self.store.list_keys(keys.ledger_prefix(writer), start_after=start_after):
            parsed = keys.parse_ledger_key(key)
            if parsed is None or parsed[0] != writer:
                self._report_once(result, f"{key}: unexpected object in the ledger area")
            else:
                listed.append((parsed[1], key))
        # Re-read the published key only when there is something to check with it, or a
        # problem to clear: a poll that finds nothing new reads nothing.
        update_problem = not check_key or bool(listed) or bool(row is not None and row["problem"])
        key_note = ""
        if check_key and update_problem:
            key_problem = self._key_problem(writer, indexed)
            if key_problem:
                key_note = " (or signed with the different key the archive now holds)"

        for start in range(0, len(listed), BATCH_ENTRIES):
            chunk = listed[start:start + BATCH_ENTRIES]
            # Reading and signature checks need no lock: request threads wait only for the
            # chain links and the inserts.
            read: list[ReadEntry] = []
            vanished = False
            for seq, key in chunk:
                try:
                    data = self.store.get_bytes(key)
                except ObjectMissingError:
                    result.problems.append(f"{key}: listed but gone when read; retried next poll")
                    vanished = True
                    break
                read.append(read_entry(writer, seq, data, indexed.public, key_note=key_note))
            manifests = self._prefetch_manifests(read)
            with self._lock, self.database.transaction() as conn:
                head = self.tables.head(writer, conn)
                standing = self._standing(writer, indexed.fingerprint, conn)
                checked_entries: list[CheckedEntry] = []
                touched: set[str] = set()
                for entry in read:
                    if entry.seq <= head.seq:  # index_own got there first
                        continue
                    checked = link_entry(entry, head)
                    if checked.verified and (judged := standing.judge(checked)) is not None:
                        checked = link_entry(entry, head, judged=judged)
                    checked_entries.append(checked)
                    head = Head(entry.seq, checked.chain_hash)
                    if checked.problem:
                        result.problems.append(
                            f"{keys.ledger_key(writer, entry.seq)}: {checked.problem}")
                    if (checked.verified and entry.recording is not None
                            and SHA256_TEXT.fullmatch(entry.recording)):
                        touched.add(entry.recording)
                self.tables.insert_entries(conn, checked_entries)
                result.entries += len(checked_entries)
                self.tables.move_head(conn, writer, head, at=self._now())
                for recording in sorted(touched):
                    if self._refresh(conn, recording, manifests, result):
                        catalogued.add(recording)
            self._tell(checked_entries)
            if vanished:
                break

        if self.trust.trusts(indexed.fingerprint) is False:
            untrusted = chain.untrusted_problem(writer, indexed.fingerprint).message
            key_problem = f"{key_problem} | {untrusted}" if key_problem else untrusted
            update_problem = True
        if update_problem:
            with self._lock, self.database.transaction() as conn:
                self._set_writer_problem(
                    conn, writer, self._writer_problem(conn, writer, key_problem), result,
                    new_part=key_problem or "")

    def _tell(self, checked: Sequence[CheckedEntry]) -> None:
        entries = [item.entry for item in checked if item.verified and not item.problem]
        if not entries:
            return
        for follower in self.followers:
            try:
                follower(entries)
            except EvidenceError as exc:
                log.warning(_("catalog: a follower of new entries failed (next reindex retries): "
                              "%s"),
                            exc.message)

    def _standing(self, writer: str, key_fingerprint: str,
                  conn: sqlite3.Connection | None = None) -> WriterStanding:
        """The writer's trust and role as far as its chain is indexed: the role of its first
        verified ``key-registered`` entry, else inferred from its first verified entry."""
        standing = WriterStanding(key_fingerprint, self.trust.trusts(key_fingerprint))

        claimed = self.tables.claimed_role(writer, conn)
        if claimed is not None and claimed in tuple(Role):
            standing.role, standing.registered = Role(claimed), True
            return standing
        first = self.tables.first_event(writer, conn)
        if first is not None:
            signers = [role for role in Role if chain.may_sign(role, first)]
            standing.role = signers[0] if len(signers) == 1 else None
        return standing

    def _writer_problem(self, conn: sqlite3.Connection, writer: str,
                        key_problem: str | None) -> str | None:
        parts = [key_problem] if key_problem else []
        unverified = self.tables.unverified(conn, writer)
        if unverified is not None:
            count, first, problem = unverified
            parts.append(f"entries with problems: {count}, the first at seq {first}: {problem}")
        return " | ".join(parts) or None

    # -- recordings -----------------------------------------------------------------------

    def _read_manifest(self, recording: str) -> bytes | None:
        try:
            return self.store.get_bytes(keys.manifest_key(recording))
        except ObjectMissingError:
            return None

    def _prefetch_manifests(self, read: Sequence[ReadEntry]) -> dict[str, bytes | None]:
        """Manifests of recordings this batch archives and the catalog lacks, read before the
        lock is taken so request threads do not wait for the archive."""
        wanted = {entry.recording for entry in read
                  if entry.event == "archived" and entry.recording is not None
                  and not entry.problems and entry.content_problem is None}
        wanted -= self.tables.catalogued(wanted)
        return {recording: self._read_manifest(recording) for recording in sorted(wanted)}

    def _refresh(self, conn: sqlite3.Connection, recording: str,
                 manifests: dict[str, bytes | None], result: PollResult) -> bool:
        """Recompute one recording's catalog row from all its verified events. True when the
        row was written or removed."""
        with_problems = self.tables.verified_events(conn, recording)
        events = [event for event, _ in with_problems]
        stored_problems = {(event.writer, event.seq): problem for event, problem in with_problems}
        existing = self.tables.recording(conn, recording)
        manifest_key = keys.manifest_key(recording)
        archived_events = [event for event in events if event.event == "archived"
                           and not content_problem("archived", recording, event.details)]
        claims = {str(event.details["manifest_sha256"]) for event in archived_events}
        if len(claims) > 1:
            # Two writers vouch for different manifests: which is forged cannot be told here,
            # so neither is shown as the recording's (verify and the custody view say why).
            who = ", ".join(f"{event.writer}#{event.seq}" for event in archived_events)
            conflict = (f"'archived' events disagree about the manifest ({who} name "
                        f"{len(claims)} different SHA-256s): not catalogued")
            for archived in archived_events:
                if stored_problems[(archived.writer, archived.seq)] != conflict:
                    self.tables.set_event_problem(conn, archived.writer, archived.seq, conflict)
                    self._report_once(result, f"recording {recording[:12]}: {conflict}")
            archived_events = []
        for archived in archived_events:
            expected = archived.details["manifest_sha256"]
            data: bytes | None
            if existing is not None and existing["manifest_sha256"] == expected:
                data = existing["manifest"].encode("utf-8")  # checked when it was stored
            elif recording in manifests:
                data = manifests[recording]
            else:
                data = manifests[recording] = self._read_manifest(recording)
            problem: str | None = None
            row: dict[str, Any] = {}
            cases: list[str] = []
            if data is None:
                problem = f"{manifest_key} is missing from the archive"
            elif hashlib.sha256(data).hexdigest() != expected:
                problem = (f"{manifest_key} does not hash to the manifest_sha256 of this event: "
                           "the manifest was altered")
            else:
                try:
                    row, cases = catalog_row(recording, data, archived, events,
                                             indexed_at=self._now())
                except ValueError as exc:
                    problem = f"{manifest_key}: {exc}"
            if stored_problems[(archived.writer, archived.seq)] != problem:
                self.tables.set_event_problem(conn, archived.writer, archived.seq, problem)
                if problem is not None:
                    result.problems.append(f"recording {recording[:12]}: {problem}; not catalogued"
                                           f" from {archived.writer}#{archived.seq}")
            if problem is not None:
                continue  # a later 'archived' event (another station) may still do
            if existing is not None and all(
                    existing[column] == row[column] for column in RECORDING_COLUMNS
                    if column != "indexed_at"):
                return False
            self.tables.put_recording(
                conn, row, cases, cases_changed=existing is None or existing["cases"] != row["cases"])
            return True
        if existing is None:
            return False
        self.tables.remove_recording(conn, recording)
        return True
