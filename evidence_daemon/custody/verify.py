"""Offline verification: everything an auditor needs is the archive and the writers' key
fingerprints, given out of band (trust anchors).

Checks every writer's ledger with the custody core (``chain.py``: contiguous sequence, ``prev``
chain, Ed25519 signatures), judges each writer (is its key a trust anchor, which role did it
register, did it sign outside it), then each recording: the original re-hashed against its id,
the manifest against the hash recorded in the ``archived`` event, the manifest's own facts
against the original, and each viewing copy (proxy, poster) against the SHA-256 in its
``derived`` event. Only entries that *count* — verified, of a trusted writer (when anchors are
given), inside the writer's role — vouch for a recording; two counting ``archived`` events that
name different manifests are a problem, not a choice. Without trust anchors the report says it
checked consistency only: a complete forgery with a fresh key is consistent.

Completeness (``_verify_checkpoints``): every writer's chain is compared, by
``chain.check_checkpoints``, with its own checkpoints, with every checkpoint of it another
writer witnessed (counting ``witnessed`` entries), with a checkpoint an auditor saved
(``verify --checkpoint``) and with the timestamp tokens stored for its checkpoints: a chain
shorter than any of them lost its end; one that differs from them was rewritten. With
``[timestamp] tsa_cert_file`` every stored token is checked against the checkpoint entry it
stamps.

Reports problems; it never repairs, rewrites or deletes anything.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..archive import keys
from ..archive.base import ArchiveStore, hash_stored
from ..errors import EvidenceError, IntegrityError, ObjectMissingError
from . import canonical
from .chain import (
    ChainResult,
    Entry,
    Event,
    Problem,
    ProblemKind,
    SeenCheckpoint,
    WriterJudgement,
    check_chain,
    check_checkpoints,
    judge_writer,
    witnessed_checkpoint,
)
from .manifest import Manifest
from .signing import fingerprint, load_public_pem
from .timestamp import TsaTrust, verify_timestamp
from .trust import TrustAnchors
from ..i18n import _

__all__ = ["Problem", "Report", "verify_archive", "verify_ledgers", "verify_recording"]


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    writers: dict[str, str] = field(default_factory=dict)  # writer -> key fingerprint
    judgements: dict[str, WriterJudgement] = field(default_factory=dict)
    chains: dict[str, ChainResult] = field(default_factory=dict)
    entries_checked: int = 0
    recordings_checked: int = 0
    entries: list[Entry] = field(default_factory=list)  # verified entries of every writer
    counting: list[Entry] = field(default_factory=list)  # those that may vouch for something
    trust_checked: bool = False  # writers' keys were compared with trust anchors
    notes: list[str] = field(default_factory=list)  # facts worth printing, not problems
    checkpoints_compared: int = 0  # checkpoints seen of the chains (witnessed, saved, stamped)
    timestamps_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archive(
    store: ArchiveStore,
    recording_ids: Iterable[str] | None = None,
    *,
    trust: TrustAnchors = TrustAnchors(),
    saved: Sequence[SeenCheckpoint] = (),
    tsa: TsaTrust | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Verify the ledgers and the given recordings (all when ``recording_ids`` is None).

    ``recording_ids`` may be full ids or unique prefixes of at least 12 hex digits.
    ``saved``: checkpoints an auditor kept (``checkpoints.read_saved``); ``tsa``: the trust
    timestamp tokens are checked against (unchecked, and said so, without).
    """
    report = Report(trust_checked=trust.configured)
    verify_ledgers(store, report, trust=trust)
    _verify_checkpoints(store, report, saved=saved, tsa=tsa)
    archived: dict[str, list[Entry]] = defaultdict(list)
    derived: dict[str, list[Entry]] = defaultdict(list)
    for entry in report.counting:
        if entry["event"] == Event.ARCHIVED and entry["recording"]:
            archived[entry["recording"]].append(entry)
        if entry["event"] == Event.DERIVED and entry["recording"]:
            derived[entry["recording"]].append(entry)
    discounted: dict[str, set[str]] = defaultdict(set)  # recording -> writers not counted
    for entry in report.entries:
        if (entry["event"] == Event.ARCHIVED and entry["recording"]
                and entry not in archived[entry["recording"]]):
            discounted[entry["recording"]].add(entry["writer"])

    present = _recordings_in_archive(store)
    if recording_ids is None:
        wanted = sorted(present)
        for recording in sorted(set(archived) - set(present)):
            report.problems.append(
                Problem(keys.recording_prefix(recording), _("archived per the ledger but missing "
                                                            "from the archive"), recording)
            )
    else:
        wanted = []
        for requested in recording_ids:
            candidates = set(present) | set(archived)
            matches = [sha for sha in candidates if sha.startswith(requested.lower())]
            if len(requested) < 12 or len(matches) != 1:
                reason = (_("no such recording") if not matches
                          else _("ambiguous id, give more digits"))
                if len(requested) < 12:
                    reason = _("give at least 12 hex digits of the id")
                report.problems.append(Problem(requested, reason))
                continue
            wanted.append(matches[0])
    for recording in wanted:
        if progress:
            progress(recording)
        _verify_recording(store, recording, present.get(recording, []),
                          archived.get(recording, []), report,
                          discounted=sorted(discounted.get(recording, ())))
        _verify_derived(store, recording, present.get(recording, []), derived.get(recording, []), report)
        report.recordings_checked += 1
    return report


def verify_ledgers(store: ArchiveStore, report: Report, *,
                   trust: TrustAnchors = TrustAnchors()) -> None:
    """Check every writer's chain and judge the writer; fills ``report``."""
    by_writer: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key in store.list_keys(keys.LEDGER_PREFIX):
        parsed = keys.parse_ledger_key(key)
        if parsed is None:
            report.problems.append(Problem(key, _("unexpected object in the ledger area")))
            continue
        by_writer[parsed[0]].append((parsed[1], key))
    for writer, items in sorted(by_writer.items()):
        _verify_writer(store, writer, sorted(items), report, trust)


def _verify_writer(store: ArchiveStore, writer: str, items: list[tuple[int, str]],
                   report: Report, trust: TrustAnchors) -> None:
    key_name = keys.public_key_key(writer)
    try:
        public = load_public_pem(store.get_bytes(key_name), what=key_name)
    except ObjectMissingError:
        report.problems.append(Problem(key_name, _("public key of writer {writer!r} is missing").format(
            writer=writer),
                                       kind=ProblemKind.KEY, writer=writer))
        return
    except EvidenceError as exc:
        report.problems.append(Problem(key_name, str(exc), kind=ProblemKind.KEY, writer=writer))
        return
    key_fingerprint = fingerprint(public)
    report.writers[writer] = key_fingerprint

    def stored() -> Iterator[tuple[int, bytes]]:
        for seq, key in items:
            yield seq, store.get_bytes(key)

    result = check_chain(writer, stored(), public)
    report.chains[writer] = result
    report.entries_checked += len(result.checked)
    report.problems.extend(result.problems)
    verified = result.verified
    report.entries.extend(verified)
    judgement = judge_writer(writer, key_fingerprint, verified, trust.trusts(key_fingerprint))
    report.judgements[writer] = judgement
    report.problems.extend(judgement.problems)
    report.counting.extend(entry for entry in verified if entry["seq"] in judgement.counts)


def _verify_checkpoints(store: ArchiveStore, report: Report, *,
                        saved: Sequence[SeenCheckpoint], tsa: TsaTrust | None) -> None:
    """Each chain against everything seen of it (``chain.check_checkpoints``), and the
    stored timestamp tokens against the checkpoints they stamp."""
    seen: dict[str, list[SeenCheckpoint]] = defaultdict(list)
    for entry in report.counting:
        witnessed = witnessed_checkpoint(entry)
        if witnessed is not None and witnessed.writer != entry["writer"]:
            seen[witnessed.writer].append(witnessed)
    for item in saved:
        seen[item.writer].append(item)
    for item in _timestamps(store, report, tsa):
        seen[item.writer].append(item)
    for writer in sorted(set(report.chains) | set(seen)):
        result = report.chains.get(writer) or ChainResult(writer)
        report.checkpoints_compared += len(seen.get(writer, ()))
        report.problems.extend(check_checkpoints(result, report.writers.get(writer),
                                                 seen.get(writer, [])))


def _timestamps(store: ArchiveStore, report: Report,
                tsa: TsaTrust | None) -> list[SeenCheckpoint]:
    """Check every stored token against the checkpoint entry it stamps; a token for an entry
    beyond a chain's end is returned as a checkpoint known to have existed."""
    existed: list[SeenCheckpoint] = []
    stamped: set[tuple[str, int]] = set()
    latest: dict[str, tuple[int, str]] = {}  # writer -> its latest stamped checkpoint, said
    unchecked = 0
    by_seq = {writer: {item.read.seq: item for item in result.checked}
              for writer, result in report.chains.items()}
    for key in store.list_keys(keys.CHECKPOINTS_PREFIX):
        parsed = keys.parse_timestamp_key(key)
        if parsed is None:
            report.problems.append(Problem(key, _("unexpected object among the checkpoint "
                                                  "timestamps"), kind=ProblemKind.TIMESTAMP))
            continue
        writer, seq = parsed
        stamped.add(parsed)
        result = report.chains.get(writer)
        item = by_seq.get(writer, {}).get(seq)
        if item is None or item.read.raw is None:
            if result is None or seq > max(result.heads, default=0):
                existed.append(SeenCheckpoint(writer, seq, "", seq - 1, "",
                                              f"the timestamp token {key}"))
            continue
        if item.read.raw.get("event") != Event.CHECKPOINT:
            report.problems.append(Problem(key, _("timestamp token for entry {seq} of writer "
                                                  "{writer}, which is not a checkpoint").format(
                                                      seq=seq, writer=writer),
                                           kind=ProblemKind.TIMESTAMP, writer=writer))
            continue
        if tsa is None:
            unchecked += 1
            continue
        try:
            stamped_time = verify_timestamp(store.get_bytes(key),
                                            canonical.canonical_bytes(item.read.raw), tsa)
        except IntegrityError as exc:
            report.problems.append(Problem(key, _("checkpoint {seq} of writer {writer}: {message}").format(
                seq=seq, writer=writer, message=exc.message), kind=ProblemKind.TIMESTAMP,
                                           writer=writer))
            continue
        except EvidenceError as exc:
            report.problems.append(Problem(key, _("cannot be read: {message}").format(
                message=exc.message),
                                           kind=ProblemKind.TIMESTAMP, writer=writer))
            continue
        report.timestamps_checked += 1
        if seq > latest.get(writer, (0, ""))[0]:
            latest[writer] = (seq, f"{stamped_time.time.isoformat()} by {stamped_time.tsa}")
    checkpoints = [(writer, item.read.seq) for writer, result in report.chains.items()
                   for item in result.checked
                   if item.read.raw is not None and item.read.raw.get("event") == Event.CHECKPOINT]
    missing = [f"{writer}#{seq}" for writer, seq in checkpoints if (writer, seq) not in stamped]
    for writer, (seq, said) in sorted(latest.items()):
        report.notes.append(f"writer {writer}: latest checkpoint with a verified timestamp is "
                            f"{seq}, trusted time {said}")
    if unchecked:
        report.notes.append(f"{unchecked} timestamp token(s) not checked: no [timestamp] "
                            "tsa_cert_file configured")
    if missing and (tsa is not None or stamped):
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        report.notes.append(f"{len(missing)} of {len(checkpoints)} checkpoint(s) have no "
                            f"timestamp token: {shown}")
    return existed


def _recordings_in_archive(store: ArchiveStore) -> dict[str, list[str]]:
    present: dict[str, list[str]] = defaultdict(list)
    for key in store.list_keys(keys.RECORDINGS_PREFIX):
        parsed = keys.parse_recording_key(key)
        if parsed is not None:
            present[parsed[0]].append(parsed[1])
    return present


def _verify_recording(
    store: ArchiveStore,
    recording: str,
    names: list[str],
    archived_events: Sequence[Mapping[str, Any]],
    report: Report,
    *,
    discounted: list[str] | None = None,
) -> None:
    def problem(subject: str, message: str, kind: ProblemKind = ProblemKind.CONTENT) -> None:
        report.problems.append(Problem(subject, message, recording, kind))

    prefix = keys.recording_prefix(recording)
    originals = [name for name in names if keys.is_original_name(name)]
    if len(originals) != 1:
        problem(prefix, _("no original stored") if not originals else _("several originals: {originals}").format(
            originals=originals))
        return
    original_key = prefix + originals[0]
    try:
        actual_sha256, actual_size = hash_stored(store, original_key)
    except EvidenceError as exc:
        problem(original_key, _("cannot be read: {exc}").format(exc=exc))
        return
    if actual_sha256 != recording:
        problem(original_key, _("content changed: SHA-256 is now {actual_sha256}…, not the "
                                "recording id").format(actual_sha256=actual_sha256[:12]))

    manifest_key = keys.manifest_key(recording)
    try:
        manifest_bytes = store.get_bytes(manifest_key)
    except EvidenceError as exc:
        problem(manifest_key, _("cannot be read: {exc}").format(exc=exc))
        return
    manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    claimed = {str(event["details"].get("manifest_sha256")): event for event in archived_events}
    if not archived_events:
        if discounted:
            problem(prefix, _("no 'archived' event that counts: only writers whose entries do not "
                              "count (untrusted key or outside its role) archived it: {join}").format(
                                  join=', '.join(discounted)))
        else:
            problem(prefix, _("no 'archived' event in any ledger"))
    elif len(claimed) > 1:
        writers = ", ".join(f"{event['writer']}#{event['seq']}" for event in claimed.values())
        problem(manifest_key, _("'archived' events disagree about the manifest ({writers} name "
                                "{count} different SHA-256s): a forged manifest or archival").format(
                                    writers=writers, count=len(claimed)),
                ProblemKind.CONFLICT)
    elif manifest_sha256 not in claimed:
        problem(manifest_key, _("manifest changed: its SHA-256 differs from the one in the "
                                "'archived' ledger event"))
    try:
        manifest = Manifest.from_json(manifest_bytes)
    except IntegrityError as exc:
        problem(manifest_key, exc.message)
        return
    if (manifest.sha256, manifest.size_bytes, manifest.original_key) != (
            recording, actual_size, original_key):
        problem(manifest_key, _("manifest does not describe the stored original (sha256, "
                                "size_bytes or original_key differ)"))


DERIVED_NAMES = frozenset({"proxy.mp4", "proxy.m4a", "poster.jpg"})


def _verify_derived(
    store: ArchiveStore,
    recording: str,
    names: list[str],
    derived_events: Sequence[Mapping[str, Any]],
    report: Report,
) -> None:
    """Each stored proxy/poster must hash to what its ``derived`` event recorded, and each
    copy an event describes must be there."""
    expected: dict[str, str] = {}
    for event in derived_events:
        details = event["details"]
        for part in ("proxy", "poster"):
            described = details.get(part)
            if isinstance(described, dict) and isinstance(described.get("key"), str):
                expected[described["key"]] = str(described.get("sha256"))
    prefix = keys.recording_prefix(recording)
    stored = {prefix + name for name in names if name in DERIVED_NAMES}
    for key in sorted(stored | set(expected)):
        if key not in expected:
            report.problems.append(Problem(key, _("viewing copy without a 'derived' ledger event"),
                                           recording))
            continue
        if key not in stored:
            report.problems.append(Problem(key, _("named by a 'derived' event but missing from "
                                                  "the archive"), recording))
            continue
        try:
            actual_sha256, _size = hash_stored(store, key)
        except EvidenceError as exc:
            report.problems.append(Problem(key, _("cannot be read: {exc}").format(
                exc=exc), recording))
            continue
        if actual_sha256 != expected[key]:
            report.problems.append(Problem(
                key, _("viewing copy changed: SHA-256 is {actual_sha256}…, the 'derived' event "
                       "recorded {expected}…").format(
                           actual_sha256=actual_sha256[:12], expected=expected[key][:12]), recording))


def verify_recording(store: ArchiveStore, recording: str,
                     entries: Iterable[Mapping[str, Any]]) -> Report:
    """Check one recording now: its original, manifest and viewing copies against the given
    ledger entries (those concerning it, already checked for signature and chain by the
    caller). Used by the API, which keeps every writer's entries indexed."""
    report = Report()
    names = [parsed[1] for key in store.list_keys(keys.recording_prefix(recording))
             if (parsed := keys.parse_recording_key(key)) is not None]
    wanted = list(entries)
    _verify_recording(store, recording, names, [e for e in wanted if e["event"] == "archived"], report)
    _verify_derived(store, recording, names, [e for e in wanted if e["event"] == "derived"], report)
    report.recordings_checked = 1
    return report
