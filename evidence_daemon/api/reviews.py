"""Supervisors' review samples on the API node: drawn so no one can cherry-pick, each review
recorded.

Owns ``review_samples`` and ``review_items`` (``REVIEW_SCHEMA``). A sample of a period is
seeded by the first checkpoint this node signed after the period ended (``incidents.sampling``
says why that makes it unpredictable and recomputable); asking again for the same period and
size returns the same sample, and every sample and every review is a signed event
(``review-sampled``, ``reviewed``). ``incidents.review.recompute`` draws it again from the
archive alone.

What must never happen: a sample drawn from a seed that existed before the period ended, or
a review recorded only in this node's database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import format_time, parse_optional, parse_time
from ..custody.canonical import entry_hash
from ..custody.chain import Event
from ..errors import ConflictError, NotFoundError, UsageError
from ..incidents.sampling import Candidate, SamplePeriod, draw, sample_digest, sample_seed
from ..state.db import Database
from .incidents import Recorder
from ..i18n import _

REVIEW_SCHEMA = """
    CREATE TABLE review_samples (
        id           TEXT PRIMARY KEY,  -- <writer>:<seq> of its review-sampled event
        period_from  TEXT NOT NULL,
        period_to    TEXT NOT NULL,
        per_officer  INTEGER NOT NULL,
        seed         TEXT NOT NULL,
        checkpoint   TEXT NOT NULL,     -- JSON {writer, seq, hash}
        digest       TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        UNIQUE (period_from, period_to, per_officer)
    );
    CREATE TABLE review_items (
        sample_id    TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        officer_id   TEXT NOT NULL,
        supervisor   TEXT,              -- who marked it reviewed
        reviewed_at  TEXT,
        note         TEXT,
        PRIMARY KEY (sample_id, sha256)
    );
"""

REVIEW_TABLES = ("review_items", "review_samples")


@dataclass(frozen=True)
class CheckpointRef:
    writer: str
    seq: int
    hash: str
    time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"writer": self.writer, "seq": self.seq, "hash": self.hash,
                "time": format_time(self.time)}


@dataclass(frozen=True)
class ReviewItem:
    sha256: str
    officer_id: str
    supervisor: str | None
    reviewed_at: str | None
    note: str | None


@dataclass(frozen=True)
class Sample:
    id: str
    period: SamplePeriod
    seed: str
    checkpoint: dict[str, Any]
    digest: str
    created_by: str
    items: tuple[ReviewItem, ...]

    @property
    def reviewed(self) -> int:
        return sum(1 for item in self.items if item.reviewed_at is not None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.period.to_json(), "seed": self.seed,
                "checkpoint": self.checkpoint, "digest": self.digest,
                "created_by": self.created_by, "reviewed": self.reviewed,
                "total": len(self.items),
                "items": [{"sha256": item.sha256, "officer_id": item.officer_id,
                           "supervisor": item.supervisor, "reviewed_at": item.reviewed_at,
                           "note": item.note} for item in self.items]}


class ReviewBook:
    """Draws, records and reads review samples; the only module with their SQL."""

    def __init__(self, database: Database, *, writer: str, record: Recorder,
                 checkpoint: Callable[[], dict[str, Any] | None],
                 refresh_catalog: Callable[[], object] = lambda: None) -> None:
        self.database = database
        self.writer = writer
        self.record = record
        self.checkpoint = checkpoint  # sign a checkpoint now (Checkpointer.checkpoint)
        self.refresh_catalog = refresh_catalog  # read new ledger entries first (Indexer.poll)

    def sample(self, period: SamplePeriod, *, actor: str, now: datetime) -> Sample:
        """The period's sample: the one already drawn, or a new one drawn and recorded."""
        existing = self.database.query_one(
            "SELECT id FROM review_samples WHERE period_from = ? AND period_to = ?"
            " AND per_officer = ?", (format_time(period.start), format_time(period.end),
                                     period.per_officer))
        if existing is not None:
            return self.get(existing["id"])
        if now < period.end:
            raise UsageError(_("the period ends at {isoformat}: a sample can be drawn only after "
                               "it has ended").format(isoformat=period.end.isoformat()))
        checkpoint = self._checkpoint_after(period.end, actor=actor)
        self.refresh_catalog()  # every archival signed before the checkpoint is a candidate
        seed = sample_seed(period, checkpoint_writer=checkpoint.writer,
                           checkpoint_seq=checkpoint.seq, checkpoint_hash=checkpoint.hash)
        candidates = self.candidates(period, archived_by=checkpoint.time)
        drawn = draw(seed, candidates, period.per_officer)
        digest = sample_digest(drawn)
        entry = self.record(Event.REVIEW_SAMPLED, recording=None, actor=actor, details={
            "period": period.to_json(), "checkpoint": checkpoint.to_json(), "seed": seed,
            "candidates": len(candidates), "sample": {o: list(ids) for o, ids in drawn.items()},
            "digest": digest})
        self.apply_sample(entry)
        return self.get(f"{entry['writer']}:{entry['seq']}")

    def apply_sample(self, entry: dict[str, Any]) -> None:
        """Store a ``review-sampled`` entry (from ``sample`` or, on reindex, the indexer)."""
        details = entry["details"]
        sample_id = f"{entry['writer']}:{entry['seq']}"
        period = details["period"]
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO review_samples (id, period_from, period_to, per_officer,"
                " seed, checkpoint, digest, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sample_id, format_time(parse_time(period["from"])),
                 format_time(parse_time(period["to"])), int(period["per_officer"]),
                 details["seed"], json.dumps(details["checkpoint"]), details["digest"],
                 entry["actor"], entry["time"]))
            conn.executemany(
                "INSERT OR IGNORE INTO review_items (sample_id, sha256, officer_id)"
                " VALUES (?, ?, ?)",
                [(sample_id, sha, officer) for officer, ids in details["sample"].items()
                 for sha in ids])

    def mark_reviewed(self, sample_id: str, sha256: str, *, actor: str, note: str) -> ReviewItem:
        row = self.database.query_one(
            "SELECT reviewed_at FROM review_items WHERE sample_id = ? AND sha256 = ?",
            (sample_id, sha256))
        if row is None:
            raise NotFoundError(_("recording {sha256} is not in review sample {sample_id}").format(
                sha256=sha256[:12], sample_id=sample_id))
        if row["reviewed_at"] is not None:
            raise ConflictError(_("recording {sha256} of sample {sample_id} is already reviewed").format(
                sha256=sha256[:12], sample_id=sample_id))
        entry = self.record(Event.REVIEWED, recording=sha256, actor=actor,
                            details={"sample": sample_id, "note": note})
        self.apply_review(entry)
        return next(item for item in self.get(sample_id).items if item.sha256 == sha256)

    def apply_review(self, entry: dict[str, Any]) -> None:
        self.database.execute(
            "UPDATE review_items SET supervisor = ?, reviewed_at = ?, note = ?"
            " WHERE sample_id = ? AND sha256 = ? AND reviewed_at IS NULL",
            (entry["actor"], entry["time"], entry["details"].get("note", ""),
             entry["details"].get("sample"), entry["recording"]))

    def candidates(self, period: SamplePeriod, *, archived_by: datetime) -> list[Candidate]:
        """Recordings made in the period, attributed to an officer, whose ``archived`` entry
        was signed no later than ``archived_by`` (the checkpoint's time)."""
        found: list[Candidate] = []
        for row in self.database.query(
                "SELECT r.sha256, r.officer_id, r.recorded_start, e.time AS archived_time"
                " FROM recordings r JOIN events e"
                "   ON e.writer = r.archived_by AND e.seq = r.archived_seq"
                " WHERE r.officer_id IS NOT NULL AND r.recorded_start IS NOT NULL"):
            start = parse_optional(row["recorded_start"])
            archived = parse_optional(row["archived_time"])
            if start is None or archived is None:
                continue
            if period.start <= start < period.end and archived <= archived_by:
                found.append(Candidate(row["sha256"], row["officer_id"]))
        return found

    def _checkpoint_after(self, moment: datetime, *, actor: str) -> CheckpointRef:
        """This node's first checkpoint signed at or after ``moment``; one is signed now when
        there is none (after a ``review-requested`` entry, so there is something to sign)."""
        found = self._first_checkpoint(moment)
        if found is not None:
            return found
        self.record(Event.REVIEW_REQUESTED, recording=None, actor=actor,
                    details={"after": format_time(moment)})
        entry = self.checkpoint()
        if entry is None:
            raise ConflictError(_("no checkpoint could be signed for the sample; try again"))
        return CheckpointRef(str(entry["writer"]), int(entry["seq"]), entry_hash(entry),
                             parse_time(str(entry["time"])))

    def _first_checkpoint(self, moment: datetime) -> CheckpointRef | None:
        for row in self.database.query(
                "SELECT seq, entry_hash, time FROM ledger WHERE writer = ? AND event = ?"
                " ORDER BY seq", (self.writer, str(Event.CHECKPOINT))):
            signed = parse_time(row["time"])
            if signed >= moment:
                return CheckpointRef(self.writer, int(row["seq"]), row["entry_hash"], signed)
        return None

    def get(self, sample_id: str) -> Sample:
        row = self.database.query_one("SELECT * FROM review_samples WHERE id = ?", (sample_id,))
        if row is None:
            raise NotFoundError(_("no review sample {sample_id!r}").format(sample_id=sample_id))
        items = tuple(ReviewItem(item["sha256"], item["officer_id"], item["supervisor"],
                                 item["reviewed_at"], item["note"])
                      for item in self.database.query(
                          "SELECT * FROM review_items WHERE sample_id = ?"
                          " ORDER BY officer_id, sha256", (sample_id,)))
        return Sample(row["id"], SamplePeriod(parse_time(row["period_from"]),
                                              parse_time(row["period_to"]), row["per_officer"]),
                      row["seed"], json.loads(row["checkpoint"]), row["digest"],
                      row["created_by"], items)

    def samples(self) -> list[Sample]:
        return [self.get(row["id"]) for row in self.database.query(
            "SELECT id FROM review_samples ORDER BY period_from DESC, id")]

    def completion(self) -> list[dict[str, Any]]:
        """Per supervisor who drew samples: items, reviewed, and by whom (``report --reviews``)."""
        rows = self.database.query(
            "SELECT s.created_by AS supervisor, COUNT(*) AS items,"
            " SUM(i.reviewed_at IS NOT NULL) AS reviewed, COUNT(DISTINCT s.id) AS samples"
            " FROM review_samples s JOIN review_items i ON i.sample_id = s.id"
            " GROUP BY s.created_by ORDER BY s.created_by")
        return [{"supervisor": row["supervisor"], "samples": int(row["samples"]),
                 "items": int(row["items"]), "reviewed": int(row["reviewed"] or 0),
                 "completion": (int(row["reviewed"] or 0) / int(row["items"])) if row["items"] else 0.0}
                for row in rows]
