"""Draw a recorded review sample again from the archive alone.

Anyone holding the archive (and, to trust it, the writers' key fingerprints) can check a
supervisor's sample: read every chain (``custody.verify``), find the ``review-sampled``
entry, check that the checkpoint it names exists, hashes to what it says, was the signing
writer's first checkpoint after the period ended, then rebuild the candidates from the
``archived`` entries signed by that time and their manifests, and draw again. The draw
either comes out the same or the differences are named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..archive.base import ArchiveStore
from ..clock import parse_optional, parse_time
from ..custody.canonical import entry_hash
from ..custody.chain import Entry, Event
from ..custody.trust import TrustAnchors
from ..custody.verify import Report, verify_ledgers
from ..errors import EvidenceError
from .sampling import Candidate, SamplePeriod, draw, sample_digest, sample_seed


@dataclass
class Recomputed:
    sample_id: str
    sample: dict[str, tuple[str, ...]] = field(default_factory=dict)
    candidates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def recompute(store: ArchiveStore, sample_id: str, *,
              trust: TrustAnchors = TrustAnchors()) -> Recomputed:
    """Recompute the sample ``<writer>:<seq>``; problems say where it differs or cannot be
    checked."""
    result = Recomputed(sample_id)
    writer, _, seq_text = sample_id.rpartition(":")
    report = Report()
    verify_ledgers(store, report, trust=trust)
    entries = {(entry["writer"], entry["seq"]): entry for entry in report.counting}
    sampled = entries.get((writer, int(seq_text))) if seq_text.isdigit() else None
    if sampled is None or sampled["event"] != Event.REVIEW_SAMPLED:
        result.problems.append(f"no verified review-sampled entry {sample_id} in the archive")
        return result
    details: dict[str, Any] = sampled["details"]
    period_json = details["period"]
    period = SamplePeriod(parse_time(period_json["from"]), parse_time(period_json["to"]),
                          int(period_json["per_officer"]))
    named = details["checkpoint"]
    checkpoint = entries.get((named["writer"], int(named["seq"])))
    if checkpoint is None or checkpoint["event"] != Event.CHECKPOINT:
        result.problems.append(f"the checkpoint {named['writer']}#{named['seq']} it names is "
                               "not a verified checkpoint in the archive")
        return result
    if entry_hash(checkpoint) != named["hash"]:
        result.problems.append("the checkpoint's hash is not the one the sample names")
    signed = parse_time(checkpoint["time"])
    if signed < period.end:
        result.problems.append("the checkpoint was signed before the period ended")
    earlier = [entry["seq"] for entry in report.counting
               if entry["writer"] == named["writer"] and entry["event"] == Event.CHECKPOINT
               and period.end <= parse_time(entry["time"]) and entry["seq"] < checkpoint["seq"]]
    if earlier:
        result.problems.append(f"checkpoint {named['writer']}#{min(earlier)} was signed after "
                               "the period ended and before the one used: the seed was chosen")
    seed = sample_seed(period, checkpoint_writer=named["writer"], checkpoint_seq=int(named["seq"]),
                       checkpoint_hash=entry_hash(checkpoint))
    if seed != details["seed"]:
        result.problems.append("the seed does not follow from the checkpoint and the period")
    candidates = _candidates(store, report.counting, period, signed, result.problems)
    result.candidates = len(candidates)
    result.sample = draw(seed, candidates, period.per_officer)
    recorded = {officer: tuple(ids) for officer, ids in details["sample"].items()}
    if result.sample != recorded:
        differing = sorted(set(result.sample) ^ set(recorded)
                           | {o for o in set(result.sample) & set(recorded)
                              if result.sample[o] != recorded[o]})
        result.problems.append("the recorded sample differs from the one drawn again for "
                               f"officer(s) {', '.join(differing)}")
    if sample_digest(recorded) != details["digest"]:
        result.problems.append("the recorded sample does not match its digest")
    return result


def _candidates(store: ArchiveStore, entries: list[Entry], period: SamplePeriod,
                archived_by: datetime, problems: list[str]) -> list[Candidate]:
    found: dict[str, Candidate] = {}
    for entry in entries:
        if entry["event"] != Event.ARCHIVED or parse_time(entry["time"]) > archived_by:
            continue
        details = entry["details"]
        try:
            data = store.get_bytes(details["manifest_key"])
        except (EvidenceError, KeyError) as exc:
            problems.append(f"manifest of recording {str(entry['recording'])[:12]} cannot be "
                            f"read: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != details.get("manifest_sha256"):
            problems.append(f"manifest of recording {str(entry['recording'])[:12]} is not the "
                            "one its archived entry names")
            continue
        manifest = json.loads(data)
        officer, start = manifest.get("officer_id"), parse_optional(manifest.get("recorded_start"))
        if officer and start is not None and period.start <= start < period.end:
            found[str(entry["recording"])] = Candidate(str(entry["recording"]), str(officer))
    return list(found.values())
