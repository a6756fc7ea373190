"""The API node's catalog index, built only from what the archive holds.

Reads every writer's public key (``keys/``), ledger entries (``ledger/<writer>/``) and the
manifests that ``archived`` events point to, and fills the catalog tables of ``api.db``
(``writers``, ``events``, ``recordings``, ``case_links``). Nothing here reads a station's
database: any API node can drop its catalog and rebuild it from the archive (``reindex``).

How entries are checked and kept:

- Each writer's chain is read from a watermark (``writers.head_seq``/``head_hash``) with one
  ``start_after`` listing per poll, so a poll that finds nothing new costs one listing of
  ``keys/`` plus one listing per writer, and no reads.
- ``events.verified`` is 1 when the entry's Ed25519 signature checks with the writer's key as
  first indexed (a key later changed in the archive is reported, never silently adopted) and
  it continues the chain (``seq`` = head + 1, ``prev`` = hash of the entry before). Otherwise
  it is 0 and ``problem`` says what is wrong: altered, chain broken, entries missing,
  unreadable. Indexing goes on past a bad entry, so auditors see everything.
- A verified entry can still carry a ``problem`` about what it *describes*: a manifest that
  does not hash to what its ``archived`` event recorded, or a key that is not the one
  ``archive.keys`` gives for that recording. Such an event changes no catalog state.
- A recording is catalogued from its first verified ``archived`` event whose manifest (always
  at ``keys.manifest_key(recording)``, never at a key taken from an entry) hashes to the
  recorded ``manifest_sha256``. Its derived columns (viewing copies, flags, holds, cases,
  notes, retention) are recomputed from all its verified events whenever one of them is new,
  in the same transaction that stores the event, so the order in which writers are read
  does not matter and a crash never leaves a half-updated row.

This module must never write to, or delete from, the archive, and never decide anything from
a station's local state; a malformed object becomes a recorded problem, not a crash. An
unreachable archive raises ``StorageError`` from ``poll`` (the caller logs and retries).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..archive import keys
from ..archive.base import ArchiveStore
from ..custody import chain
from ..custody.chain import GENESIS, Head, Role
from ..clock import Clock, format_time, utc_now
from ..custody.signing import fingerprint, load_public_pem
from ..custody.trust import TrustAnchors
from ..errors import IntegrityError, ObjectMissingError
from ..state.db import Database
from .db import CATALOG_TABLES

BATCH_ENTRIES = 500  # ledger entries per transaction
OWN_CATCH_UP = 4  # entries index_own reads to reach the one asked for
LEDGER_SCAN_INTERVAL_S = 3600.0  # how often to look for writers that published no key

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PUBLIC_KEY_NAME = re.compile(r"^keys/(.+)\.pub$")

# Events that change a recording's catalog row (``content_problem``: what each must carry).
RECORDING_EVENTS = frozenset({
    "archived", "derived", "flagged", "hold-placed", "hold-released", "case-linked",
    "case-unlinked", "note-added", "retention-extended",
})


@dataclass
class PollResult:
    """What one poll (or reindex) did."""

    entries: int = 0  # ledger entries indexed
    recordings: int = 0  # recordings whose catalog row was written or removed
    problems: list[str] = field(default_factory=list)  # found by this poll, for the log


# -- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadEntry:
    """A stored ledger entry in the form it goes into ``events``, checked as far as it can be
    on its own by the custody core (``chain.read_entry``)."""

    writer: str
    seq: int  # from its key
    entry_hash: str  # canonical hash; SHA-256 of the raw bytes when unreadable
    readable: bool
    prev: str
    time: str
    event: str
    recording: str | None
    actor: str
    details: dict[str, Any]
    details_json: str
    sig: str
    problems: tuple[str, ...]  # about the entry itself: unreadable, altered, misplaced
    content_problem: str | None  # about what it describes (see ``content_problem``)
    checked: chain.ReadEntry


@dataclass(frozen=True)
class CheckedEntry:
    """One ledger entry as it goes into ``events``."""

    entry: ReadEntry
    chain_hash: str  # what the next entry's prev must be ('' when unknown)
    verified: bool
    problem: str | None


def read_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey,
               *, key_note: str = "") -> ReadEntry:
    """Parse the stored bytes of ``ledger/<writer>/<seq>.json`` and check its signature with
    the writer's key (``chain.read_entry``). ``key_note`` is added to a failed signature's
    problem (e.g. that the archive now holds a different key for this writer)."""
    read = chain.read_entry(writer, seq, data, public_key, key_note=key_note)
    problems = tuple(problem.message for problem in read.problems)
    raw = read.raw
    if raw is None:
        return ReadEntry(
            writer=writer, seq=seq, entry_hash=read.entry_hash, readable=False, prev="",
            time="", event="unreadable", recording=None, actor="", details={},
            details_json="{}", sig="", problems=problems, content_problem=None, checked=read)
    recording = read.recording
    details = raw["details"] if isinstance(raw["details"], dict) else {
        "invalid_details": raw["details"]}
    event = _text(raw["event"])
    return ReadEntry(
        writer=writer, seq=seq, entry_hash=read.entry_hash, readable=True,
        prev=_text(raw["prev"]), time=_text(raw["time"]), event=event, recording=recording,
        actor=_text(raw["actor"]), details=details,
        details_json=json.dumps(details, sort_keys=True, ensure_ascii=False),
        sig=base64.b64encode(read.signature).decode("ascii"), problems=problems,
        content_problem=content_problem(event, recording, details), checked=read,
    )


def link_entry(entry: ReadEntry, head: Head, *, judged: str | None = None) -> CheckedEntry:
    """Check an entry against the chain read so far (``chain.link_entry``). ``judged`` is why
    the writer's entry does not count although it verifies (key not trusted, outside the
    writer's role): it is then stored as not verified, with that reason."""
    checked = chain.link_entry(entry.checked, head)
    problems = [problem.message for problem in checked.problems]
    verified = checked.verified
    if verified and judged:
        problems.append(judged)
        verified = False
    if entry.content_problem:
        problems.append(entry.content_problem)
    return CheckedEntry(entry, checked.head.hash or "", verified, "; ".join(problems) or None)


def check_entry(writer: str, seq: int, data: bytes, public_key: Ed25519PublicKey, head: Head,
                *, key_note: str = "") -> CheckedEntry:
    """``read_entry`` then ``link_entry``: everything about one stored entry."""
    return link_entry(read_entry(writer, seq, data, public_key, key_note=key_note), head)


@dataclass
class WriterStanding:
    """What the catalog believes of a writer while reading its chain: is its key a trust
    anchor (None: no anchors configured) and its role so far (``chain.judge_entry``)."""

    fingerprint: str
    trusted: bool | None
    role: Role | None = None
    registered: bool = False

    def judge(self, checked: CheckedEntry) -> str | None:
        """Why a verified entry does not count, or None; advances the role."""
        entry = checked.entry.checked.entry
        if entry is None:
            return None
        self.role, self.registered, problem = chain.judge_entry(
            checked.entry.writer, self.fingerprint, self.role, self.registered, entry)
        if self.trusted is False:
            return chain.untrusted_problem(checked.entry.writer, self.fingerprint).message
        return problem.message if problem is not None else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _parse_time(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text (naive means UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def content_problem(event: str, recording: str | None, details: Mapping[str, Any]) -> str | None:
    """Why an event cannot change the catalog as it stands, or None. Keys are never taken
    from an entry: they must be the ones ``archive.keys`` gives for its recording."""
    if event not in RECORDING_EVENTS:
        return None
    if recording is None or not _SHA256.fullmatch(recording):
        return f"'{event}' event without a recording id: ignored"
    if event == "archived":
        expected = keys.manifest_key(recording)
        if details.get("manifest_key") != expected:
            return f"manifest_key {details.get('manifest_key')!r} is not {expected}: ignored"
        if not isinstance(details.get("manifest_sha256"), str):
            return "archived event without manifest_sha256: ignored"
    elif event == "derived":
        allowed = {
            "proxy": {keys.proxy_key(recording, "mp4"), keys.proxy_key(recording, "m4a")},
            "poster": {keys.poster_key(recording)},
        }
        for part, names in allowed.items():
            described = details.get(part)
            if described is None:
                continue
            if (not isinstance(described, dict) or described.get("key") not in names
                    or not isinstance(described.get("sha256"), str)
                    or not _SHA256.fullmatch(described["sha256"])):
                key = described.get("key") if isinstance(described, dict) else described
                return f"{part} {key!r} is not this recording's {part} with a SHA-256: ignored"
    elif event == "flagged":
        if not isinstance(details.get("flag"), str) or not details["flag"]:
            return "flagged event without a flag: ignored"
    elif event in ("hold-placed", "hold-released"):
        if not isinstance(details.get("hold_id"), str) or not details["hold_id"]:
            return f"{event} event without a hold_id: ignored"
    elif event in ("case-linked", "case-unlinked"):
        if not isinstance(details.get("case_id"), str) or not details["case_id"]:
            return f"{event} event without a case_id: ignored"
    elif event == "retention-extended":
        until = details.get("in_force") or details.get("retain_until")
        if _parse_time(until) is None:
            return "retention-extended event without a valid date: ignored"
    return None


@dataclass(frozen=True)
class LedgerEvent:
    """A verified event of one recording, as the catalog state is computed from it."""

    writer: str
    seq: int
    time: str
    event: str
    details: Mapping[str, Any]


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _zone(name: Any) -> ZoneInfo | timezone:
    try:
        return ZoneInfo(name) if isinstance(name, str) and name else timezone.utc
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return timezone.utc


def _optional_text(manifest: Mapping[str, Any], name: str) -> str | None:
    value = manifest.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} is not text")
    return value


def catalog_row(recording: str, manifest_bytes: bytes, archived: LedgerEvent,
                events: Sequence[LedgerEvent], *, indexed_at: str) -> tuple[dict[str, Any], list[str]]:
    """The ``recordings`` row and the case ids of one recording, from its manifest (already
    checked against ``manifest_sha256``), the ``archived`` event it is catalogued from, and all
    its verified events in time order. ValueError (saying why) when the manifest is unusable."""
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"manifest is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError("manifest is not a JSON object")
    if manifest.get("sha256") != recording or manifest.get("recording", recording) != recording:
        raise ValueError("manifest describes another recording")
    size_bytes, extension = manifest.get("size_bytes"), manifest.get("extension")
    if not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes < 0:
        raise ValueError("manifest size_bytes is not a byte count")
    if not isinstance(extension, str):
        raise ValueError("manifest extension is not text")
    try:
        original_key = keys.original_key(recording, extension)
    except ValueError:
        raise ValueError(f"manifest extension {extension!r} is not a safe extension") from None
    if manifest.get("original_key") != original_key:
        raise ValueError(f"manifest original_key {manifest.get('original_key')!r} is not "
                         f"{original_key}")
    station = manifest.get("station")
    if not isinstance(station, str) or not station:
        raise ValueError("manifest has no station")
    archived_at = manifest.get("verified_at")
    archived_moment = _parse_time(archived_at)
    if archived_moment is None or not isinstance(archived_at, str):
        raise ValueError("manifest verified_at is not a date/time")
    recorded_start = _optional_text(manifest, "recorded_start")
    deadline = _optional_text(manifest, "archive_deadline")
    zone_name = _optional_text(manifest, "timezone")

    start_moment = None
    if recorded_start is not None:
        try:
            start_moment = datetime.fromisoformat(recorded_start)
        except ValueError:
            raise ValueError(f"manifest recorded_start {recorded_start!r} is not a date/time") from None
        if start_moment.tzinfo is None:  # stations write offsets; a bare time is station-local
            start_moment = start_moment.replace(tzinfo=_zone(zone_name))
    deadline_moment = _parse_time(deadline)
    media = manifest.get("media")
    flag_list = manifest.get("flags") or []
    flag_reasons = manifest.get("flag_reasons") or {}
    storage = manifest.get("storage") or {}
    if (not isinstance(flag_list, list) or not all(isinstance(flag, str) for flag in flag_list)
            or not isinstance(flag_reasons, dict) or not isinstance(storage, dict)):
        raise ValueError("manifest flags, flag_reasons or storage have the wrong type")

    flags = set(flag_list)
    reasons = {str(name): reason for name, reason in flag_reasons.items()}
    retain_until = storage.get("retain_until") if isinstance(storage.get("retain_until"), str) else None
    proxy: tuple[str, str] | None = None
    poster: tuple[str, str] | None = None
    placed: set[str] = set()
    released: set[str] = set()
    cases: set[str] = set()
    notes = 0
    for event in events:
        details = event.details
        if content_problem(event.event, recording, details):
            continue
        if event.event == "derived":
            if isinstance(details.get("proxy"), dict):
                proxy = (details["proxy"]["key"], details["proxy"]["sha256"])
            if isinstance(details.get("poster"), dict):
                poster = (details["poster"]["key"], details["poster"]["sha256"])
        elif event.event == "flagged":
            flags.add(details["flag"])
            reason = details.get("reason")
            reasons[details["flag"]] = reason if isinstance(reason, str) else reasons.get(details["flag"], "")
        elif event.event == "hold-placed":
            placed.add(details["hold_id"])
        elif event.event == "hold-released":
            released.add(details["hold_id"])
        elif event.event == "case-linked":
            cases.add(details["case_id"])
        elif event.event == "case-unlinked":
            cases.discard(details["case_id"])
        elif event.event == "note-added":
            notes += 1
        elif event.event == "retention-extended":
            retain_until = later(retain_until, details.get("in_force") or details["retain_until"])

    row = {
        "sha256": recording,
        "station": station,
        "device_id": _optional_text(manifest, "device_id"),
        "officer_id": _optional_text(manifest, "officer_id"),
        "recorded_start": recorded_start,
        "recorded_end": _optional_text(manifest, "recorded_end"),
        "time_source": _optional_text(manifest, "time_source"),
        "timezone": zone_name,
        "sort_time": _utc_iso(start_moment if start_moment is not None else archived_moment),
        "archive_deadline": deadline,
        "archived_at": archived_at,
        "compliance": "late" if deadline_moment is not None and archived_moment > deadline_moment
        else "on_time",
        "size_bytes": size_bytes,
        "extension": extension,
        "original_key": original_key,
        "manifest_key": keys.manifest_key(recording),
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "manifest": manifest_bytes.decode("utf-8"),
        "media": json.dumps(media, ensure_ascii=False) if media is not None else None,
        "flags": json.dumps(sorted(flags)),
        "flag_reasons": json.dumps(reasons, ensure_ascii=False, sort_keys=True),
        "proxy_key": proxy[0] if proxy else None,
        "proxy_sha256": proxy[1] if proxy else None,
        "poster_key": poster[0] if poster else None,
        "poster_sha256": poster[1] if poster else None,
        "held": 1 if placed - released else 0,
        "retain_until": retain_until,
        "cases": json.dumps(sorted(cases), ensure_ascii=False),
        "notes": notes,
        "archived_by": archived.writer,
        "archived_seq": archived.seq,
        "indexed_at": indexed_at,
    }
    return row, sorted(cases)


def later(current: str | None, candidate: Any) -> str | None:
    """The later of two retain-until dates (as written); retention is never shortened."""
    candidate_moment = _parse_time(candidate)
    if candidate_moment is None:
        return current
    current_moment = _parse_time(current)
    if current_moment is None or candidate_moment > current_moment:
        return str(candidate)
    return current


# -- the indexer ------------------------------------------------------------------------------

_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_RECORDING_COLUMNS = (
    "sha256", "station", "device_id", "officer_id", "recorded_start", "recorded_end",
    "time_source", "timezone", "sort_time", "archive_deadline", "archived_at", "compliance",
    "size_bytes", "extension", "original_key", "manifest_key", "manifest_sha256", "manifest",
    "media", "flags", "flag_reasons", "proxy_key", "proxy_sha256", "poster_key",
    "poster_sha256", "held", "retain_until", "cases", "notes", "archived_by", "archived_seq",
    "indexed_at",
)
_INSERT_RECORDING = (
    f"INSERT OR REPLACE INTO recordings ({', '.join(_RECORDING_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _RECORDING_COLUMNS)})"
)


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
        self.trust = trust
        self.clock = clock
        self.ledger_scan_interval_s = ledger_scan_interval_s
        self.last_poll_at: str | None = None
        self._lock = threading.Lock()  # around every change to the catalog tables
        self._poll_lock = threading.Lock()  # one poll or reindex at a time
        self._last_ledger_scan: datetime | None = None
        self._reported: set[str] = set()  # odd objects already reported by this instance

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
                for table in CATALOG_TABLES:
                    conn.execute(f"DELETE FROM {table}")
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
            select = ("SELECT public_key, fingerprint, head_seq, head_hash FROM writers"
                      " WHERE writer = ?")
            row = self.database.query_one(select, (writer,))
            if row is None:  # this node's first entries, before any poll
                if seq > OWN_CATCH_UP or self._pin_key(writer, None) is None:
                    return False
                row = self.database.query_one(select, (writer,))
            if row is None or row["public_key"] is None:
                return False
            if seq <= row["head_seq"]:
                return bool(self.database.scalar(
                    "SELECT verified FROM events WHERE writer = ? AND seq = ?", (writer, seq)))
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
                self._insert(conn, ready)
                conn.execute("UPDATE writers SET head_seq = ?, head_hash = ?, updated_at = ?"
                             " WHERE writer = ?", (head.seq, head.hash, self._now(), writer))
                for checked in ready:
                    recording = checked.entry.recording
                    if recording is not None and _SHA256.fullmatch(recording):
                        self._refresh(conn, recording, {}, PollResult())
            return True

    def latest_checkpoints(self, *, skip: str | None = None) -> list[chain.SeenCheckpoint]:
        """The newest verified checkpoint entry of every writer but ``skip``, as catalogued:
        what this node witnesses in its own chain after a poll."""
        found: list[chain.SeenCheckpoint] = []
        # SQLite takes the bare columns from the row holding MAX(seq).
        for row in self.database.query(
                "SELECT writer, MAX(seq) AS seq, entry_hash, details FROM events"
                " WHERE event = ? AND verified = 1 GROUP BY writer",
                (str(chain.Event.CHECKPOINT),)):
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
        known = {row["writer"]: row for row in self.database.query(
            "SELECT writer, public_key, fingerprint, problem FROM writers")}
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
        with self.database.transaction() as conn:
            key_fingerprint = fingerprint(public)
            conn.execute(
                "INSERT INTO writers (writer, public_key, fingerprint, problem, updated_at)"
                " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (writer) DO UPDATE SET"
                " public_key = excluded.public_key, fingerprint = excluded.fingerprint,"
                " problem = NULL, updated_at = excluded.updated_at"
                " WHERE writers.public_key IS NULL",
                (writer, pem.decode("ascii", errors="replace"), key_fingerprint, self._now()),
            )
        return _WriterKey(public, key_fingerprint)

    def _set_writer_problem(self, conn: sqlite3.Connection, writer: str, problem: str | None,
                            result: PollResult, *, new_part: str | None = None) -> None:
        """Store the writer's problem; report ``new_part`` (default: all of it) if it is new.
        (Entry problems are reported one by one as they are indexed.)"""
        row = conn.execute("SELECT problem FROM writers WHERE writer = ?", (writer,)).fetchone()
        stored = row["problem"] if row is not None else None
        if stored == problem:
            return
        report = new_part if new_part is not None else problem
        if report and report not in (stored or ""):
            result.problems.append(f"writer {writer}: {report}")
        conn.execute(
            "INSERT INTO writers (writer, problem, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (writer) DO UPDATE SET problem = excluded.problem,"
            " updated_at = excluded.updated_at",
            (writer, problem, self._now()),
        )

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

        head = self._head(writer)
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

        for chunk in _chunks(listed, BATCH_ENTRIES):
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
                head = self._head(writer, conn)
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
                            and _SHA256.fullmatch(entry.recording)):
                        touched.add(entry.recording)
                self._insert(conn, checked_entries)
                result.entries += len(checked_entries)
                conn.execute("UPDATE writers SET head_seq = ?, head_hash = ?, updated_at = ?"
                             " WHERE writer = ?", (head.seq, head.hash, self._now(), writer))
                for recording in sorted(touched):
                    if self._refresh(conn, recording, manifests, result):
                        catalogued.add(recording)
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

    def _standing(self, writer: str, key_fingerprint: str,
                  conn: sqlite3.Connection | None = None) -> WriterStanding:
        """The writer's trust and role as far as its chain is indexed: the role of its first
        verified ``key-registered`` entry, else inferred from its first verified entry."""
        standing = WriterStanding(key_fingerprint, self.trust.trusts(key_fingerprint))

        def one(sql: str) -> Any:
            return (conn.execute(sql, (writer,)).fetchone() if conn is not None
                    else self.database.query_one(sql, (writer,)))

        registration = one("SELECT details FROM events WHERE writer = ? AND verified = 1 AND"
                           " event = 'key-registered' ORDER BY seq LIMIT 1")
        if registration is not None:
            claimed = json.loads(registration["details"]).get("role")
            if claimed in tuple(Role):
                standing.role, standing.registered = Role(claimed), True
                return standing
        first = one("SELECT event FROM events WHERE writer = ? AND verified = 1 AND"
                    " event != 'key-registered' ORDER BY seq LIMIT 1")
        if first is not None:
            signers = [role for role in Role if chain.may_sign(role, first["event"])]
            standing.role = signers[0] if len(signers) == 1 else None
        return standing

    def _writer_problem(self, conn: sqlite3.Connection, writer: str,
                        key_problem: str | None) -> str | None:
        parts = [key_problem] if key_problem else []
        count, first = conn.execute(
            "SELECT COUNT(*), MIN(seq) FROM events WHERE writer = ? AND verified = 0",
            (writer,)).fetchone()
        if count:
            problem = conn.execute("SELECT problem FROM events WHERE writer = ? AND seq = ?",
                                   (writer, first)).fetchone()["problem"]
            parts.append(f"entries with problems: {count}, the first at seq {first}: {problem}")
        return " | ".join(parts) or None

    def _head(self, writer: str, conn: sqlite3.Connection | None = None) -> Head:
        sql = "SELECT head_seq, head_hash FROM writers WHERE writer = ?"
        row = (conn.execute(sql, (writer,)).fetchone() if conn is not None
               else self.database.query_one(sql, (writer,)))
        return Head(int(row["head_seq"]), str(row["head_hash"])) if row is not None else GENESIS

    def _insert(self, conn: sqlite3.Connection, checked: Sequence[CheckedEntry]) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO events (writer, seq, entry_hash, prev, time, event, recording,"
            " actor, details, sig, verified, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(item.entry.writer, item.entry.seq, item.entry.entry_hash, item.entry.prev,
              item.entry.time, item.entry.event, item.entry.recording, item.entry.actor,
              item.entry.details_json, item.entry.sig, 1 if item.verified else 0, item.problem)
             for item in checked],
        )

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
        if wanted:
            present = {row["sha256"] for row in self.database.query(
                f"SELECT sha256 FROM recordings WHERE sha256 IN ({', '.join('?' for _ in wanted)})",
                sorted(wanted))}
            wanted -= present
        return {recording: self._read_manifest(recording) for recording in sorted(wanted)}

    def _refresh(self, conn: sqlite3.Connection, recording: str,
                 manifests: dict[str, bytes | None], result: PollResult) -> bool:
        """Recompute one recording's catalog row from all its verified events. True when the
        row was written or removed."""
        events: list[LedgerEvent] = []
        stored_problems: dict[tuple[str, int], str | None] = {}
        for event_row in conn.execute(
                "SELECT writer, seq, time, event, details, problem FROM events"
                " WHERE recording = ? AND verified = 1 ORDER BY time, writer, seq", (recording,)):
            events.append(LedgerEvent(event_row["writer"], event_row["seq"], event_row["time"],
                                      event_row["event"], json.loads(event_row["details"])))
            stored_problems[(event_row["writer"], event_row["seq"])] = event_row["problem"]
        existing = conn.execute("SELECT * FROM recordings WHERE sha256 = ?", (recording,)).fetchone()
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
                    conn.execute("UPDATE events SET problem = ? WHERE writer = ? AND seq = ?",
                                 (conflict, archived.writer, archived.seq))
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
                conn.execute("UPDATE events SET problem = ? WHERE writer = ? AND seq = ?",
                             (problem, archived.writer, archived.seq))
                if problem is not None:
                    result.problems.append(f"recording {recording[:12]}: {problem}; not catalogued"
                                           f" from {archived.writer}#{archived.seq}")
            if problem is not None:
                continue  # a later 'archived' event (another station) may still do
            if existing is not None and all(
                    existing[column] == row[column] for column in _RECORDING_COLUMNS
                    if column != "indexed_at"):
                return False
            conn.execute(_INSERT_RECORDING, [row[column] for column in _RECORDING_COLUMNS])
            if existing is None or existing["cases"] != row["cases"]:
                conn.execute("DELETE FROM case_links WHERE sha256 = ?", (recording,))
                conn.executemany("INSERT INTO case_links (case_id, sha256) VALUES (?, ?)",
                                 [(case_id, recording) for case_id in cases])
            return True
        if existing is None:
            return False
        conn.execute("DELETE FROM recordings WHERE sha256 = ?", (recording,))
        conn.execute("DELETE FROM case_links WHERE sha256 = ?", (recording,))
        return True
