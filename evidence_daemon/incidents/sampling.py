"""Review samples no one can cherry-pick. Pure.

A supervisor's random review is only random if nobody could choose the sample. The seed is
the hash of a signed ledger checkpoint made *after* the review period ended — no one knew it
while the period's footage was being recorded, and anyone holding the archive can read it
back. The candidates are the period's recordings whose ``archived`` entry that checkpoint's
tree already contains, so footage archived later cannot change the draw. Each officer's
candidates are ranked by SHA-256(seed, recording id) and the first ``per_officer`` are taken:
the same archive always yields the same sample, whoever computes it.

What must never happen: a sample that depends on anything not in the archive (local time,
database order, a random generator's state), or a seed that existed before the period ended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ..custody.canonical import canonical_json
from ..i18n import _

SAMPLE_FORMAT = "evidence-daemon review sample 1"


@dataclass(frozen=True)
class SamplePeriod:
    start: datetime  # aware; recordings with recorded start in [start, end)
    end: datetime
    per_officer: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(_("a review period must end after it starts"))
        if not 1 <= self.per_officer <= 1000:
            raise ValueError(_("per officer must be between 1 and 1000 recordings"))

    def to_json(self) -> dict[str, object]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "per_officer": self.per_officer}


@dataclass(frozen=True)
class Candidate:
    recording_id: str  # SHA-256 of the original
    officer_id: str


def sample_seed(period: SamplePeriod, *, checkpoint_writer: str, checkpoint_seq: int,
                checkpoint_hash: str) -> str:
    """The seed: the checkpoint entry's hash bound to the period and the sample size."""
    return hashlib.sha256(canonical_json({
        "format": SAMPLE_FORMAT, "period": period.to_json(),
        "checkpoint": {"writer": checkpoint_writer, "seq": checkpoint_seq,
                       "hash": checkpoint_hash},
    })).hexdigest()


def rank(seed: str, recording_id: str) -> str:
    return hashlib.sha256(f"{seed}:{recording_id}".encode()).hexdigest()


def draw(seed: str, candidates: Iterable[Candidate], per_officer: int) -> dict[str, tuple[str, ...]]:
    """Per officer, the ``per_officer`` candidates of lowest rank, in rank order."""
    ranked: dict[str, list[tuple[str, str]]] = {}
    for candidate in candidates:
        ranked.setdefault(candidate.officer_id, []).append(
            (rank(seed, candidate.recording_id), candidate.recording_id))
    return {officer: tuple(recording for _, recording in sorted(set(items))[:per_officer])
            for officer, items in sorted(ranked.items())}


def sample_digest(sample: Mapping[str, tuple[str, ...]]) -> str:
    """One hash over a drawn sample, recorded in the audit chain with it."""
    return hashlib.sha256(canonical_json({officer: list(ids) for officer, ids in sample.items()})).hexdigest()
