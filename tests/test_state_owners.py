"""The owners of the station's tables: ``state.queue.WorkQueue`` (``sources``) and
``state.catalog.Catalog`` (``recordings``), against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence_daemon.errors import IngestError
from evidence_daemon.state.catalog import Catalog, Recording
from evidence_daemon.state.db import Database
from evidence_daemon.state.queue import WorkQueue
from evidence_daemon.state.transitions import SourceState

SHA = "cd" * 32
AT = "2026-11-25T01:00:00.000000+00:00"


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    return Database(tmp_path / "state.db")


def add(queue: WorkQueue, key: str = "k1") -> int:
    return queue.add(source_key=key, origin="DSJ001", root="/media/cam", rel_path="DCIM/a.mp4",
                     rel_path_b64=None, device_id="DSJ001", officer_id=None, size_bytes=10,
                     mtime_ns=1_764_032_400_000_000_000, at=AT)


def test_the_stored_state_values_never_change() -> None:
    assert [state.value for state in SourceState] == [
        "discovered", "spooled", "archived", "duplicate", "failed", "skipped"]


def test_a_source_moves_only_as_transitions_allow(database: Database) -> None:
    queue = WorkQueue(database)
    source_id = add(queue)
    queue.mark_spooled(source_id, sha256=SHA, sm3=None, spool_path="/spool/x", at=AT)
    source = queue.get(source_id)
    assert source is not None and source.state is SourceState.SPOOLED and source.sha256 == SHA
    assert queue.find("k1") == source
    queue.move(source_id, SourceState.DUPLICATE, None, at=AT)
    with pytest.raises(IngestError, match="cannot move from duplicate to discovered"):
        queue.move(source_id, SourceState.DISCOVERED, None, at=AT)
    assert queue.counts_by_state()["duplicate"] == 1 and "spooled" not in queue.counts_by_state()


def test_a_failed_source_is_reported_again_and_counts_attempts(database: Database) -> None:
    queue = WorkQueue(database)
    source_id = add(queue)
    queue.move(source_id, SourceState.FAILED, "unreadable", at=AT, count_attempt=True)
    queue.mark_reported(source_id)
    queue.move(source_id, SourceState.FAILED, "still unreadable", at=AT, count_attempt=True)
    source = queue.get(source_id)
    assert source is not None and (source.reported, source.attempts) == (False, 2)
    assert [left.id for left in queue.left_by_earlier_runs()] == [source_id]
    assert queue.oldest_discovered([SourceState.FAILED]) == AT


def test_archiving_moves_the_recording_and_its_source_together(database: Database) -> None:
    queue, catalog = WorkQueue(database), Catalog(database)
    first, second = add(queue, "k1"), add(queue, "k2")
    for source_id in (first, second):
        queue.mark_spooled(source_id, sha256=SHA, sm3=None, spool_path="/spool/x", at=AT)
    pending = Recording(sha256=SHA, sm3=None, size_bytes=10, extension="mp4",
                        object_key="recordings/x/original.mp4", device_id="DSJ001",
                        officer_id=None, recorded_start=None, recorded_end=None,
                        time_source="mtime", archive_deadline=AT, first_seen_at=AT,
                        flags=("empty",), flag_reasons={"empty": "no bytes"})
    catalog.add_pending(pending)
    catalog.add_pending(pending)  # identical content from a second card: one recording
    assert catalog.get(SHA) == pending and catalog.first_seen() == {SHA: AT}
    assert queue.waiting_for_upload()[0].archive_deadline == AT
    catalog.mark_archived(SHA, archived_at=AT, manifest_sha256="e" * 64, verified_by="etag",
                          source_id=first, at=AT)
    archived = catalog.get(SHA)
    assert archived is not None and archived.archived_at == AT
    assert queue.spooled_copies_of(SHA) == 1 and queue.count_spooled([first, second]) == 1
    source = queue.get(first)
    assert source is not None and source.state is SourceState.ARCHIVED


def pending(sha256: str = SHA) -> Recording:
    return Recording(sha256=sha256, sm3=None, size_bytes=10, extension="mp4",
                     object_key=f"recordings/{sha256}/original.mp4", device_id="DSJ001",
                     officer_id=None, recorded_start=None, recorded_end=None,
                     time_source="mtime", archive_deadline=AT, first_seen_at=AT)


def test_sources_are_read_with_their_recordings_archival_time(database: Database) -> None:
    """What the device wipe and the inbox release decide from: one read of both tables."""
    queue, catalog = WorkQueue(database), Catalog(database)
    first, second, unread = add(queue, "k1"), add(queue, "k2"), add(queue, "k3")
    queue.mark_spooled(first, sha256=SHA, sm3=None, spool_path="/spool/x", at=AT)
    queue.mark_spooled(second, sha256="ef" * 32, sm3=None, spool_path="/spool/y", at=AT)
    catalog.add_pending(pending())
    catalog.mark_archived(SHA, archived_at=AT, manifest_sha256="e" * 64, verified_by="etag",
                          source_id=first, at=AT)
    on_device = queue.of_origin_with_archival("DSJ001")  # the unread one never reached the spool
    assert [(row.source.id, row.archived_at) for row in on_device] == [(first, AT), (second, None)]
    at_path = queue.at_path_with_archival("/media/cam", "DCIM/a.mp4", None)
    assert [row.source.id for row in at_path] == [unread, second, first]  # newest first
    assert queue.at_path_with_archival("/media/cam", "DCIM/a.mp4", "RENDQ0lN") == []
    assert [source.id for source in queue.with_content()] == [first, second]


def test_the_queue_counts_what_is_left_and_what_is_in_flight(database: Database) -> None:
    queue = WorkQueue(database)
    spooled, failed, reported = add(queue, "k1"), add(queue, "k2"), add(queue, "k3")
    queue.mark_spooled(spooled, sha256=SHA, sm3=None, spool_path="/spool/x", at=AT)
    queue.move(failed, SourceState.FAILED, "unreadable", at=AT)
    queue.move(reported, SourceState.FAILED, "unreadable", at=AT)
    queue.mark_reported(reported)
    assert queue.count_left_by_earlier_runs() == len(queue.left_by_earlier_runs()) == 2
    assert queue.in_flight_since(AT)  # the spooled one, touched at AT
    assert not queue.in_flight_since("2026-11-25T01:00:00.000001+00:00")


def test_the_catalog_answers_for_proxies_and_fixity(database: Database) -> None:
    queue, catalog = WorkQueue(database), Catalog(database)
    shas = ["a1" * 32, "b2" * 32, "c3" * 32]
    for n, sha256 in enumerate(shas):
        source_id = add(queue, f"k{n}")
        queue.mark_spooled(source_id, sha256=sha256, sm3=None, spool_path="/spool/x", at=AT)
        catalog.add_pending(pending(sha256))
        if n < 2:
            catalog.mark_archived(sha256, archived_at=AT, manifest_sha256="e" * 64,
                                  verified_by="etag", source_id=source_id, at=AT)
    assert catalog.count_archived() == 2
    assert [r.sha256 for r in catalog.archived_without_proxy_job()] == shas[:2]
    database.execute("INSERT INTO proxy_jobs (sha256, state, created_at, updated_at)"
                     " VALUES (?, 'pending', ?, ?)", (shas[0], AT, AT))
    assert [r.sha256 for r in catalog.archived_without_proxy_job()] == shas[1:2]
    assert catalog.count_archived_without_proxy_job() == 1
    database.execute("INSERT INTO fixity (sha256, checked_at, ok) VALUES (?, ?, 1)", (shas[0], AT))
    assert [r.sha256 for r in catalog.archived_by_fixity_age(5)] == [shas[1], shas[0]]
    assert [r.sha256 for r in catalog.archived_by_fixity_age(1)] == [shas[1]]


def test_a_flag_is_added_inside_the_callers_transaction(database: Database) -> None:
    catalog = Catalog(database)
    catalog.add_pending(pending())
    with database.transaction() as conn:
        Catalog.flag_in(conn, SHA, "unplayable", "ffmpeg: invalid data")
        Catalog.flag_in(conn, SHA, "unplayable", "a second reason is not kept")
        Catalog.flag_in(conn, "00" * 32, "unplayable", "no such recording: nothing happens")
    recording = catalog.get(SHA)
    assert recording is not None and recording.flags == ("unplayable",)
    assert recording.flag_reasons == {"unplayable": "ffmpeg: invalid data"}
