"""The API node's incidents: imported dispatch records and their stored coverage.

Owns the tables ``incidents``, ``incident_officers``, ``incident_coverage``,
``incident_watermark`` and ``incident_link_rejections`` (``INCIDENT_SCHEMA``). Like the
catalog they are an index of the archive: incidents come from archived dispatch documents
named by signed ``incidents-imported`` events, so ``reindex`` rebuilds them. Coverage is
computed by ``incidents.coverage`` and stored, so the console's incidents page is an indexed
query, not a computation; it is refreshed for the incidents a poll's new recordings or
imports may touch, and for those whose 24-hour window has closed since the last refresh.

What must never happen: an incident shown as covered by footage the caller's role could not
see being counted for someone else, or a coverage row older than the recordings it names.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..archive.base import ArchiveStore
from ..clock import format_time, parse_optional
from ..config import Config
from ..custody.chain import Event
from ..errors import IntegrityError, NotFoundError, ObjectExistsError
from ..incidents.document import PREFIX, ImportDocument, document_key, import_details
from ..incidents.coverage import Coverage, CoveragePolicy, Footage, FootageIndex, cover
from ..incidents.records import Incident, RowProblem, parse_incidents
from ..state.db import Database
from ..i18n import _

INCIDENT_TABLES = ("incident_link_rejections",
                   "incident_watermark", "incident_coverage", "incident_officers", "incidents")

INCIDENT_SCHEMA = """
    -- Dispatch records as last imported (by incident id). 'document' is the archived
    -- dispatch/<sha256>.json and 'seq' the incidents-imported event that brought it.
    CREATE TABLE incidents (
        incident_id  TEXT PRIMARY KEY,
        officers     TEXT NOT NULL,    -- JSON list
        start        TEXT NOT NULL,    -- UTC
        end          TEXT NOT NULL,
        type         TEXT NOT NULL DEFAULT '',
        place        TEXT NOT NULL DEFAULT '',
        station      TEXT NOT NULL DEFAULT '',
        document     TEXT NOT NULL,
        writer       TEXT NOT NULL,
        seq          INTEGER NOT NULL
    );
    CREATE TABLE incident_officers (
        officer_id   TEXT NOT NULL,
        incident_id  TEXT NOT NULL,
        PRIMARY KEY (officer_id, incident_id)
    );
    CREATE INDEX incident_officers_incident ON incident_officers (incident_id);
    CREATE TABLE incident_coverage (
        incident_id  TEXT PRIMARY KEY,
        state        TEXT NOT NULL,    -- covered | partial | missing | pending
        fraction     REAL NOT NULL,
        gaps         TEXT NOT NULL,    -- JSON [[start, end], ...]
        recordings   TEXT NOT NULL,    -- JSON list of sha256
        by_officer   TEXT NOT NULL,    -- JSON {officer: [fraction, state]}
        end          TEXT NOT NULL,    -- the incident's end, for "closed since" queries
        computed_at  TEXT NOT NULL
    );
    CREATE INDEX incident_coverage_state ON incident_coverage (state, end, incident_id);
    CREATE INDEX incident_coverage_end ON incident_coverage (end, incident_id);
    -- The highest recordings rowid seen by the last refresh (the indexer's INSERT OR REPLACE
    -- gives every new or changed recording row a higher rowid).
    CREATE TABLE incident_watermark (
        name   TEXT PRIMARY KEY,
        value  INTEGER NOT NULL
    );
    CREATE TABLE incident_link_rejections (
        incident_id  TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        PRIMARY KEY (incident_id, sha256)
    );
"""

def coverage_policy(config: Config) -> CoveragePolicy:
    return CoveragePolicy(margin=timedelta(minutes=config.incidents.margin_minutes),
                          seam=timedelta(seconds=config.incidents.seam_s),
                          covered_fraction=config.incidents.covered_fraction,
                          archive_window=timedelta(hours=config.compliance.deadline_hours))


# A recorder's apparent clock offset below this is the ordinary age of its newest file.
MIN_OFFSET_S = 120.0


@dataclass(frozen=True)
class StoredCoverage:
    incident: Incident
    state: Coverage
    fraction: float
    gaps: tuple[tuple[str, str], ...]
    recordings: tuple[str, ...]
    by_officer: dict[str, float]
    officer_states: dict[str, Coverage]

    def to_json(self) -> dict[str, Any]:
        return {**self.incident.to_json(), "coverage": str(self.state),
                "fraction": round(self.fraction, 4),
                "gaps": [{"start": start, "end": end} for start, end in self.gaps],
                "recordings": list(self.recordings),
                "officer_coverage": [{"officer_id": officer, "fraction": round(share, 4),
                              "coverage": str(self.officer_states[officer])}
                             for officer, share in self.by_officer.items()]}


class IncidentBook:
    """Reads and writes the incident tables; the only module with their SQL."""

    def __init__(self, database: Database, *, policy: CoveragePolicy = CoveragePolicy()) -> None:
        self.database = database
        self.policy = policy

    # --- imports (from the archive, through the indexer or right after recording) -------

    def apply_import(self, incidents: Iterable[Incident], *, document: str, writer: str,
                     seq: int) -> dict[str, int]:
        """Store imported incidents: new ids added, changed ones replaced, equal ones kept."""
        counts = {"added": 0, "changed": 0, "unchanged": 0}
        with self.database.transaction() as conn:
            for incident in incidents:
                row = conn.execute("SELECT officers, start, end, type, place, station"
                                   " FROM incidents WHERE incident_id = ?",
                                   (incident.incident_id,)).fetchone()
                values = _values(incident)
                if row is not None and tuple(row) == values:
                    counts["unchanged"] += 1
                    continue
                counts["changed" if row is not None else "added"] += 1
                conn.execute(
                    "INSERT INTO incidents (incident_id, officers, start, end, type, place,"
                    " station, document, writer, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (incident_id) DO UPDATE SET officers = excluded.officers,"
                    " start = excluded.start, end = excluded.end, type = excluded.type,"
                    " place = excluded.place, station = excluded.station,"
                    " document = excluded.document, writer = excluded.writer, seq = excluded.seq",
                    (incident.incident_id, *values, document, writer, seq))
                conn.execute("DELETE FROM incident_officers WHERE incident_id = ?",
                             (incident.incident_id,))
                conn.executemany(
                    "INSERT INTO incident_officers (officer_id, incident_id) VALUES (?, ?)",
                    [(officer, incident.incident_id) for officer in incident.officers])
                conn.execute("DELETE FROM incident_coverage WHERE incident_id = ?",
                             (incident.incident_id,))
        return counts

    def remove_suggestion(self, record: Recorder, incident_id: str, sha256: str, *,
                          actor: str, reason: str) -> dict[str, Any]:
        """A supervisor says a recording does not belong to an incident: signed first
        (``incident-link-rejected``), then it no longer counts for the incident."""
        found = self.page_one(incident_id)
        if sha256 not in found.recordings:
            raise NotFoundError(_("recording {sha256} is not suggested for incident {incident_id}").format(
                sha256=sha256[:12], incident_id=incident_id))
        entry = record(Event.INCIDENT_LINK_REJECTED, recording=sha256, actor=actor,
                       details={"incident_id": incident_id, "reason": reason})
        self.reject_link(incident_id, sha256)
        return entry

    def page_one(self, incident_id: str) -> StoredCoverage:
        rows = self.database.query(
            "SELECT i.*, c.state, c.fraction, c.gaps, c.recordings, c.by_officer"
            " FROM incident_coverage c JOIN incidents i ON i.incident_id = c.incident_id"
            " WHERE c.incident_id = ?", (incident_id,))
        if not rows:
            raise NotFoundError(_("no incident {incident_id!r} (or its coverage is not computed "
                                  "yet)").format(incident_id=incident_id))
        return _stored(rows[0])

    def compare(self, incidents: Iterable[Incident]) -> dict[str, int]:
        """What ``apply_import`` would do with these incidents: added, changed, unchanged."""
        counts = {"added": 0, "changed": 0, "unchanged": 0}
        for incident in incidents:
            row = self.database.query_one("SELECT officers, start, end, type, place, station"
                                          " FROM incidents WHERE incident_id = ?",
                                          (incident.incident_id,))
            state = ("added" if row is None else
                     "unchanged" if tuple(row) == _values(incident) else "changed")
            counts[state] += 1
        return counts

    def reject_link(self, incident_id: str, sha256: str) -> None:
        with self.database.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO incident_link_rejections (incident_id, sha256)"
                         " VALUES (?, ?)", (incident_id, sha256))
            conn.execute("DELETE FROM incident_coverage WHERE incident_id = ?", (incident_id,))

    def incident(self, incident_id: str) -> Incident | None:
        row = self.database.query_one("SELECT * FROM incidents WHERE incident_id = ?",
                                      (incident_id,))
        return _incident(row) if row is not None else None

    # --- coverage --------------------------------------------------------------------------

    def refresh(self, now: datetime, *, incident_ids: Sequence[str] | None = None) -> int:
        """Compute and store coverage for the incidents that need it; returns how many.

        Without ``incident_ids``: those never computed, those still pending whose window has
        closed since, and those whose officers have recordings catalogued (or changed) since
        the last refresh.
        """
        seen = int(self.database.scalar("SELECT COALESCE(MAX(rowid), 0) FROM recordings"))
        if incident_ids is None:
            incident_ids = self._stale(now)
        if not incident_ids:
            self._set_watermark(seen)
            return 0
        incidents = self._incidents(incident_ids)
        officers = sorted({officer for incident in incidents for officer in incident.officers})
        index = FootageIndex(self._footage(officers))
        rejected = self._rejections(incident_ids)
        results = [cover(incident, index, now=now, policy=self.policy,
                         excluding=rejected.get(incident.incident_id, frozenset()))
                   for incident in incidents]
        computed_at = format_time(now)
        with self.database.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO incident_coverage (incident_id, state, fraction, gaps,"
                " recordings, by_officer, end, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(result.incident.incident_id, str(result.state), result.fraction,
                  json.dumps([[format_time(g.start), format_time(g.end)] for g in result.gaps]),
                  json.dumps(list(result.recordings)),
                  json.dumps({officer: [result.by_officer[officer], str(state)]
                              for officer, state in result.officer_states.items()}),
                  format_time(result.incident.end), computed_at) for result in results])
        self._set_watermark(seen)
        return len(results)

    def _set_watermark(self, rowid: int) -> None:
        self.database.execute(
            "INSERT INTO incident_watermark (name, value) VALUES ('recordings', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)", (rowid,))

    def _stale(self, now: datetime) -> list[str]:
        closing = format_time(now - self.policy.archive_window)
        rows = self.database.query(
            "SELECT i.incident_id FROM incidents i"
            " LEFT JOIN incident_coverage c ON c.incident_id = i.incident_id"
            " WHERE c.incident_id IS NULL"
            "    OR (c.state = 'pending' AND c.end <= ?)"
            "    OR i.incident_id IN (SELECT o.incident_id FROM incident_officers o"
            "        WHERE o.officer_id IN (SELECT officer_id FROM recordings WHERE rowid >"
            "            COALESCE((SELECT value FROM incident_watermark"
            "                      WHERE name = 'recordings'), 0)))",
            (closing,))
        return [row["incident_id"] for row in rows]

    def _incidents(self, incident_ids: Sequence[str]) -> list[Incident]:
        found: list[Incident] = []
        for chunk in _chunks(incident_ids):
            marks = ",".join("?" * len(chunk))
            found.extend(_incident(row) for row in self.database.query(
                f"SELECT * FROM incidents WHERE incident_id IN ({marks})", chunk))
        return found

    def _footage(self, officers: Sequence[str]) -> list[Footage]:
        offsets = self._dock_offsets()
        footage: list[Footage] = []
        for chunk in _chunks(officers):
            marks = ",".join("?" * len(chunk))
            # A recording whose recorded time is known to be wrong (flag time_implausible)
            # cannot be placed on the incident's timeline.
            for sha256, officer, device, started, ended in self.database.query(
                    "SELECT sha256, officer_id, device_id, recorded_start, recorded_end"
                    f" FROM recordings WHERE officer_id IN ({marks})"
                    " AND flags NOT LIKE '%\"time_implausible\"%'", chunk):
                start = _moment(started)
                footage.append(Footage(sha256, officer, start, _moment(ended),
                                       _offset_for(offsets.get(device, ()), start)))
        return footage

    def _dock_offsets(self) -> dict[str, list[tuple[datetime, timedelta]]]:
        """Per device, each dock's time and the recorder's clock lead measured then."""
        offsets: dict[str, list[tuple[datetime, timedelta]]] = {}
        for row in self.database.query(
                "SELECT time, details FROM events WHERE event = 'device-docked' AND verified = 1"
                " ORDER BY time"):
            details = json.loads(row["details"])
            lead = details.get("clock_offset_s")
            device = details.get("device_id")
            if isinstance(device, str) and isinstance(lead, (int, float)):
                parsed = parse_optional(row["time"])
                if parsed is not None:
                    offsets.setdefault(device, []).append(
                        (parsed, timedelta(seconds=lead if lead >= MIN_OFFSET_S else 0)))
        return offsets

    def _rejections(self, incident_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for chunk in _chunks(incident_ids):
            marks = ",".join("?" * len(chunk))
            for row in self.database.query(
                    "SELECT incident_id, sha256 FROM incident_link_rejections"
                    f" WHERE incident_id IN ({marks})", chunk):
                found.setdefault(row["incident_id"], set()).add(row["sha256"])
        return {incident: frozenset(ids) for incident, ids in found.items()}

    # --- reading ---------------------------------------------------------------------------

    def page(self, *, state: Coverage | None = None, officer: str | None = None,
             ended_after: str | None = None, ended_before: str | None = None,
             after: tuple[str, str] | None = None, limit: int = 50) -> list[StoredCoverage]:
        """Incidents by end time (newest first), keyset-paged by (end, incident_id)."""
        where, params = ["1 = 1"], []
        if state is not None:
            where.append("c.state = ?")
            params.append(str(state))
        if officer is not None:
            where.append("c.incident_id IN (SELECT incident_id FROM incident_officers"
                         " WHERE officer_id = ?)")
            params.append(officer)
        if ended_after is not None:
            where.append("c.end >= ?")
            params.append(ended_after)
        if ended_before is not None:
            where.append("c.end < ?")
            params.append(ended_before)
        if after is not None:
            where.append("(c.end, c.incident_id) < (?, ?)")
            params.extend(after)
        rows = self.database.query(
            "SELECT i.*, c.state, c.fraction, c.gaps, c.recordings, c.by_officer"
            " FROM incident_coverage c JOIN incidents i ON i.incident_id = c.incident_id"
            f" WHERE {' AND '.join(where)} ORDER BY c.end DESC, c.incident_id DESC LIMIT ?",
            (*params, limit))
        return [_stored(row) for row in rows]

    def ended_between(self, start: datetime, end: datetime) -> list[StoredCoverage]:
        """Every incident that ended in ``[start, end)``, oldest first (for reports)."""
        return [_stored(row) for row in self.database.query(
            "SELECT i.*, c.state, c.fraction, c.gaps, c.recordings, c.by_officer"
            " FROM incident_coverage c JOIN incidents i ON i.incident_id = c.incident_id"
            " WHERE c.end >= ? AND c.end < ? ORDER BY c.end, c.incident_id",
            (format_time(start), format_time(end)))]

    def missing_since(self, since: datetime) -> int:
        """Incidents without footage that ended at or after ``since``."""
        return int(self.database.scalar(
            "SELECT COUNT(*) FROM incident_coverage WHERE state = 'missing' AND end >= ?",
            (format_time(since),)))

    def counts(self) -> dict[Coverage, int]:
        found = {state: 0 for state in Coverage}
        for row in self.database.query(
                "SELECT state, COUNT(*) AS n FROM incident_coverage GROUP BY state"):
            found[Coverage(row["state"])] = int(row["n"])
        return found


def _values(incident: Incident) -> tuple[str, str, str, str, str, str]:
    return (json.dumps(list(incident.officers)), format_time(incident.start),
            format_time(incident.end), incident.type, incident.place, incident.station)


def _incident(row: sqlite3.Row) -> Incident:
    start, end = parse_optional(row["start"]), parse_optional(row["end"])
    assert start is not None and end is not None  # NOT NULL columns
    return Incident(row["incident_id"], tuple(json.loads(row["officers"])), start, end,
                    row["type"], row["place"], row["station"])


def _stored(row: sqlite3.Row) -> StoredCoverage:
    officers = json.loads(row["by_officer"])
    return StoredCoverage(
        _incident(row), Coverage(row["state"]), float(row["fraction"]),
        tuple((start, end) for start, end in json.loads(row["gaps"])),
        tuple(json.loads(row["recordings"])),
        {officer: float(share) for officer, (share, _) in officers.items()},
        {officer: Coverage(state) for officer, (_, state) in officers.items()})


def _moment(text: str | None) -> datetime | None:
    """A stored time; the catalog's ISO text parses directly (the general parser is the
    fallback), which matters for the hundreds of thousands read in one refresh."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return parse_optional(text)
    return moment if moment.tzinfo is not None else parse_optional(text)


def _offset_for(docks: Sequence[tuple[datetime, timedelta]], start: datetime | None) -> timedelta:
    """The clock lead measured at the first dock after the recording started."""
    if start is None:
        return timedelta(0)
    for docked_at, lead in docks:
        if docked_at >= start:
            return lead
    return timedelta(0)


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for first in range(0, len(items), size):
        yield items[first:first + size]


def load_document(store: ArchiveStore, key: str) -> ImportDocument:
    """An archived dispatch document, checked against the hash its name carries;
    IntegrityError when it was changed or is not one."""
    if not key.startswith(PREFIX) or not key.endswith(".json"):
        raise IntegrityError(_("incidents-imported names {key!r}, not a dispatch document").format(
            key=key))
    data = store.get_bytes(key)
    if document_key(data) != key:
        raise IntegrityError(_("{key} does not hash to its name: the dispatch document was changed").format(
            key=key))
    try:
        return ImportDocument.from_bytes(data)
    except ValueError as exc:
        raise IntegrityError(f"{key}: {exc}") from None


class Recorder(Protocol):
    """``ApiNode.record``: append an event to the node's signed chain and index it."""

    def __call__(self, event: Event, *, recording: str | None, actor: str,
                 details: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ImportResult:
    document: str | None  # the archived dispatch document, None when nothing was loaded
    seq: int | None  # the incidents-imported event
    counts: dict[str, int]
    problems: tuple[RowProblem, ...]


def import_dispatch(book: IncidentBook, store: ArchiveStore, record: Recorder, data: bytes, *,
                    name: str, actor: str, zone: tzinfo, now: datetime) -> ImportResult:
    """Archive a dispatch export, sign its import, then index its incidents.

    The document is stored (create-only: the same document again is the same object) and the
    ``incidents-imported`` event signed before the incidents table changes, so the table
    never holds an incident the archive cannot show. ConfigError when the file as a whole
    cannot be read; bad rows come back as ``problems`` and the good rows load.
    """
    parsed = parse_incidents(data, name=name, zone=zone)
    if not parsed.incidents:
        return ImportResult(None, None, {"added": 0, "changed": 0, "unchanged": 0},
                            parsed.problems)
    document = ImportDocument(name, hashlib.sha256(data).hexdigest(), actor, parsed.incidents,
                              len(parsed.problems))
    body = document.to_bytes()
    key = document_key(body)
    try:
        store.put_bytes(key, body)
    except ObjectExistsError:
        load_document(store, key)  # the same document, archived before; anything else raises
    ids = [incident.incident_id for incident in parsed.incidents]
    counts = book.compare(parsed.incidents)  # before the event: indexing it applies the import
    entry = record(Event.INCIDENTS_IMPORTED, recording=None, actor=actor,
                   details=import_details(document, key, ids))
    book.apply_import(parsed.incidents, document=key, writer=str(entry["writer"]),
                      seq=int(entry["seq"]))
    book.refresh(now, incident_ids=ids)
    return ImportResult(key, int(entry["seq"]), counts, parsed.problems)


RECENT_DAYS = 7  # a missing incident alerts for this long after its window closed


class IncidentCollector(Collector):
    """``evidence_incidents{coverage}`` and ``evidence_incidents_missing_recent`` at scrape
    time, from the stored coverage (alert ``EvidenceIncidentsWithoutFootage``)."""

    def __init__(self, book: IncidentBook, clock: Callable[[], datetime]) -> None:
        self.book = book
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        counts = GaugeMetricFamily("evidence_incidents", "Imported incidents by footage "
                                   "coverage (covered, partial, missing, pending)",
                                   labels=["coverage"])
        for state, count in self.book.counts().items():
            counts.add_metric([str(state)], float(count))
        yield counts
        since = self.clock() - self.book.policy.archive_window - timedelta(days=RECENT_DAYS)
        yield GaugeMetricFamily(
            "evidence_incidents_missing_recent", "Incidents with no footage whose 24-hour "
            f"archival window closed within the last {RECENT_DAYS} days",
            value=float(self.book.missing_since(since)))
