"""The API node's incident tables: imports, stored coverage and its refresh, on real SQLite."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon.api.db import open_api_database
from evidence_daemon.api.incidents import IncidentBook
from evidence_daemon.clock import format_time
from evidence_daemon.incidents.coverage import Coverage
from evidence_daemon.incidents.records import Incident
from evidence_daemon.state.db import Database

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def add_recording(database: Database, sha: str, officer: str, start: float, end: float, *,
                  device: str = "cam-1", flags: list[str] | None = None) -> None:
    database.execute(
        "INSERT OR REPLACE INTO recordings (sha256, station, device_id, officer_id, recorded_start,"
        " recorded_end, sort_time, archived_at, compliance, size_bytes, extension, original_key,"
        " manifest_key, manifest_sha256, manifest, flags, archived_by, archived_seq, indexed_at)"
        " VALUES (?, 'st-1', ?, ?, ?, ?, ?, ?, 'on_time', 1, 'mp4', 'k', 'm', 'h', '{}', ?, 'st-1', 1, ?)",
        (sha, device, officer, format_time(at(start)), format_time(at(end)), format_time(at(start)),
         format_time(at(end)), json.dumps(flags or []), format_time(at(end))))


def add_dock(database: Database, device: str, when: float, offset_s: float, seq: int) -> None:
    database.execute(
        "INSERT INTO events (writer, seq, entry_hash, prev, time, event, recording, actor, details,"
        " sig, verified) VALUES ('st-1', ?, 'h', 'p', ?, 'device-docked', NULL, 'station', ?, 's', 1)",
        (seq, format_time(at(when)), json.dumps({"device_id": device, "clock_offset_s": offset_s})))


@pytest.fixture
def book(tmp_path: Path) -> IncidentBook:
    return IncidentBook(open_api_database(tmp_path / "api.db"))


def incident(incident_id: str, officers: tuple[str, ...], start: float, end: float) -> Incident:
    return Incident(incident_id, officers, at(start), at(end), "dispute", "East St", "st-1")


def test_import_is_idempotent_by_id_and_a_correction_replaces_details(book: IncidentBook) -> None:
    first = book.apply_import([incident("I1", ("A1",), 0, 30), incident("I2", ("A2",), 0, 30)],
                              document="dispatch/a.json", writer="api-1", seq=5)
    assert first == {"added": 2, "changed": 0, "unchanged": 0}
    again = book.apply_import([incident("I1", ("A1",), 0, 30), incident("I2", ("A2",), 0, 40)],
                              document="dispatch/b.json", writer="api-1", seq=6)
    assert again == {"added": 0, "changed": 1, "unchanged": 1}
    corrected = book.incident("I2")
    assert corrected is not None and corrected.end == at(40)


def test_missing_turns_covered_when_a_late_recording_is_catalogued(book: IncidentBook) -> None:
    book.apply_import([incident("I1", ("A1",), 0, 30)], document="d", writer="api-1", seq=1)
    assert book.refresh(at(60)) == 1
    assert book.counts()[Coverage.PENDING] == 1
    assert book.refresh(at(61)) == 0  # nothing changed: nothing recomputed
    assert book.refresh(at(30 + 24 * 60 + 1)) == 1  # the window closed
    (row,) = book.page(state=Coverage.MISSING)
    assert row.incident.incident_id == "I1" and row.fraction == 0.0
    add_recording(book.database, "a" * 64, "A1", -1, 31)  # the card docked late
    assert book.refresh(at(30 + 24 * 60 + 2)) == 1
    (row,) = book.page()
    assert row.state is Coverage.COVERED and row.recordings == ("a" * 64,)
    assert row.to_json()["officer_coverage"] == [{"officer_id": "A1", "fraction": 1.0, "coverage": "covered"}]


def test_a_recorder_clock_lead_measured_at_dock_is_taken_off(book: IncidentBook) -> None:
    add_recording(book.database, "b" * 64, "A1", 60, 90, device="cam-fast")  # clock 1 h ahead
    add_dock(book.database, "cam-fast", 200, 3600.0, seq=1)
    book.apply_import([incident("I1", ("A1",), 0, 30)], document="d", writer="api-1", seq=1)
    book.refresh(at(5000))
    (row,) = book.page()
    assert row.state is Coverage.COVERED


def test_footage_with_an_implausible_clock_is_not_placed(book: IncidentBook) -> None:
    add_recording(book.database, "c" * 64, "A1", 0, 30, flags=["time_implausible"])
    book.apply_import([incident("I1", ("A1",), 0, 30)], document="d", writer="api-1", seq=1)
    book.refresh(at(5000))
    assert book.counts()[Coverage.MISSING] == 1


def test_a_rejected_link_no_longer_counts(book: IncidentBook) -> None:
    add_recording(book.database, "d" * 64, "A1", 0, 30)
    book.apply_import([incident("I1", ("A1",), 0, 30)], document="d", writer="api-1", seq=1)
    book.refresh(at(5000))
    assert book.counts()[Coverage.COVERED] == 1
    book.reject_link("I1", "d" * 64)
    book.refresh(at(5001))
    assert book.counts()[Coverage.MISSING] == 1


def test_pages_by_officer_newest_first_with_a_keyset(book: IncidentBook) -> None:
    book.apply_import([incident(f"I{n}", ("A1",) if n % 2 else ("A2",), n * 60, n * 60 + 30)
                       for n in range(1, 7)], document="d", writer="api-1", seq=1)
    book.refresh(at(10_000))
    first = book.page(officer="A1", limit=2)
    assert [row.incident.incident_id for row in first] == ["I5", "I3"]
    last = first[-1]
    rest = book.page(officer="A1", after=(format_time(last.incident.end), last.incident.incident_id))
    assert [row.incident.incident_id for row in rest] == ["I1"]


def test_an_import_is_archived_and_signed_before_the_table_changes(tmp_path: Path) -> None:
    from evidence_daemon.api.incidents import import_dispatch
    from evidence_daemon.api.service import open_api_node
    from evidence_daemon.config import load_config
    from evidence_daemon.custody.verify import verify_archive
    from evidence_daemon.incidents.document import ImportDocument
    from tests.api_fixtures import make_api_config

    archive = tmp_path / "archive"
    node = open_api_node(load_config(make_api_config(tmp_path / "api", archive), environ={}),
                         clock=lambda: at(5000))
    try:
        book = IncidentBook(node.database)
        data = ("incident_id,officers,start,end,type\n"
                "I1,A1,2026-11-02T08:00:00Z,2026-11-02T08:30:00Z,dispute\n"
                "I2,,2026-11-02T08:00:00Z,2026-11-02T08:30:00Z,dispute\n").encode()
        zone = timezone.utc
        result = import_dispatch(book, node.store, node.record, data, name="jq.csv",
                                 actor="user:sup", zone=zone, now=at(5000))
        assert result.counts == {"added": 1, "changed": 0, "unchanged": 0}
        assert [p.describe("jq.csv") for p in result.problems] == ["jq.csv:3: incident I2: no officer id"]
        assert result.document is not None
        stored = ImportDocument.from_bytes((archive / result.document).read_bytes())
        assert [i.incident_id for i in stored.incidents] == ["I1"] and stored.rejected_rows == 1
        events = node.database.query("SELECT event, actor, details FROM events WHERE writer = ?"
                                     " AND event = 'incidents-imported'", (node.writer,))
        assert [(e["event"], e["actor"], json.loads(e["details"])["document"]) for e in events] == [
            ("incidents-imported", "user:sup", result.document)]
        assert book.counts()[Coverage.MISSING] == 1
        again = import_dispatch(book, node.store, node.record, data, name="jq.csv",
                                actor="user:sup", zone=zone, now=at(5000))
        assert again.counts == {"added": 0, "changed": 0, "unchanged": 1}
        assert again.document == result.document  # the same document, archived once
        assert node.database.scalar("SELECT COUNT(*) FROM events WHERE event = 'incidents-imported'") == 2
    finally:
        node.close()
    report = verify_archive(node.store)
    assert report.ok, report.problems
