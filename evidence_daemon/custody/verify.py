"""Offline verification: everything an auditor needs is the archive and the public keys.

Checks every writer's ledger (contiguous sequence, ``prev`` chain, Ed25519 signatures), then
each recording: the original re-hashed against its id, the manifest against the hash recorded
in the ``archived`` event, the manifest's own facts against the original, and each viewing copy
(proxy, poster) against the SHA-256 in its ``derived`` event. Reports problems; it
never repairs, rewrites or deletes anything.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..archive import keys
from ..archive.base import ArchiveStore, hash_stored
from ..errors import EvidenceError, ObjectMissingError
from . import canonical
from .signing import fingerprint, load_public_pem, signature_valid


@dataclass(frozen=True)
class Problem:
    subject: str  # the ledger key or archive key concerned
    message: str
    recording: str | None = None

    def __str__(self) -> str:
        who = f"recording {self.recording[:12]}: " if self.recording else ""
        return f"{who}{self.subject}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    writers: dict[str, str] = field(default_factory=dict)  # writer -> key fingerprint
    entries_checked: int = 0
    recordings_checked: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archive(
    store: ArchiveStore,
    recording_ids: Iterable[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Verify the ledgers and the given recordings (all when ``recording_ids`` is None).

    ``recording_ids`` may be full ids or unique prefixes of at least 12 hex digits.
    """
    report = Report()
    verify_ledgers(store, report)
    archived: dict[str, list[dict[str, Any]]] = defaultdict(list)
    derived: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in report.entries:
        if entry["event"] == "archived" and entry["recording"]:
            archived[entry["recording"]].append(entry)
        if entry["event"] == "derived" and entry["recording"]:
            derived[entry["recording"]].append(entry)

    present = _recordings_in_archive(store)
    if recording_ids is None:
        wanted = sorted(present)
        for recording in sorted(set(archived) - set(present)):
            report.problems.append(
                Problem(keys.recording_prefix(recording), "archived per the ledger but missing "
                        "from the archive", recording)
            )
    else:
        wanted = []
        for requested in recording_ids:
            matches = [sha for sha in set(present) | set(archived) if sha.startswith(requested.lower())]
            if len(requested) < 12 or len(matches) != 1:
                reason = "no such recording" if not matches else "ambiguous id, give more digits"
                if len(requested) < 12:
                    reason = "give at least 12 hex digits of the id"
                report.problems.append(Problem(requested, reason))
                continue
            wanted.append(matches[0])
    for recording in wanted:
        if progress:
            progress(recording)
        _verify_recording(store, recording, present.get(recording, []), archived.get(recording, []), report)
        _verify_derived(store, recording, present.get(recording, []), derived.get(recording, []), report)
        report.recordings_checked += 1
    return report


def verify_ledgers(store: ArchiveStore, report: Report) -> None:
    by_writer: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key in store.list_keys(keys.LEDGER_PREFIX):
        parsed = keys.parse_ledger_key(key)
        if parsed is None:
            report.problems.append(Problem(key, "unexpected object in the ledger area"))
            continue
        by_writer[parsed[0]].append((parsed[1], key))
    for writer, items in sorted(by_writer.items()):
        _verify_writer(store, writer, sorted(items), report)


def _verify_writer(
    store: ArchiveStore, writer: str, items: list[tuple[int, str]], report: Report
) -> None:
    key_name = keys.public_key_key(writer)
    try:
        public = load_public_pem(store.get_bytes(key_name), what=key_name)
    except ObjectMissingError:
        report.problems.append(Problem(key_name, f"public key of writer {writer!r} is missing"))
        return
    except EvidenceError as exc:
        report.problems.append(Problem(key_name, str(exc)))
        return
    report.writers[writer] = fingerprint(public)
    expected_prev = canonical.GENESIS_PREV
    expected_seq = 1
    for seq, key in items:
        if seq != expected_seq:
            report.problems.append(
                Problem(key, f"entries {expected_seq}..{seq - 1} of writer {writer!r} are missing")
            )
            expected_prev = ""  # the chain cannot be checked across the gap
        expected_seq = seq + 1
        report.entries_checked += 1
        try:
            entry, signature = canonical.parse_stored(store.get_bytes(key))
        except ValueError as exc:
            report.problems.append(Problem(key, f"not a valid ledger entry ({exc}); altered?"))
            expected_prev = ""
            continue
        recording = entry.get("recording") if isinstance(entry.get("recording"), str) else None
        body = canonical.canonical_bytes(entry)
        if not signature_valid(public, signature, body):
            report.problems.append(
                Problem(key, "signature does not verify: the entry was altered", recording)
            )
        if entry["seq"] != seq or entry["writer"] != writer:
            report.problems.append(Problem(key, "seq or writer inside does not match its key", recording))
        if expected_prev and entry["prev"] != expected_prev:
            report.problems.append(
                Problem(key, "prev does not match the previous entry: the chain is broken", recording)
            )
        expected_prev = hashlib.sha256(body).hexdigest()
        report.entries.append(entry)


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
    archived_events: list[dict[str, Any]],
    report: Report,
) -> None:
    def problem(subject: str, message: str) -> None:
        report.problems.append(Problem(subject, message, recording))

    prefix = keys.recording_prefix(recording)
    originals = [name for name in names if keys.is_original_name(name)]
    if len(originals) != 1:
        problem(prefix, "no original stored" if not originals else f"several originals: {originals}")
        return
    original_key = prefix + originals[0]
    try:
        actual_sha256, actual_size = hash_stored(store, original_key)
    except EvidenceError as exc:
        problem(original_key, f"cannot be read: {exc}")
        return
    if actual_sha256 != recording:
        problem(original_key, f"content changed: SHA-256 is now {actual_sha256[:12]}…, "
                "not the recording id")

    manifest_key = keys.manifest_key(recording)
    try:
        manifest_bytes = store.get_bytes(manifest_key)
    except EvidenceError as exc:
        problem(manifest_key, f"cannot be read: {exc}")
        return
    manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    if not archived_events:
        problem(prefix, "no 'archived' event in any ledger")
    elif all(event["details"].get("manifest_sha256") != manifest_sha256 for event in archived_events):
        problem(manifest_key, "manifest changed: its SHA-256 differs from the one in the "
                "'archived' ledger event")
    try:
        manifest = json.loads(manifest_bytes)
        manifest_facts = (manifest["sha256"], manifest["size_bytes"], manifest["original_key"])
    except (ValueError, KeyError, TypeError):
        problem(manifest_key, "manifest is not valid JSON with sha256, size_bytes, original_key")
        return
    if manifest_facts != (recording, actual_size, original_key):
        problem(manifest_key, "manifest does not describe the stored original "
                "(sha256, size_bytes or original_key differ)")


DERIVED_NAMES = frozenset({"proxy.mp4", "proxy.m4a", "poster.jpg"})


def _verify_derived(
    store: ArchiveStore,
    recording: str,
    names: list[str],
    derived_events: list[dict[str, Any]],
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
            report.problems.append(Problem(key, "viewing copy without a 'derived' ledger event",
                                           recording))
            continue
        if key not in stored:
            report.problems.append(Problem(key, "named by a 'derived' event but missing from "
                                           "the archive", recording))
            continue
        try:
            actual_sha256, _ = hash_stored(store, key)
        except EvidenceError as exc:
            report.problems.append(Problem(key, f"cannot be read: {exc}", recording))
            continue
        if actual_sha256 != expected[key]:
            report.problems.append(Problem(
                key, f"viewing copy changed: SHA-256 is {actual_sha256[:12]}…, the 'derived' "
                f"event recorded {expected[key][:12]}…", recording))


def verify_recording(store: ArchiveStore, recording: str, entries: Iterable[dict[str, Any]]) -> Report:
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
