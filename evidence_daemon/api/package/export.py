"""Export: an evidence package of some recordings, written with nothing but what the archive
holds and the catalog indexed, and recorded in this API node's ledger before any content is read.

``export_recordings`` first appends an ``exported`` event to this node's ledger (so an export
that fails half-way is still on record) and, for format 3, a checkpoint of that ledger (so the
export's own entries can be proven), then writes the package (``writer.package_file``): the
ledger part first (``prove`` for format 3; contiguous runs with redaction stubs for format 2),
README.txt, the recordings re-hashed while streamed into the zip, the public keys, package.json
and package.sig.

What must never happen here: build an archive key or a member name from request text (keys come
from ``archive.keys`` on a validated SHA-256, and catalog keys are checked against them); put an
entry about a recording outside the package into it in full; export bytes that do not hash to
what the catalog and the ledger recorded; sign with any key but this node's ledger key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ... import __version__
from ...archive import keys
from ...archive.base import ArchiveStore, hash_file
from ...clock import Clock, format_time, utc_now
from ...custody import canonical, chain
from ...custody.chain import GENESIS, Event, Head
from ...custody.ledger import LedgerWriter
from ...custody.signing import fingerprint, load_public_pem, public_pem
from ...errors import ConfigError, IntegrityError, ObjectMissingError, StorageError, UsageError
from ...state.db import Database
from ..reasons import checked_reason
from .format import (
    FORMAT,
    FORMAT_VERSION,
    PACKAGE_JSON,
    PACKAGE_SIG,
    README_NAME,
    WRITABLE_FORMAT_VERSIONS,
    is_relevant,
    proof_name,
    redacted_key,
    stub_bytes,
)
from .plan import PlannedRecording, ledger_runs, plan_recording, proven_entries, resolve_recordings
from .prove import ProvenWriter, checkpoint_own_chain, prove_writer
from .readme import readme_text
from .writer import PackageWriter, package_file, refuse_existing
from ...i18n import _

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageInfo:
    """A package written by ``export_recordings``."""

    path: Path
    package_id: str
    size_bytes: int
    sha256: str  # of the zip file itself
    recordings: tuple[str, ...]
    exported_writer: str
    exported_seq: int



def export_recordings(
    store: ArchiveStore,
    database: Database,
    ledger: LedgerWriter,
    index_own: Callable[[int], object],
    recording_ids: Sequence[str],
    out: Path,
    *,
    reason: str,
    actor: str,
    include_proxies: bool = True,
    remote: str | None = None,
    clock: Clock = utc_now,
    signing_key: Ed25519PrivateKey | None = None,
    format_version: int = FORMAT_VERSION,
) -> PackageInfo:
    """Write an evidence package of ``recording_ids`` to ``out``.

    ``database`` is the API catalog; ``ledger`` this node's writer; ``index_own(seq)`` should
    put this node's entry ``seq`` into the catalog's ``events`` table (if it cannot yet, the
    export goes on: the entry is safe in the archive). ``signing_key`` defaults to the
    ledger's key and must be it (its public key is the one in ``keys/``). ``out`` must not
    exist, or be an empty file (a ``mkstemp`` placeholder); nothing else is ever replaced.

    Version 3 (the default) first appends a checkpoint of this node's chain after the
    ``exported`` event, so the export's own entries are proven; ``format_version=2`` writes
    the older ledger runs with redaction stubs (kept so their verifier stays tested).

    Ids are checked before anything is recorded (``UsageError``, ``NotFoundError``,
    ``ConflictError``). Then the ``exported`` event is appended, before any content is read:
    if the export fails after that (``IntegrityError`` when the archive's bytes or ledger do
    not verify, ``StorageError``) it stays on record, and no file is left at ``out``.
    """
    reason = checked_reason(reason)
    if format_version not in WRITABLE_FORMAT_VERSIONS:
        raise UsageError(_("evidence packages are written in format version {join}, not "
                           "{format_version}").format(
                               join=' or '.join(map(str, sorted(WRITABLE_FORMAT_VERSIONS))), format_version=format_version))
    planned = [plan_recording(row, include_proxies=include_proxies)
               for row in resolve_recordings(database, recording_ids)]
    signer = signing_key or ledger.private_key
    if public_pem(signer) != public_pem(ledger.private_key):
        raise ConfigError(_("the package signing key is not the key of ledger writer {writer!r}; "
                            "packages are signed with the API node's key").format(
                                writer=ledger.writer))
    out = Path(out)
    refuse_existing(out)
    recordings = [plan.sha256 for plan in planned]
    package_id = uuid.uuid4().hex

    exported = ledger.append(Event.EXPORTED, recording=None, actor=actor, details={
        "package_id": package_id, "recordings": recordings, "reason": reason,
        "include_proxies": include_proxies, "remote": remote,
    })
    exported_seq = int(exported["seq"])
    index_own(exported_seq)
    indexed = database.scalar("SELECT entry_hash FROM events WHERE writer = ? AND seq = ?",
                              (ledger.writer, exported_seq))
    if indexed is None:  # safe in the archive: the next poll indexes it
        log.warning(_("export %s: the 'exported' event %s#%d is not in the catalog yet"),
                    package_id, ledger.writer, exported_seq)
    elif indexed != canonical.entry_hash(exported):
        raise IntegrityError(_("the catalog indexed another entry as {writer}#{exported_seq} than "
                               "the 'exported' event just written").format(
                                   writer=ledger.writer, exported_seq=exported_seq))

    runs: dict[str, tuple[int, int]] = {}
    selected: dict[str, set[int]] = {}
    own_checkpoint: tuple[dict[str, Any], list[str]] | None = None
    if format_version == 3:
        own_checkpoint = checkpoint_own_chain(ledger, index_own)
        selected = proven_entries(database, recordings, ledger.writer, exported_seq)
    else:
        runs = ledger_runs(database, recordings, ledger.writer, exported_seq)
    public_keys = {writer: _archived_public_key(store, database, writer)
                   for writer in (selected or runs)}
    created_at = format_time(clock())
    fingerprints = {writer: fingerprint(key) for writer, (_, key) in public_keys.items()}
    exporter = {"writer": ledger.writer, "fingerprint": fingerprints[ledger.writer],
                "public_key": keys.public_key_key(ledger.writer)}
    if public_keys[ledger.writer][0] != public_pem(signer):
        raise IntegrityError(_("{public_key_key} in the archive is not this node's key").format(
            public_key_key=keys.public_key_key(ledger.writer)))

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(_("cannot create {parent}: {strerror}").format(
            parent=out.parent, strerror=exc.strerror)) from exc
    with package_file(out, datetime.fromisoformat(created_at)) as writer:
        # The ledger first: README.txt states how many entries were redacted or are
        # unproven, and a ledger that does not verify fails the export before any
        # original is read.
        redacted: dict[str, int] = {}
        proven: dict[str, ProvenWriter] = {}
        if format_version == 3:
            for ledger_writer, seqs in selected.items():
                proven[ledger_writer] = prove_writer(
                    store, database, ledger_writer, public_keys[ledger_writer][1], seqs,
                    recordings=frozenset(recordings),
                    exported=(ledger.writer, exported_seq),
                    own=own_checkpoint if ledger_writer == ledger.writer else None)
                _add_proven(writer, proven[ledger_writer])
        else:
            redacted = {
                ledger_writer: _add_ledger_run(
                    store, database, writer, ledger_writer, first_seq, last_seq,
                    public_keys[ledger_writer][1], recordings=frozenset(recordings),
                    exported=(ledger.writer, exported_seq))
                for ledger_writer, (first_seq, last_seq) in runs.items()
            }
        writer.add_bytes(README_NAME, readme_text(
            package_id=package_id, created_at=created_at, actor=actor, reason=reason,
            exporter=exporter, planned=planned, fingerprints=fingerprints,
            redacted_count=sum(redacted.values()), format_version=format_version,
            uncovered_count=sum(len(item.uncovered) for item in proven.values()),
        ).encode("utf-8"))
        for plan in planned:
            _add_recording(store, writer, plan)
        for ledger_writer, (pem, _key) in public_keys.items():
            writer.add_bytes(keys.public_key_key(ledger_writer), pem)
        body = package_json(
            package_id=package_id, created_at=created_at, actor=actor, reason=reason,
            include_proxies=include_proxies, exporter=exporter,
            exported_event={"writer": ledger.writer, "seq": exported_seq,
                            "file": keys.ledger_key(ledger.writer, exported_seq),
                            "entry_hash": canonical.entry_hash(exported)},
            planned=planned, fingerprints=fingerprints, files=writer.listed,
            format_version=format_version,
            ledger=([item.describe(fingerprints[name]) for name, item in proven.items()]
                    if format_version == 3 else ledger_listing(runs, fingerprints)),
        )
        writer.add_bytes(PACKAGE_JSON, body, listed=False)
        writer.add_bytes(PACKAGE_SIG, base64.b64encode(signer.sign(body)) + b"\n",
                         listed=False)
    sha256, size_bytes = hash_file(out)
    return PackageInfo(path=out, package_id=package_id, size_bytes=size_bytes, sha256=sha256,
                       recordings=tuple(recordings), exported_writer=ledger.writer,
                       exported_seq=exported_seq)



def _archived_public_key(store: ArchiveStore, database: Database,
                         writer: str) -> tuple[bytes, Ed25519PublicKey]:
    """``keys/<writer>.pub`` as stored, which must be the key the catalog pinned when it
    first indexed the writer: a key replaced in the archive later is never exported."""
    try:
        key_name = keys.public_key_key(writer)
    except ValueError as exc:
        raise IntegrityError(_("catalog names an invalid ledger writer: {exc}").format(
            exc=exc)) from None
    try:
        pem = store.get_bytes(key_name)
    except ObjectMissingError as exc:
        raise IntegrityError(_("{key_name}: public key of writer {writer!r} is not in the archive").format(
            key_name=key_name, writer=writer)) from exc
    public = load_public_pem(pem, what=key_name)
    pinned = database.scalar("SELECT public_key FROM writers WHERE writer = ?", (writer,))
    if pinned is not None and public_pem(
            load_public_pem(str(pinned).encode(), what=f"indexed key of {writer}")) != public_pem(public):
        raise IntegrityError(_("{key_name}: differs from the key the catalog indexed for writer "
                               "{writer!r}; the archive's key was replaced. Run verify").format(
                                   key_name=key_name, writer=writer))
    return pem, public



def _add_recording(store: ArchiveStore, writer: PackageWriter, plan: PlannedRecording) -> None:
    original = plan.original
    assert original.size_bytes is not None
    sha256, size_bytes = writer.add_stream(original.key, store.iter_chunks(original.key),
                                           expected_size=original.size_bytes)
    if sha256 != plan.sha256 or size_bytes != original.size_bytes:
        raise IntegrityError(
            _("{key}: the archived original does not hash to its id (SHA-256 {sha256}…, "
              "{size_bytes} bytes); refusing to export it. Run verify on the archive").format(
                  key=original.key, sha256=sha256[:12], size_bytes=size_bytes)
        )
    manifest_bytes = store.get_bytes(plan.manifest.key)
    if hashlib.sha256(manifest_bytes).hexdigest() != plan.manifest.sha256:
        raise IntegrityError(_("{key}: the manifest differs from the one its 'archived' event "
                               "recorded; refusing to export it").format(key=plan.manifest.key))
    writer.add_bytes(plan.manifest.key, manifest_bytes)
    for part in plan.derived:
        stored = store.stat(part.key)
        if stored is None:
            raise IntegrityError(_("{key}: named by the catalog but not in the archive").format(
                key=part.key))
        sha256, _size = writer.add_stream(part.key, store.iter_chunks(part.key),
                                      expected_size=stored.size_bytes)
        if sha256 != part.sha256:
            raise IntegrityError(_("{key}: the viewing copy differs from the one its 'derived' "
                                   "event recorded; refusing to export it").format(key=part.key))



def _add_ledger_run(store: ArchiveStore, database: Database, writer: PackageWriter,
                    ledger_writer: str, first_seq: int, last_seq: int,
                    public_key: Ed25519PublicKey, *, recordings: Collection[str],
                    exported: tuple[str, int]) -> int:
    """Copy entries first..last of one writer, checking them on the way (a package whose
    ledger would not verify is not written): relevant ones as stored, every other one as a
    redaction stub. Returns how many were redacted."""
    indexed = {
        int(row["seq"]): str(row["entry_hash"])
        for row in database.query(
            "SELECT seq, entry_hash FROM events WHERE writer = ? AND seq BETWEEN ? AND ?",
            (ledger_writer, first_seq, last_seq),
        )
    }
    head = GENESIS if first_seq == 1 else Head(first_seq - 1, None)
    redacted = 0
    for seq in range(first_seq, last_seq + 1):
        key = keys.ledger_key(ledger_writer, seq)
        try:
            data = store.get_bytes(key)
        except ObjectMissingError as exc:
            raise IntegrityError(_("{key}: ledger entry missing from the archive").format(
                key=key)) from exc
        checked = chain.check_entry(ledger_writer, seq, data, public_key, head)
        entry = checked.read.entry
        if not checked.verified or entry is None:
            why = "; ".join(problem.message for problem in checked.problems)
            raise IntegrityError(_("{key}: ledger entry does not verify ({why}); run verify on "
                                   "the archive").format(key=key, why=why))
        if seq in indexed and indexed[seq] != checked.read.entry_hash:
            raise IntegrityError(_("{key}: differs from the entry the catalog indexed").format(
                key=key))
        head = checked.head
        if is_relevant(entry, recordings, exported):
            writer.add_bytes(key, data)
        elif seq in (first_seq, last_seq):  # the runs come from the catalog
            raise IntegrityError(_("{key}: the catalog says this entry concerns the package, the "
                                   "archived entry does not; run reindex").format(key=key))
        else:
            writer.add_bytes(redacted_key(ledger_writer, seq), stub_bytes(entry))
            redacted += 1
    return redacted



def _add_proven(writer: PackageWriter, proven: ProvenWriter) -> None:
    for seq, data in sorted(proven.entries.items()):
        writer.add_bytes(keys.ledger_key(proven.writer, seq), data)
    for seq, data in sorted(proven.proofs.items()):
        writer.add_bytes(proof_name(proven.writer, seq), data)
    if proven.timestamp is not None and proven.checkpoint_seq is not None:
        writer.add_bytes(keys.timestamp_key(proven.writer, proven.checkpoint_seq),
                         proven.timestamp)


def package_json(
    *,
    package_id: str,
    created_at: str,
    actor: str,
    reason: str,
    include_proxies: bool,
    exporter: Mapping[str, str],
    exported_event: Mapping[str, Any],
    planned: Sequence[PlannedRecording],
    fingerprints: Mapping[str, str],
    files: Sequence[Mapping[str, Any]],
    ledger: Sequence[Mapping[str, Any]],
    format_version: int = FORMAT_VERSION,
) -> bytes:
    document = {
        "format": FORMAT,
        "format_version": format_version,
        "package_id": package_id,
        "created_at": created_at,
        "exported_by": actor,
        "reason": reason,
        "include_proxies": include_proxies,
        "exporter": dict(exporter),
        "exported_event": dict(exported_event),
        "recordings": [
            {"id": plan.sha256, "short_id": plan.sha256[:12], "original": plan.original.key,
             "size_bytes": plan.original.size_bytes, "manifest": plan.manifest.key,
             "derived": [part.key for part in plan.derived], **plan.facts}
            for plan in planned
        ],
        "ledger": [dict(item) for item in ledger],
        "files": list(files),
        "software": {"name": "evidence-daemon", "version": __version__},
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"


def ledger_listing(runs: Mapping[str, tuple[int, int]],
                   fingerprints: Mapping[str, str]) -> list[dict[str, Any]]:
    """package.json's ``ledger`` list of a version-2 package: one contiguous run per writer."""
    return [{"writer": writer, "first_seq": first_seq, "last_seq": last_seq,
             "public_key": keys.public_key_key(writer), "fingerprint": fingerprints[writer]}
            for writer, (first_seq, last_seq) in runs.items()]
