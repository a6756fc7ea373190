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
