"""Review samples: drawn from a checkpoint made after the period, recorded, recomputable from
the archive alone, and a chosen seed is caught."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon.api.reviews import ReviewBook
from evidence_daemon.api.service import ApiNode, open_api_node
from evidence_daemon.cli import main
from evidence_daemon.config import load_config
from evidence_daemon.custody.chain import Event
from evidence_daemon.errors import ConflictError, NotFoundError, UsageError
from evidence_daemon.incidents.review import recompute
from evidence_daemon.incidents.sampling import SamplePeriod, sample_digest

from .api_fixtures import make_api_config
from .helpers import write_config

# File names carry Asia/Shanghai local time: 2026-11-25 08:00+08 is 00:00 UTC.
PERIOD = SamplePeriod(datetime(2026, 11, 25, tzinfo=timezone.utc),
                      datetime(2026, 11, 26, tzinfo=timezone.utc), per_officer=2)


def review_book(node: ApiNode) -> ReviewBook:
    return ReviewBook(node.database, writer=node.writer, record=node.record,
                      checkpoint=node.checkpointer.checkpoint)


@pytest.fixture
def node(tmp_path: Path) -> ApiNode:
    config = write_config(tmp_path)
    card = tmp_path / "card"
    card.mkdir()
    for n in range(5):  # officer 10086: five recordings in the period
        (card / f"DSJ001_10086_2026112509{n}000_000{n}.MP4").write_bytes(f"a{n}".encode())
    for n in range(3):  # officer 20017: three
        (card / f"DSJ002_20017_2026112510{n}000_000{n}.MP4").write_bytes(f"b{n}".encode())
    (card / "DSJ002_20017_20261127100000_0009.MP4").write_bytes(b"after the period")
    assert main(["--config", str(config), "ingest", str(card)]) == 0
    api = open_api_node(load_config(make_api_config(tmp_path / "api", tmp_path / "archive"),
                                    environ={}))
    api.indexer.poll()
    return api


def test_a_sample_is_recorded_and_recomputed_from_the_archive_alone(node: ApiNode) -> None:
    try:
        book = review_book(node)
        sample = book.sample(PERIOD, actor="user:sup", now=datetime.now(timezone.utc))
        by_officer: dict[str, list[str]] = {}
        for item in sample.items:
            by_officer.setdefault(item.officer_id, []).append(item.sha256)
        assert {officer: len(ids) for officer, ids in by_officer.items()} == {"10086": 2, "20017": 2}
        assert book.sample(PERIOD, actor="user:other", now=datetime.now(timezone.utc)).id == sample.id
        item = book.mark_reviewed(sample.id, sample.items[0].sha256, actor="user:sup",
                                  note="use of force justified")
        assert item.supervisor == "user:sup" and item.note == "use of force justified"
        with pytest.raises(ConflictError, match="already reviewed"):
            book.mark_reviewed(sample.id, sample.items[0].sha256, actor="user:sup", note="again")
        with pytest.raises(NotFoundError, match="is not in review sample"):
            book.mark_reviewed(sample.id, "f" * 64, actor="user:sup", note="x")
        assert book.completion() == [{"supervisor": "user:sup", "samples": 1, "items": 4,
                                      "reviewed": 1, "completion": 0.25}]
    finally:
        node.close()
    again = recompute(node.store, sample.id)
    assert again.ok, again.problems
    assert again.candidates == 8  # the recording after the period is not a candidate
    assert {officer: set(ids) for officer, ids in again.sample.items()} == {
        officer: set(ids) for officer, ids in by_officer.items()}


def test_a_sample_drawn_from_a_later_checkpoint_is_caught(node: ApiNode) -> None:
    try:
        book = review_book(node)
        honest = book.sample(PERIOD, actor="user:sup", now=datetime.now(timezone.utc))
        # A forger with the node's key draws again from a later checkpoint, hoping for a
        # friendlier sample: the chain shows the first checkpoint after the period.
        node.record(Event.NOTE_ADDED, recording=None, actor="user:forger", details={"note": "x"})
        later = node.checkpointer.checkpoint()
        assert later is not None
        from evidence_daemon.custody.canonical import entry_hash
        from evidence_daemon.incidents.sampling import draw, sample_seed
        seed = sample_seed(PERIOD, checkpoint_writer=node.writer, checkpoint_seq=later["seq"],
                           checkpoint_hash=entry_hash(later))
        drawn = draw(seed, book.candidates(PERIOD, archived_by=datetime.now(timezone.utc)), 2)
        forged = node.record(Event.REVIEW_SAMPLED, recording=None, actor="user:forger", details={
            "period": PERIOD.to_json(), "seed": seed, "candidates": 8,
            "checkpoint": {"writer": node.writer, "seq": later["seq"], "hash": entry_hash(later),
                           "time": later["time"]},
            "sample": {o: list(ids) for o, ids in drawn.items()}, "digest": sample_digest(drawn)})
    finally:
        node.close()
    assert recompute(node.store, honest.id).ok
    caught = recompute(node.store, f"{forged['writer']}:{forged['seq']}")
    assert any("the seed was chosen" in problem for problem in caught.problems), caught.problems


def test_a_period_that_has_not_ended_cannot_be_sampled(node: ApiNode) -> None:
    try:
        with pytest.raises(UsageError, match="a sample can be drawn only after it has ended"):
            review_book(node).sample(PERIOD, actor="user:sup", now=PERIOD.end - timedelta(seconds=1))
    finally:
        node.close()
