"""Evidence packages: one zip that a court, a defence expert or an auditor can check on their
own, without this system.

``export_recordings`` first appends an ``exported`` event to this API node's ledger (so an
export that fails half-way is still on record) and a checkpoint of that ledger (so the export's
own entries can be proven), then writes the package (format 3)::

    README.txt                           plain language, English then Chinese
    package.json                         every other file with size and SHA-256; who, when, why;
                                         per writer its entries, checkpoint and proofs
    package.sig                          base64 Ed25519 over the package.json bytes (exporter)
    keys/<writer>.pub                    public key of every writer whose entries are included
    ledger/<writer>/<seq:012d>.json      entries exactly as stored: those about the package's
                                         recordings, its exported event, each writer's
                                         key-registered entries and newest checkpoint
    proofs/<writer>/<seq:012d>.json      RFC 9162 inclusion proof of that entry against the
                                         checkpoint (custody/proofs.py)
    checkpoints/<writer>/<seq:012d>.tsr  the checkpoint's RFC 3161 token, when archived
    recordings/<sha256>/original.<ext>   bit-exact, re-hashed while streamed into the zip
    recordings/<sha256>/manifest.json    (and proxy.mp4/proxy.m4a, poster.jpg when asked)

``verify_package`` checks such a zip with nothing but the zip (and a TSA certificate for
tokens). Member names equal archive keys, so the package reads like a small archive. A package
carries nothing about other cases and grows with log2 of the chains, not their length. An
entry after its writer's newest checkpoint goes in unproven, declared in package.json, and is a
warning; the exporter's own entries are always proven.

Format 2 (still written with ``format_version=2`` and verified, like format 1) carried
contiguous runs in which each entry about another case was a redaction stub
(``<seq>.redacted.json``: its hash and prev link only); what a stub hides rests on the
exporter's signature.

Why one module of this size: export and verification of one format share its vocabulary
(member names, package.json, the README that explains the checks) and must change together;
the pure parts below (planning, stubs, proofs, README text) are separate functions.

What this module must never do: build an archive key or a member name from request text (keys
come from ``archive.keys`` on a validated SHA-256, and catalog keys are checked against them);
put an entry about a recording outside the package into it in full; take a proof's tree size
from anything but the signed checkpoint; hold a whole original in memory; leave a half-written
package under the final name or overwrite an existing file; extract a member of a package it
verifies (names are compared, never used as paths).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import logging
import os
import re
import stat
import uuid
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import __version__
from ..archive import keys
from ..archive.base import READ_CHUNK_BYTES, ArchiveStore, hash_file
from ..durable import sync_dir as fsync_directory
from ..custody import canonical
from ..custody import chain
from ..custody.chain import GENESIS, Event, Head, Problem, ProblemKind
from ..custody.proofs import (
    SignedTreeHead,
    checkpoint_entry_details,
    inclusion_problem,
    inclusion_proofs,
    parse_proof,
    proof_bytes,
    tree_head_of,
)
from ..custody.timestamp import TsaTrust, verify_timestamp
from ..custody.ledger import LedgerWriter
from ..clock import Clock, format_time, utc_now
from ..custody.signing import fingerprint, load_public_pem, public_pem, signature_valid
from ..custody.trust import normal_fingerprint
from ..errors import (
    ConfigError,
    ConflictError,
    EvidenceError,
    IntegrityError,
    NotFoundError,
    ObjectMissingError,
    StorageError,
    UsageError,
)
from ..state.db import Database
from .reasons import checked_reason

log = logging.getLogger(__name__)

FORMAT = "evidence-daemon-package"
# 2: ledger runs may hold redaction stubs. Version 1 packages (all entries in full) still verify.
# 3: each entry proven by an inclusion proof against its writer's signed checkpoint; no runs.
# Version 1 and 2 packages still verify; version 2 is still written on request (tests).
FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2, 3})
WRITABLE_FORMAT_VERSIONS = frozenset({2, 3})
README_NAME = "README.txt"
PACKAGE_JSON = "package.json"
PACKAGE_SIG = "package.sig"
# Members read whole when verifying (package.json, ledger entries, keys, manifests). Anything
# larger is refused, so a hostile package cannot make the verifier allocate without bound.
MAX_PACKAGE_JSON_BYTES = 64 * 1024 * 1024
MAX_SMALL_MEMBER_BYTES = 16 * 1024 * 1024
DERIVED_NAMES = frozenset({"proxy.mp4", "proxy.m4a", "poster.jpg"})
REDACTED_SUFFIX = ".redacted.json"
PROOFS_PREFIX = "proofs/"
STUB_FIELDS = frozenset({"entry_hash", "prev", "redacted", "seq", "writer"})

_ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_REDACTED_NAME = re.compile(r"(\d{12})\.redacted\.json")
_PROOF_NAME = re.compile(r"(\d{12})\.json")


# -- value objects -------------------------------------------------------------------------

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


@dataclass
class PackageReport:
    """What ``verify_package`` found. Problems name the file in the zip they concern."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    package_id: str | None = None
    created_at: str | None = None
    exported_by: str | None = None
    reason: str | None = None
    exporter: str | None = None  # writer id of the exporting API node
    recordings: list[str] = field(default_factory=list)
    writers: dict[str, str] = field(default_factory=dict)  # writer -> key fingerprint
    files_checked: int = 0
    entries_checked: int = 0  # ledger files in the runs, full entries and stubs
    redacted: dict[str, int] = field(default_factory=dict)  # writer -> stubs in its run
    trusted_checked: bool = False  # keys were compared with trusted fingerprints
    format_version: int | None = None
    # version 3: per writer, entries proven and the checkpoint they are proven against
    proven: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)  # writer -> what it signs
    roles: dict[str, str] = field(default_factory=dict)  # writer -> role and how it is known
    uncovered: list[str] = field(default_factory=list)  # ledger files no checkpoint covers yet
    timestamps: dict[str, str] = field(default_factory=dict)  # .tsr file -> what it states
    timestamps_unchecked: list[str] = field(default_factory=list)  # no TSA certificate given

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, subject: str, message: str, recording: str | None = None) -> None:
        self.problems.append(Problem(subject, message, recording))

    def as_dict(self) -> dict[str, Any]:
        """For ``verify-package --json``."""
        return {
            "ok": self.ok, "package": str(self.path), "package_id": self.package_id,
            "created_at": self.created_at, "exported_by": self.exported_by,
            "reason": self.reason, "exporter": self.exporter, "recordings": self.recordings,
            "writers": self.writers, "trusted_checked": self.trusted_checked,
            "files_checked": self.files_checked, "entries_checked": self.entries_checked,
            "redacted": self.redacted, "format_version": self.format_version,
            "proven": self.proven, "checkpoints": self.checkpoints, "roles": self.roles,
            "uncovered": self.uncovered, "timestamps": self.timestamps,
            "timestamps_unchecked": self.timestamps_unchecked,
            "problems": [{"file": problem.subject, "message": problem.message,
                          "recording": problem.recording} for problem in self.problems],
        }


@dataclass(frozen=True)
class Part:
    """One file of a recording to export: its archive key (also its name in the zip) and what
    the catalog says it must hash to."""

    key: str
    sha256: str | None  # None for the original: its id is its SHA-256
    size_bytes: int | None


@dataclass(frozen=True)
class PlannedRecording:
    sha256: str
    original: Part
    manifest: Part
    derived: tuple[Part, ...]  # proxy, poster: those asked for and present
    facts: Mapping[str, Any]  # station, device, officer, recorded times: for README and package.json


# -- choosing what goes in (pure, or catalog reads only) -----------------------------------

def resolve_recordings(database: Database, requested: Sequence[str]) -> list[Any]:
    """Catalog rows of the requested recordings, in the order asked, each once.

    Each id is the full SHA-256 or a unique prefix of at least 12 hex digits. Raises
    ``UsageError`` (malformed), ``NotFoundError`` (unknown), ``ConflictError`` (ambiguous).
    """
    if not requested:
        raise UsageError("name at least one recording to export")
    rows: list[Any] = []
    seen: set[str] = set()
    for text in requested:
        prefix = text.lower()
        if not _ID_PREFIX.fullmatch(prefix):
            raise UsageError(
                f"recording id {text!r}: give the SHA-256, or at least 12 of its hex digits"
            )
        # Hex digits sort below 'g': this range is exactly the ids starting with the prefix.
        matches = database.query(
            "SELECT * FROM recordings WHERE sha256 >= ? AND sha256 < ? ORDER BY sha256 LIMIT 2",
            (prefix, prefix + "g"),
        )
        if not matches:
            raise NotFoundError(f"no recording {text}")
        if len(matches) > 1:
            raise ConflictError(f"recording id {text} is ambiguous: give more digits")
        if matches[0]["sha256"] not in seen:
            seen.add(matches[0]["sha256"])
            rows.append(matches[0])
    return rows


def plan_recording(row: Mapping[str, Any], *, include_proxies: bool) -> PlannedRecording:
    """What to export for one catalog row, with keys recomputed by ``archive.keys``.

    The catalog's stored keys must equal the computed ones: a row that disagrees was not
    written by the indexer and is refused (``IntegrityError``) rather than followed.
    """
    shown = str(row["sha256"])[:12]
    try:
        sha256 = keys.check_sha256(str(row["sha256"]))
        original_key = keys.original_key(sha256, str(row["extension"]))
    except ValueError as exc:
        raise IntegrityError(f"catalog row of recording {shown}: {exc}") from None

    def require_key(column: str, expected: Collection[str]) -> str:
        value = row[column]
        if value not in expected:
            raise IntegrityError(
                f"catalog row of recording {shown}: {column} {value!r} is not a key of the "
                "storage contract; reindex the catalog"
            )
        return str(value)

    def require_sha256(column: str) -> str:
        value = row[column]
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
            raise IntegrityError(f"catalog row of recording {shown}: {column} is not a SHA-256")
        return value

    require_key("original_key", {original_key})
    manifest = Part(require_key("manifest_key", {keys.manifest_key(sha256)}),
                    require_sha256("manifest_sha256"), None)
    derived: list[Part] = []
    if include_proxies and row["proxy_key"] is not None:
        proxy_keys = {keys.proxy_key(sha256, "mp4"), keys.proxy_key(sha256, "m4a")}
        derived.append(Part(require_key("proxy_key", proxy_keys), require_sha256("proxy_sha256"),
                            None))
    if include_proxies and row["poster_key"] is not None:
        derived.append(Part(require_key("poster_key", {keys.poster_key(sha256)}),
                            require_sha256("poster_sha256"), None))
    facts = {name: row[name] for name in ("station", "device_id", "officer_id", "recorded_start",
                                          "recorded_end", "time_source", "extension")}
    return PlannedRecording(
        sha256=sha256,
        original=Part(original_key, None, int(row["size_bytes"])),
        manifest=manifest,
        derived=tuple(derived),
        facts=facts,
    )


def merge_runs(relevant: Mapping[str, tuple[int, int]], exporter: str,
               exported_seq: int) -> dict[str, tuple[int, int]]:
    """Per writer, the contiguous run of seqs to include: from its first to its last entry
    concerning the package, the exporter's run extended to the ``exported`` entry."""
    runs = dict(relevant)
    first, last = runs.get(exporter, (exported_seq, exported_seq))
    runs[exporter] = (min(first, exported_seq), max(last, exported_seq))
    return dict(sorted(runs.items()))


def ledger_runs(database: Database, recordings: Sequence[str], exporter: str,
                exported_seq: int) -> dict[str, tuple[int, int]]:
    marks = ",".join("?" for _ in recordings)
    rows = database.query(
        f"SELECT writer, MIN(seq) AS first_seq, MAX(seq) AS last_seq FROM events"
        f" WHERE recording IN ({marks}) GROUP BY writer",
        tuple(recordings),
    )
    relevant = {str(row["writer"]): (int(row["first_seq"]), int(row["last_seq"])) for row in rows}
    return merge_runs(relevant, exporter, exported_seq)


# -- redaction stubs (pure) ------------------------------------------------------------------

def is_relevant(entry: Mapping[str, Any], recordings: Collection[str],
                exported: tuple[str, int] | None) -> bool:
    """Whether a ledger entry goes into the package in full: it concerns one of the package's
    recordings, or it is the package's own ``exported`` event (writer, seq). The same test
    chooses the runs (``ledger_runs``) and is checked at their ends by ``verify_package``."""
    recording = entry.get("recording")
    if isinstance(recording, str) and recording in recordings:
        return True
    return exported is not None and (entry.get("writer"), entry.get("seq")) == exported


def redacted_key(writer: str, seq: int) -> str:
    """``ledger/<writer>/<seq:012d>.redacted.json``, next to where the full entry would be."""
    return keys.ledger_key(writer, seq).removesuffix(".json") + REDACTED_SUFFIX


def _parse_writer_seq(name: str, folder: str, file_name: re.Pattern[str]) -> tuple[str, int] | None:
    """``<folder>/<writer>/<file>`` -> (writer, seq from the file name); None otherwise."""
    parts = name.split("/")
    match = file_name.fullmatch(parts[-1])
    if len(parts) != 3 or parts[0] != folder or match is None:
        return None
    try:
        keys.check_writer(parts[1])
    except ValueError:
        return None
    return parts[1], int(match.group(1))


def parse_redacted_key(name: str) -> tuple[str, int] | None:
    """``ledger/<writer>/<seq>.redacted.json`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(name, "ledger", _REDACTED_NAME)


def stub_bytes(entry: Mapping[str, Any]) -> bytes:
    """The redaction stub of a (verified) ledger entry: what a verifier needs to carry the
    ``prev`` chain across it, and nothing of what it says."""
    return canonical.canonical_json({
        "entry_hash": canonical.entry_hash(dict(entry)), "prev": entry["prev"],
        "redacted": True, "seq": entry["seq"], "writer": entry["writer"],
    })


def parse_stub(data: bytes) -> dict[str, Any]:
    """The fields of a redaction stub; ValueError unless ``data`` is exactly what
    ``stub_bytes`` writes (so a stub can carry nothing else)."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != STUB_FIELDS:
        raise ValueError(f"its fields must be exactly {', '.join(sorted(STUB_FIELDS))}")
    for name in ("entry_hash", "prev"):
        if not isinstance(body[name], str) or not _SHA256_HEX.fullmatch(body[name]):
            raise ValueError(f"{name} is not a SHA-256 in lower-case hex")
    if body["redacted"] is not True:
        raise ValueError("redacted is not true")
    if type(body["seq"]) is not int or body["seq"] < 1 or not isinstance(body["writer"], str):
        raise ValueError("seq or writer is malformed")
    if canonical.canonical_json(body) != data:
        raise ValueError("not in canonical form")
    return body


# -- inclusion proofs (version 3) ------------------------------------------------------------

def proof_name(writer: str, seq: int) -> str:
    """``proofs/<writer>/<seq:012d>.json``: the inclusion proof of ledger entry ``seq``."""
    if seq < 1:
        raise ValueError(f"ledger sequence numbers start at 1, got {seq}")
    return f"{PROOFS_PREFIX}{keys.check_writer(writer)}/{seq:012d}.json"


def parse_proof_name(name: str) -> tuple[str, int] | None:
    """``proofs/<writer>/<seq>.json`` -> (writer, seq); None for anything else."""
    return _parse_writer_seq(name, PROOFS_PREFIX.rstrip("/"), _PROOF_NAME)


def proven_entries(database: Database, recordings: Sequence[str], exporter: str,
                   exported_seq: int) -> dict[str, set[int]]:
    """Per writer, the seqs of the entries a version-3 package carries in full (besides the
    checkpoints): every entry about its recordings, its own ``exported`` event, and each such
    writer's ``key-registered`` entries (its role, signed), from the catalog."""
    marks = ",".join("?" for _ in recordings)
    selected: dict[str, set[int]] = defaultdict(set)
    for row in database.query(f"SELECT writer, seq FROM events WHERE recording IN ({marks})",
                              tuple(recordings)):
        selected[str(row["writer"])].add(int(row["seq"]))
    selected[exporter].add(exported_seq)
    writers = sorted(selected)
    marks = ",".join("?" for _ in writers)
    for row in database.query(f"SELECT writer, seq FROM events WHERE event = ? AND writer IN "
                              f"({marks})", (str(Event.KEY_REGISTERED), *writers)):
        selected[str(row["writer"])].add(int(row["seq"]))
    return dict(sorted(selected.items()))


@dataclass(frozen=True)
class ProvenWriter:
    """One writer's part of a version-3 package."""

    writer: str
    entries: Mapping[int, bytes]  # seq -> entry as stored (incl. the checkpoint)
    checkpoint_seq: int | None  # the writer's newest checkpoint: what the proofs are against
    proofs: Mapping[int, bytes]  # seq -> proof file
    uncovered: tuple[int, ...]  # after the newest checkpoint: signed, not proven in the chain
    timestamp: bytes | None  # the archived RFC 3161 token over the checkpoint, if any

    def describe(self, key_fingerprint: str) -> dict[str, Any]:
        """This writer's item in package.json's ``ledger`` list."""
        checkpoint = None
        if self.checkpoint_seq is not None:
            checkpoint = {
                "seq": self.checkpoint_seq,
                "file": keys.ledger_key(self.writer, self.checkpoint_seq),
                "timestamp": (keys.timestamp_key(self.writer, self.checkpoint_seq)
                              if self.timestamp is not None else None)}
        return {"writer": self.writer, "public_key": keys.public_key_key(self.writer),
                "fingerprint": key_fingerprint, "entries": sorted(self.entries),
                "checkpoint": checkpoint, "proven": sorted(self.proofs),
                "uncovered": list(self.uncovered)}


def checkpoint_own_chain(ledger: LedgerWriter,
                         index_own: Callable[[int], object]) -> tuple[dict[str, Any], list[str]]:
    """Append a checkpoint of this node's own chain (so the export's own entries are proven
    too); returns the checkpoint entry and the entry hashes of the tree it signs. The writer's
    own ``checkpoint`` signs it: its tail check runs first, as for every checkpoint."""
    entry = ledger.checkpoint(actor=f"{ledger.role}:{ledger.writer}")
    if entry is None:  # the chain ends with a checkpoint already: the exported entry is missing
        raise IntegrityError(f"ledger {ledger.writer}: no entry after its last checkpoint, though "
                             "the export was just recorded")
    index_own(int(entry["seq"]))
    return entry, ledger.entry_hashes()[:int(entry["details"]["tree_size"])]


def _indexed_hashes(database: Database, writer: str, tree_size: int) -> list[str]:
    rows = database.query("SELECT seq, entry_hash FROM events WHERE writer = ? AND seq <= ? "
                          "ORDER BY seq", (writer, tree_size))
    if [int(row["seq"]) for row in rows] != list(range(1, tree_size + 1)):
        raise IntegrityError(f"the catalog does not hold entries 1..{tree_size} of writer "
                             f"{writer!r} that its checkpoint signs; run reindex, then verify")
    return [str(row["entry_hash"]) for row in rows]


def prove_writer(store: ArchiveStore, database: Database, writer: str,
                 public_key: Ed25519PublicKey, seqs: Collection[int], *,
                 recordings: Collection[str], exported: tuple[str, int],
                 own: tuple[Mapping[str, Any], Sequence[str]] | None = None) -> ProvenWriter:
    """Read and check the entries ``seqs`` of one writer and prove them against its newest
    checkpoint (``own``: the one this node just signed, with its tree's hashes). A package
    whose entries would not verify is not written: IntegrityError when an entry or the
    checkpoint does not verify, or the catalog's hashes are not the tree the checkpoint signs.
    Entries after the newest checkpoint go in unproven (``uncovered``); of this node's own
    chain, those come after the export and stay out. The seqs come from the catalog: an entry
    that is not about the package (``is_relevant``) nor a key registration is refused, never
    exported."""

    def stored_entry(seq: int) -> tuple[bytes, chain.ReadEntry]:
        key = keys.ledger_key(writer, seq)
        try:
            data = store.get_bytes(key)
        except ObjectMissingError as exc:
            raise IntegrityError(f"{key}: ledger entry missing from the archive") from exc
        read = chain.read_entry(writer, seq, data, public_key)
        if not read.signed or read.problems or read.entry is None:
            why = "; ".join(problem.message for problem in read.problems)
            raise IntegrityError(f"{key}: ledger entry does not verify ({why}); run verify on "
                                 "the archive")
        return data, read

    entries: dict[int, bytes] = {}
    if own is not None:
        checkpoint_seq: int | None = int(own[0]["seq"])
        seqs = [seq for seq in seqs if seq <= len(own[1])]
    else:
        found = database.scalar("SELECT MAX(seq) FROM events WHERE writer = ? AND event = ? AND "
                                "verified = 1", (writer, str(Event.CHECKPOINT)))
        checkpoint_seq = int(found) if found is not None else None
    entry_hashes: Sequence[str] = ()
    timestamp: bytes | None = None
    if checkpoint_seq is not None:
        data, read = stored_entry(checkpoint_seq)
        key = keys.ledger_key(writer, checkpoint_seq)
        assert read.entry is not None
        try:
            head = tree_head_of(read.entry)
        except ValueError as exc:
            raise IntegrityError(f"{key}: {exc}; run verify on the archive") from None
        entry_hashes = own[1] if own is not None else _indexed_hashes(database, writer,
                                                                      head.tree_size)
        if (len(entry_hashes) != head.tree_size or checkpoint_entry_details(entry_hashes)[
                "root_hash"] != head.root.hex()):
            raise IntegrityError(f"{key}: entries 1..{head.tree_size} of writer {writer!r} do "
                                 "not hash to the tree head this checkpoint signs: the chain "
                                 "differs from what its writer signed; run verify")
        entries[checkpoint_seq] = data
        try:
            timestamp = store.get_bytes(keys.timestamp_key(writer, checkpoint_seq))
        except ObjectMissingError:
            timestamp = None
    for seq in sorted(seqs):
        data, read = stored_entry(seq)
        assert read.entry is not None
        if (read.entry["event"] != Event.KEY_REGISTERED
                and not is_relevant(read.entry, recordings, exported)):
            raise IntegrityError(f"{keys.ledger_key(writer, seq)}: the catalog says this entry "
                                 "concerns the package, the archived entry does not; run "
                                 "reindex")
        if seq <= len(entry_hashes) and entry_hashes[seq - 1] != read.entry_hash:
            raise IntegrityError(f"{keys.ledger_key(writer, seq)}: differs from the entry the "
                                 "catalog indexed; run reindex, then verify")
        entries[seq] = data
    covered = [seq for seq in sorted(seqs) if seq <= len(entry_hashes)]
    proofs = ({seq: proof_bytes(proof) for seq, proof in inclusion_proofs(
        writer, checkpoint_seq, entry_hashes, covered).items()}
              if checkpoint_seq is not None else {})
    uncovered = tuple(seq for seq in sorted(seqs) if seq > len(entry_hashes))
    return ProvenWriter(writer, entries, checkpoint_seq, proofs, uncovered, timestamp)


# -- export ------------------------------------------------------------------------------

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
        raise UsageError(f"evidence packages are written in format version "
                         f"{' or '.join(map(str, sorted(WRITABLE_FORMAT_VERSIONS)))}, not "
                         f"{format_version}")
    planned = [plan_recording(row, include_proxies=include_proxies)
               for row in resolve_recordings(database, recording_ids)]
    signer = signing_key or ledger.private_key
    if public_pem(signer) != public_pem(ledger.private_key):
        raise ConfigError(f"the package signing key is not the key of ledger writer "
                          f"{ledger.writer!r}; packages are signed with the API node's key")
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not _is_placeholder(out):
        raise ConflictError(f"{out} already exists; an evidence package is never overwritten")
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
        log.warning("export %s: the 'exported' event %s#%d is not in the catalog yet",
                    package_id, ledger.writer, exported_seq)
    elif indexed != canonical.entry_hash(exported):
        raise IntegrityError(f"the catalog indexed another entry as {ledger.writer}#"
                             f"{exported_seq} than the 'exported' event just written")

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
        raise IntegrityError(f"{keys.public_key_key(ledger.writer)} in the archive is not this "
                             "node's key")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {out.parent}: {exc.strerror}") from exc
    temp = out.with_name(f".{out.name}.{package_id}.part")
    try:
        with temp.open("xb") as handle:
            with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
                writer = _PackageWriter(archive, datetime.fromisoformat(created_at))
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
                for ledger_writer, (pem, _) in public_keys.items():
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
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temp, out)
    except OSError as exc:
        raise StorageError(f"cannot write the evidence package {out}: {exc.strerror}") from exc
    finally:
        temp.unlink(missing_ok=True)
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
        raise IntegrityError(f"catalog names an invalid ledger writer: {exc}") from None
    try:
        pem = store.get_bytes(key_name)
    except ObjectMissingError as exc:
        raise IntegrityError(f"{key_name}: public key of writer {writer!r} is not in the "
                             "archive") from exc
    public = load_public_pem(pem, what=key_name)
    pinned = database.scalar("SELECT public_key FROM writers WHERE writer = ?", (writer,))
    if pinned is not None and public_pem(
            load_public_pem(str(pinned).encode(), what=f"indexed key of {writer}")) != public_pem(public):
        raise IntegrityError(f"{key_name}: differs from the key the catalog indexed for writer "
                             f"{writer!r}; the archive's key was replaced. Run verify")
    return pem, public


def _add_recording(store: ArchiveStore, writer: _PackageWriter, plan: PlannedRecording) -> None:
    original = plan.original
    assert original.size_bytes is not None
    sha256, size_bytes = writer.add_stream(original.key, store.iter_chunks(original.key),
                                           expected_size=original.size_bytes)
    if sha256 != plan.sha256 or size_bytes != original.size_bytes:
        raise IntegrityError(
            f"{original.key}: the archived original does not hash to its id (SHA-256 "
            f"{sha256[:12]}…, {size_bytes} bytes); refusing to export it. Run verify on the "
            "archive"
        )
    manifest_bytes = store.get_bytes(plan.manifest.key)
    if hashlib.sha256(manifest_bytes).hexdigest() != plan.manifest.sha256:
        raise IntegrityError(f"{plan.manifest.key}: the manifest differs from the one its "
                             "'archived' event recorded; refusing to export it")
    writer.add_bytes(plan.manifest.key, manifest_bytes)
    for part in plan.derived:
        stored = store.stat(part.key)
        if stored is None:
            raise IntegrityError(f"{part.key}: named by the catalog but not in the archive")
        sha256, _ = writer.add_stream(part.key, store.iter_chunks(part.key),
                                      expected_size=stored.size_bytes)
        if sha256 != part.sha256:
            raise IntegrityError(f"{part.key}: the viewing copy differs from the one its "
                                 "'derived' event recorded; refusing to export it")


def _add_ledger_run(store: ArchiveStore, database: Database, writer: _PackageWriter,
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
            raise IntegrityError(f"{key}: ledger entry missing from the archive") from exc
        checked = chain.check_entry(ledger_writer, seq, data, public_key, head)
        entry = checked.read.entry
        if not checked.verified or entry is None:
            why = "; ".join(problem.message for problem in checked.problems)
            raise IntegrityError(f"{key}: ledger entry does not verify ({why}); run verify on "
                                 "the archive")
        if seq in indexed and indexed[seq] != checked.read.entry_hash:
            raise IntegrityError(f"{key}: differs from the entry the catalog indexed")
        head = checked.head
        if is_relevant(entry, recordings, exported):
            writer.add_bytes(key, data)
        elif seq in (first_seq, last_seq):  # the runs come from the catalog
            raise IntegrityError(f"{key}: the catalog says this entry concerns the package, "
                                 "the archived entry does not; run reindex")
        else:
            writer.add_bytes(redacted_key(ledger_writer, seq), stub_bytes(entry))
            redacted += 1
    return redacted


def _add_proven(writer: _PackageWriter, proven: ProvenWriter) -> None:
    for seq, data in sorted(proven.entries.items()):
        writer.add_bytes(keys.ledger_key(proven.writer, seq), data)
    for seq, data in sorted(proven.proofs.items()):
        writer.add_bytes(proof_name(proven.writer, seq), data)
    if proven.timestamp is not None and proven.checkpoint_seq is not None:
        writer.add_bytes(keys.timestamp_key(proven.writer, proven.checkpoint_seq),
                         proven.timestamp)


def _is_placeholder(path: Path) -> bool:
    """An empty regular file, as ``tempfile.mkstemp`` leaves it: replacing it loses nothing."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size == 0


def _publish(temp: Path, out: Path) -> None:
    """Give the durable temp file its final name; never replaces anything but an empty
    placeholder file."""
    try:
        os.link(temp, out)  # atomic, and fails instead of overwriting
    except FileExistsError:
        if not _is_placeholder(out):
            raise ConflictError(f"{out} already exists; an evidence package is never "
                                "overwritten") from None
        os.replace(temp, out)
    except OSError as exc:
        # FAT/exFAT media (a USB stick for the court) have no hard links: rename instead.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if (out.exists() or out.is_symlink()) and not _is_placeholder(out):
            raise ConflictError(f"{out} already exists; an evidence package is never "
                                "overwritten") from None
        os.replace(temp, out)
    temp.unlink(missing_ok=True)
    fsync_directory(out.parent)


class _PackageWriter:
    """Adds members to the zip, hashing each as written, and lists them for package.json."""

    def __init__(self, archive: zipfile.ZipFile, moment: datetime) -> None:
        self._zip = archive
        utc = moment.astimezone(timezone.utc)
        self._date_time = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
        self.listed: list[dict[str, Any]] = []

    def _info(self, name: str, compress_type: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, self._date_time)
        info.compress_type = compress_type
        info.external_attr = 0o100444 << 16  # a read-only regular file when extracted
        return info

    def add_bytes(self, name: str, data: bytes, *, listed: bool = True) -> None:
        info = self._info(name, zipfile.ZIP_DEFLATED)
        self._zip.writestr(info, data)
        if listed:
            self.listed.append({"name": name, "size_bytes": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()})

    def add_stream(self, name: str, chunks: Iterable[bytes], *,
                   expected_size: int) -> tuple[str, int]:
        """Media are stored, not compressed (they do not shrink), in chunks: an original of
        several GB never sits in memory."""
        info = self._info(name, zipfile.ZIP_STORED)
        info.file_size = expected_size  # lets zipfile choose ZIP64 headers up front
        digest = hashlib.sha256()
        size_bytes = 0
        with self._zip.open(info, "w") as member:
            for chunk in chunks:
                size_bytes += len(chunk)
                if size_bytes > expected_size:
                    raise IntegrityError(f"{name}: the archive holds more than the "
                                         f"{expected_size} bytes recorded for it")
                digest.update(chunk)
                member.write(chunk)
        sha256 = digest.hexdigest()
        self.listed.append({"name": name, "size_bytes": size_bytes, "sha256": sha256})
        return sha256, size_bytes


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


def readme_text(
    *,
    package_id: str,
    created_at: str,
    actor: str,
    reason: str,
    exporter: Mapping[str, str],
    planned: Sequence[PlannedRecording],
    fingerprints: Mapping[str, str],
    redacted_count: int = 0,
    format_version: int = FORMAT_VERSION,
    uncovered_count: int = 0,
) -> str:
    writer = exporter["writer"]
    example = planned[0].original.key if planned else "recordings/<id>/original.mp4"
    recordings_en = "\n".join(
        f"  - {plan.sha256}\n    {plan.original.key}, {plan.original.size_bytes} bytes; "
        f"device {plan.facts.get('device_id') or '?'}, officer {plan.facts.get('officer_id') or '?'}, "
        f"recorded {plan.facts.get('recorded_start') or 'unknown'}"
        for plan in planned
    )
    recordings_zh = "\n".join(
        f"  - {plan.sha256}\n    {plan.original.key}，{plan.original.size_bytes} 字节；"
        f"设备 {plan.facts.get('device_id') or '?'}，警员 {plan.facts.get('officer_id') or '?'}，"
        f"录制时间 {plan.facts.get('recorded_start') or '未知'}"
        for plan in planned
    )
    keys_list = "\n".join(f"  {name:<24} {value}" for name, value in fingerprints.items())
    if format_version == 3:
        steps_en, steps_zh = _proof_steps(writer)
        others_en, others_zh = _proof_notes(uncovered_count)
    else:
        steps_en, steps_zh = _stub_steps()
        others_en, others_zh = _redaction_notes(redacted_count)
    return f"""EVIDENCE PACKAGE {package_id}
========================================================================

What this is
------------
Body-camera recordings copied bit for bit from the evidence archive, with the
custody record (ledger) that shows when each was recorded, taken in, stored,
viewed and exported, and by whom.

  Exported at:   {created_at} (UTC)
  Exported by:   {actor}
  Reason given:  {reason}
  Exported from: API node {writer}, key fingerprint {exporter['fingerprint']}

Recordings (the id of a recording is the SHA-256 of its original file):
{recordings_en}

How to check it
---------------
1. With the evidence-daemon software:

     evidence-daemon verify-package THIS-FILE.zip

   It checks every file below and prints the key fingerprints it used.

2. By hand, after unzipping:
   a. Each original must hash to its id (the name of its folder):
        sha256sum {example}
   b. package.json lists every other file with its size and SHA-256;
      `sha256sum FILE` must print the same value.
   c. package.sig is the exporting node's Ed25519 signature over the exact
      bytes of package.json:
        base64 -d package.sig > package.sig.bin
        openssl pkeyutl -verify -pubin -inkey keys/{writer}.pub -rawin \\
            -in package.json -sigfile package.sig.bin
{steps_en}

Entries about other recordings
------------------------------
{others_en}

Key fingerprints
----------------
Compare these with the fingerprints your agency publishes for its stations
and API nodes. If one differs, do not trust this package.

{keys_list}

A key's fingerprint by hand:
  openssl pkey -pubin -in keys/{writer}.pub -outform DER | tail -c 32 \\
      | openssl dgst -sha256 -binary | base64
(the output, without the trailing "=", follows "SHA256:").


证据包 {package_id}
========================================================================

这是什么
--------
本证据包含从证据存储中逐位原样复制的执法记录仪音视频，以及保管链记录
（台账），记录了每个文件何时录制、导入、存储、被查看和导出，以及经办人。

  导出时间：  {created_at}（UTC）
  导出人：    {actor}
  导出理由：  {reason}
  导出节点：  API 节点 {writer}，密钥指纹 {exporter['fingerprint']}

录像（录像编号即原始文件的 SHA-256 值）：
{recordings_zh}

如何核验
--------
1. 使用 evidence-daemon 软件：

     evidence-daemon verify-package 本文件.zip

   该命令逐一核验下列全部文件，并显示所用密钥的指纹。

2. 解压后手工核验：
   a. 每个原始文件的 SHA-256 必须等于其编号（即所在文件夹名）：
        sha256sum {example}
   b. package.json 列出了其余每个文件的大小和 SHA-256，
      `sha256sum 文件名` 的结果必须一致。
   c. package.sig 是导出节点对 package.json 原始字节的 Ed25519 签名：
        base64 -d package.sig > package.sig.bin
        openssl pkeyutl -verify -pubin -inkey keys/{writer}.pub -rawin \\
            -in package.json -sigfile package.sig.bin
{steps_zh}

涉及其他录像的记录
------------------
{others_zh}

密钥指纹
--------
请与本单位公布的工作站和 API 节点密钥指纹核对。如有不符，请勿采信本证据包。

{keys_list}

手工计算密钥指纹：
  openssl pkey -pubin -in keys/{writer}.pub -outform DER | tail -c 32 \\
      | openssl dgst -sha256 -binary | base64
（输出去掉末尾的 "=" 后，即 "SHA256:" 之后的部分。）
"""


def _stub_steps() -> tuple[str, str]:
    """README steps d-e (English, Chinese) of a version-2 package: runs with stubs."""
    return ("""   d. Each file ledger/<writer>/<number>.json is one custody event, signed by
      its writer (the station or API node named in its path) with the key in
      keys/. Each event's "prev" is the SHA-256 of the one before, so none can
      be removed or changed without breaking the chain.
   e. A file ledger/<writer>/<number>.redacted.json is not signed: it stands
      for an entry about another recording, and holds only that entry's
      SHA-256 ("entry_hash") and its "prev". The next entry's "prev" must
      equal its "entry_hash".""",
            """   d. 每个 ledger/<写入方>/<序号>.json 文件是一条保管事件，由其写入方
      （路径中的工作站或 API 节点）用 keys/ 中的密钥签名。每条事件的
      "prev" 是前一条的 SHA-256，任何一条被删除或修改都会使链条断开。
   e. ledger/<写入方>/<序号>.redacted.json 文件没有签名：它代表一条涉及
      其他录像的记录，只含该记录的 SHA-256（"entry_hash"）及其 "prev"。
      下一条记录的 "prev" 必须等于它的 "entry_hash"。""")


def _proof_steps(exporter: str) -> tuple[str, str]:
    """README steps d-f (English, Chinese) of a version-3 package: inclusion proofs."""
    return (f"""   d. Each file ledger/<writer>/<number>.json is one custody event, signed by
      its writer (the station or API node named in its path) with the key in
      keys/. A writer's "key-registered" event names its role: stations sign
      acquisition, archival and viewing copies; API nodes sign views and
      exports. An event outside its writer's role does not count.
   e. A "checkpoint" event is its writer's signed summary of its whole chain
      at that moment: the number of events ("tree_size") and the root of a
      Merkle tree over their hashes ("root_hash", RFC 9162). Each file
      proofs/<writer>/<number>.json proves that event <number> is in that
      tree: start from SHA-256(0x00 || SHA-256 of the event's signed bytes),
      combine it with each hash of "audit_path" as RFC 9162 section 2.1.3.2
      says, and the result must be the checkpoint's "root_hash". The number
      of events comes from the signed checkpoint, never from the proof. The
      exporting node ({exporter}) signed a checkpoint of its own chain right
      after recording this export.
   f. A file checkpoints/<writer>/<number>.tsr, when present, is an RFC 3161
      timestamp from a time-stamping authority over that checkpoint's signed
      bytes; `evidence-daemon verify-package --tsa-cert TSA.pem` checks it.""",
            f"""   d. 每个 ledger/<写入方>/<序号>.json 文件是一条保管事件，由其写入方
      （路径中的工作站或 API 节点）用 keys/ 中的密钥签名。写入方的
      "key-registered" 事件载明其角色：工作站签署采集、归档和浏览副本事件；
      API 节点签署查看和导出事件。超出写入方角色的事件不予采信。
   e. "checkpoint"（检查点）事件是写入方对其整条链在当时状态的签名摘要：
      事件数（"tree_size"）以及各事件哈希构成的默克尔树的根（"root_hash"，
      RFC 9162）。每个 proofs/<写入方>/<序号>.json 文件证明第 <序号> 条
      事件在该树中：从 SHA-256(0x00 || 该事件签名字节的 SHA-256) 开始，
      按 RFC 9162 第 2.1.3.2 节依次与 "audit_path" 中的各哈希值合并，
      结果必须等于检查点的 "root_hash"。事件数取自经签名的检查点，
      绝不取自证明文件。导出节点（{exporter}）在记录本次导出后立即对其
      自身的链签署了检查点。
   f. checkpoints/<写入方>/<序号>.tsr 文件（如有）是时间戳服务机构对该
      检查点签名字节出具的 RFC 3161 可信时间戳；可用
      `evidence-daemon verify-package --tsa-cert TSA.pem` 核验。""")


def _proof_notes(uncovered: int) -> tuple[str, str]:
    """README paragraphs (English, Chinese) on what a version-3 package leaves out."""
    english = (
        "None are included. This package holds only the ledger events about its\n"
        "own recordings and its export, each with a proof of a few dozen hashes\n"
        "that it belongs to its writer's signed chain: nothing about any other\n"
        "case, however long the chain.")
    chinese = (
        "本证据包不含任何此类记录。它只收录与本包录像及本次导出有关的台账事件，\n"
        "每条附有数十个哈希值组成的证明，证明该事件属于其写入方经签名的链条；\n"
        "无论链条多长，均不涉及其他案件的任何内容。")
    if uncovered:
        english += (
            f"\n\n{uncovered} {'event was' if uncovered == 1 else 'events were'} written after "
            "the newest checkpoint of its\nwriter: the signature shows who wrote it, but no "
            "proof ties it to the\nwriter's chain yet. verify-package lists them.")
        chinese += (
            f"\n\n有 {uncovered} 条事件写于其写入方最新检查点之后：签名表明由谁写入，\n"
            "但尚无证明将其与写入方的链条关联。verify-package 会逐条列出。")
    return english, chinese


def _redaction_notes(count: int) -> tuple[str, str]:
    """README paragraphs (English, Chinese) on the entries shown only by their hashes."""
    if count == 0:
        return ("Every ledger entry in this package is included in full; none was\n"
                "redacted.",
                "本证据包中的每条台账记录均完整收录，没有隐去任何记录。")
    if count == 1:
        english = (
            "1 entry about another recording is shown only by its hash; the signed\n"
            "entries around it prove its place in the chain, and the exporting API\n"
            "node's signature on package.json vouches that it concerns no recording in\n"
            "this package. The agency can show the full entry from the archive to a\n"
            "court if asked. A hash cannot show or prove what the hidden entry says."
        )
    else:
        english = (
            f"{count} entries about other recordings are shown only by their hashes; the\n"
            "signed entries around them prove their place in the chain, and the\n"
            "exporting API node's signature on package.json vouches that they concern\n"
            "no recording in this package. The agency can show the full entries from\n"
            "the archive to a court if asked. A hash cannot show or prove what a\n"
            "hidden entry says."
        )
    it = "它" if count == 1 else "它们"
    chinese = (
        f"{count} 条涉及其他录像的台账记录仅以其哈希值显示；其前后经签名的\n"
        f"记录证明了{it}在链条中的位置，导出 API 节点对 package.json 的签名\n"
        f"担保{it}不涉及本证据包中的任何录像。如有需要，本单位可向法庭出示\n"
        "存档中的完整记录。哈希值本身无法显示或证明被隐去记录的内容。"
    )
    return english, chinese


# -- verification ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Member:
    size_bytes: int
    sha256: str
    data: bytes | None  # kept only for the small members that are parsed


def unsafe_member_name(name: str) -> str | None:
    """Why a member name is refused, or None. Names are never used as paths here, but a
    package carrying such a name is not one this software wrote, and unzip tools might."""
    if not name:
        return "empty name"
    if not name.isprintable():
        return "control characters in the name"
    if "\\" in name:
        return "backslash in the name"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path"
    if any(part in ("", ".") for part in parts[:-1]) or parts[-1] == ".":
        return "empty or '.' path component"
    return None


def _display(name: str) -> str:
    return name if name.isprintable() else ascii(name)


def _keeps_bytes(name: str) -> int | None:
    """How many bytes of this member to keep for parsing (None: stream-hash only)."""
    if name == PACKAGE_JSON:
        return MAX_PACKAGE_JSON_BYTES
    if name == PACKAGE_SIG or name.startswith((keys.KEYS_PREFIX, keys.LEDGER_PREFIX,
                                               PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX)):
        return MAX_SMALL_MEMBER_BYTES
    parsed = keys.parse_recording_key(name)
    if parsed is not None and parsed[1] == "manifest.json":
        return MAX_SMALL_MEMBER_BYTES
    return None


def _read_members(archive: zipfile.ZipFile, report: PackageReport) -> tuple[dict[str, _Member], set[str]]:
    """Hash every member once, in chunks; returns (readable members, names already reported)."""
    members: dict[str, _Member] = {}
    reported: set[str] = set()
    counts: dict[str, int] = defaultdict(int)
    for info in archive.infolist():
        counts[info.filename] += 1
    for info in archive.infolist():
        name = info.filename
        why = unsafe_member_name(name)
        refusal = (
            f"refused: {why}" if why
            else "appears more than once in the zip" if counts[name] > 1
            else "unexpected directory entry" if info.is_dir()
            else "encrypted" if info.flag_bits & 0x1
            else f"unsupported compression method {info.compress_type}"
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            else None
        )
        if refusal is not None:
            if name not in reported:
                report.problem(_display(name), refusal)
            reported.add(name)
            continue
        limit = _keeps_bytes(name)
        digest = hashlib.sha256()
        size_bytes = 0
        kept = bytearray() if limit is not None else None
        try:
            with archive.open(info) as stream:
                while chunk := stream.read(READ_CHUNK_BYTES):
                    digest.update(chunk)
                    size_bytes += len(chunk)
                    if kept is not None and limit is not None:
                        if size_bytes > limit:
                            raise ValueError(f"larger than {limit} bytes")
                        kept += chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                RuntimeError, NotImplementedError) as exc:
            report.problem(name, f"cannot be read from the zip ({exc}): damaged or altered")
            reported.add(name)
            continue
        members[name] = _Member(size_bytes, digest.hexdigest(),
                                bytes(kept) if kept is not None else None)
    report.files_checked = len(members)
    return members, reported


def verify_package(path: Path, *, trusted_fingerprints: Collection[str] = (),
                   tsa_trust: TsaTrust | None = None) -> PackageReport:
    """Check an evidence package using nothing but the zip itself.

    Every file listed in package.json is present with its size and SHA-256, nothing else is;
    package.sig verifies with the exporter's key in the package; ledger entries verify with
    their writers' keys and, with the redaction stubs between them, form contiguous,
    prev-linked runs that begin and end with an entry about the package; originals hash to
    their ids; manifests and viewing copies match verified ``archived``/``derived`` events;
    the ``exported`` event names exactly this package. With ``trusted_fingerprints``, every key in
    the package must be one of them. Raises ``UsageError`` only when the file cannot be read.

    Version 3 instead of runs: every ledger entry verifies with its writer's key and is proven
    by its inclusion proof against a signed checkpoint entry of that writer in the package
    (tree size and root from the checkpoint), or package.json says no checkpoint covers it
    yet (a warning: ``report.uncovered``; never for the exporter's own entries, which it
    checkpoints at export); writers sign only their role's events (``key-registered``); an
    RFC 3161 token over a checkpoint is checked against ``tsa_trust`` when given.
    """
    report = PackageReport(path=path, trusted_checked=bool(trusted_fingerprints))
    trusted = frozenset(normal_fingerprint(text) for text in trusted_fingerprints)
    try:
        archive = zipfile.ZipFile(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        report.problem(path.name, f"not a readable zip file ({exc})")
        return report
    with archive:
        members, reported = _read_members(archive, report)
    _PackageCheck(members, reported, report, trusted, tsa_trust).run()
    return report


@dataclass(frozen=True)
class _Link:
    """What the next entry's ``prev`` must equal, and the ledger file it comes from (None for
    the genesis value before a writer's first entry)."""

    entry_hash: str
    name: str | None = None
    redacted: bool = False


class _PackageCheck:
    """The checks of ``verify_package`` over members already read and hashed."""

    def __init__(self, members: dict[str, _Member], reported: set[str], report: PackageReport,
                 trusted: frozenset[str], tsa_trust: TsaTrust | None = None) -> None:
        self.tsa_trust = tsa_trust
        self.members = members
        self.reported = reported
        self.report = report
        self.trusted = trusted
        self.public_keys: dict[str, Ed25519PublicKey] = {}
        # verified entries that later checks rely on, by (writer, seq)
        self.entries: dict[tuple[str, int], dict[str, Any]] = {}
        self.listed: set[str] | None = None  # names package.json lists, once it was read

    def problem(self, subject: str, message: str, recording: str | None = None) -> None:
        self.report.problem(subject, message, recording)

    def unexpected(self, name: str, message: str, recording: str | None = None) -> None:
        """A file outside the layout. One that package.json does not list was reported as
        added already; one it lists was put there by the exporter, which is reported here."""
        if self.listed is None or name in self.listed:
            self.problem(name, message, recording)

    def run(self) -> None:
        package = self.package_json()
        self.check_listing(package)
        self.check_keys()
        self.check_signature(package)
        if self.proven_layout(package):
            self.check_proven_ledger(package)
        else:
            self.check_ledger(package)
        if package is not None:
            self.check_recordings(package)
            self.check_exported(package)

    # package.json ----------------------------------------------------------------------

    def package_json(self) -> dict[str, Any] | None:
        member = self.members.get(PACKAGE_JSON)
        if member is None:
            if PACKAGE_JSON not in self.reported:
                self.problem(PACKAGE_JSON, "missing: nothing says what the package should hold")
            return None
        assert member.data is not None
        try:
            document = json.loads(member.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.problem(PACKAGE_JSON, f"not valid JSON ({exc}): altered?")
            return None
        if not isinstance(document, dict):
            self.problem(PACKAGE_JSON, "not a JSON object: altered?")
            return None
        package: dict[str, Any] = document
        expected_types: dict[str, type | tuple[type, ...]] = {
            "format": str, "format_version": int, "package_id": str, "created_at": str,
            "exported_by": str, "reason": str, "exporter": dict, "exported_event": dict,
            "recordings": list, "files": list,
        }
        wrong = [name for name, kind in expected_types.items()
                 if not isinstance(package.get(name), kind)]
        if wrong:
            self.problem(PACKAGE_JSON, f"missing or malformed fields: {', '.join(wrong)}")
            return None
        if (package["format"] != FORMAT
                or package["format_version"] not in SUPPORTED_FORMAT_VERSIONS):
            self.problem(PACKAGE_JSON, f"unknown format {package['format']!r} version "
                         f"{package['format_version']!r}")
            return None
        report = self.report
        report.format_version = package["format_version"]
        report.package_id = package["package_id"]
        report.created_at = package["created_at"]
        report.exported_by = package["exported_by"]
        report.reason = package["reason"]
        exporter = package["exporter"].get("writer")
        report.exporter = exporter if isinstance(exporter, str) else None
        for item in package["recordings"]:
            recording = item.get("id") if isinstance(item, dict) else None
            if not isinstance(recording, str) or not re.fullmatch(r"[0-9a-f]{64}", recording):
                self.problem(PACKAGE_JSON, f"recording entry {item!r} has no valid id")
                continue
            report.recordings.append(recording)
        return package

    def check_listing(self, package: dict[str, Any] | None) -> None:
        listed: set[str] = set()
        for item in package["files"] if package is not None else ():
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                self.problem(PACKAGE_JSON, f"file entry {item!r} has no name")
                continue
            shown = _display(name)
            if name in listed or name in (PACKAGE_JSON, PACKAGE_SIG):
                self.problem(shown, "listed twice in package.json" if name in listed
                             else "must not be listed in package.json")
                continue
            listed.add(name)
            member = self.members.get(name)
            if member is None:
                if name not in self.reported:
                    self.problem(shown, "listed in package.json but missing from the zip")
                continue
            if (member.size_bytes, member.sha256) != (item.get("size_bytes"), item.get("sha256")):
                self.problem(shown, f"differs from package.json ({member.size_bytes} bytes, "
                             f"SHA-256 {member.sha256[:12]}…): changed after export")
        if package is None:
            return
        self.listed = listed
        for name in self.members:
            if name not in listed and name not in (PACKAGE_JSON, PACKAGE_SIG):
                self.problem(name, "not listed in package.json: added after export")

    # keys and signature ------------------------------------------------------------------

    def check_keys(self) -> None:
        for name, member in sorted(self.members.items()):
            if not name.startswith(keys.KEYS_PREFIX):
                continue
            writer = name[len(keys.KEYS_PREFIX):].removesuffix(".pub")
            try:
                expected = keys.public_key_key(writer)
            except ValueError:
                expected = ""
            if name != expected:
                self.unexpected(name, "unexpected file in keys/")
                continue
            assert member.data is not None
            try:
                public = load_public_pem(member.data, what="the file")
            except EvidenceError as exc:
                self.problem(name, exc.message)
                continue
            self.public_keys[writer] = public
            self.report.writers[writer] = fingerprint(public)
            if self.trusted and fingerprint(public) not in self.trusted:
                self.problem(name, f"key not trusted: fingerprint {fingerprint(public)} of writer "
                             f"{writer!r} is not one of the trusted fingerprints")

    def check_signature(self, package: dict[str, Any] | None) -> None:
        signature_member = self.members.get(PACKAGE_SIG)
        package_member = self.members.get(PACKAGE_JSON)
        if signature_member is None:
            if PACKAGE_SIG not in self.reported:
                self.problem(PACKAGE_SIG, "missing: package.json is not signed")
            return
        if package is None or package_member is None:
            return
        assert signature_member.data is not None and package_member.data is not None
        exporter = self.report.exporter
        key_name = f"{keys.KEYS_PREFIX}{exporter}.pub"
        public = self.public_keys.get(exporter or "")
        if public is None:
            self.problem(PACKAGE_SIG, f"cannot be checked: no valid public key {key_name} of "
                         "the exporting node")
            return
        claimed = package["exporter"].get("fingerprint")
        if claimed != fingerprint(public):
            self.problem(PACKAGE_JSON, f"names the exporter's key fingerprint {claimed!r}, but "
                         f"{key_name} has {fingerprint(public)}")
        try:
            signature = base64.b64decode(signature_member.data.strip(), validate=True)
        except (binascii.Error, ValueError):
            self.problem(PACKAGE_SIG, "not a base64 signature: altered")
            return
        if not signature_valid(public, signature, package_member.data):
            self.problem(PACKAGE_SIG, f"does not verify over package.json with {key_name}: "
                         "package.json or package.sig was changed after export")

    # ledger ------------------------------------------------------------------------------

    def check_ledger(self, package: dict[str, Any] | None) -> None:
        by_writer: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for name in self.members:
            if not name.startswith(keys.LEDGER_PREFIX):
                continue
            parsed = keys.parse_ledger_key(name) or parse_redacted_key(name)
            if parsed is None:
                self.unexpected(name, "unexpected file in ledger/")
                continue
            by_writer[parsed[0]].append((parsed[1], name))
        recordings = frozenset(self.report.recordings)
        described = package["exported_event"] if package is not None else {}
        exported_writer, exported_seq = described.get("writer"), described.get("seq")
        # A malformed exported_event is reported by check_exported.
        exported = ((exported_writer, exported_seq) if isinstance(exported_writer, str)
                    and isinstance(exported_seq, int) else None)

        def relevant(entry: Mapping[str, Any]) -> bool | None:
            """None when package.json does not say what the package is about."""
            return None if package is None else is_relevant(entry, recordings, exported)

        for writer, items in sorted(by_writer.items()):
            self.check_run(writer, self.one_per_seq(writer, sorted(items)), relevant)
        for writer in sorted(set(self.public_keys) - set(by_writer)):
            self.problem(keys.public_key_key(writer), "a key without any ledger entry")

    def one_per_seq(self, writer: str, items: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """``items`` (sorted) with each seq once: a later file of the same seq (the stub
        beside a full entry) is reported and left out of the run."""
        run: list[tuple[int, str]] = []
        for seq, name in items:
            if run and run[-1][0] == seq:
                self.problem(name, f"entry {seq} of writer {writer!r} is also in {run[-1][1]}: "
                             "an entry is either in full or redacted, never both")
                continue
            run.append((seq, name))
        return run

    def check_run(self, writer: str, run: list[tuple[int, str]],
                  relevant: Callable[[Mapping[str, Any]], bool | None]) -> None:
        public = self.public_keys.get(writer)
        if public is None:
            self.problem(keys.public_key_key(writer), f"missing or invalid: the {len(run)} "
                         f"ledger entries of writer {writer!r} cannot be checked")
        self.report.redacted[writer] = 0
        expected_seq = run[0][0]
        previous: _Link | None = _Link(canonical.GENESIS_PREV) if expected_seq == 1 else None
        for index, (seq, name) in enumerate(run):
            self.report.entries_checked += 1
            if seq != expected_seq:
                self.problem(name, f"entries {expected_seq}..{seq - 1} of writer {writer!r} are "
                             "missing: the run is not contiguous")
                previous = None
            expected_seq = seq + 1
            end = "begins" if index == 0 else "ends" if index == len(run) - 1 else None
            if name.endswith(REDACTED_SUFFIX):
                self.report.redacted[writer] += 1
                if end is not None:
                    self.problem(name, f"the run of writer {writer!r} {end} with a redacted "
                                 "entry: a run begins and ends with a signed entry in full")
                previous = self.check_stub(writer, seq, name, previous)
                continue
            previous, entry = self.check_entry(writer, seq, name, public, previous)
            if end is not None and entry is not None and relevant(entry) is False:
                self.problem(name, f"the run of writer {writer!r} {end} with an entry about no "
                             "recording of this package: it should not be in the package")

    def check_stub(self, writer: str, seq: int, name: str, previous: _Link | None) -> _Link | None:
        """A redaction stub: well-formed, and linked to what comes before. Whether its
        entry_hash is right, only the entry after it can tell (``check_entry``)."""
        data = self.members[name].data
        assert data is not None
        try:
            stub = parse_stub(data)
        except ValueError as exc:
            self.problem(name, f"not a valid redaction stub ({exc}): altered")
            return None
        if stub["seq"] != seq or stub["writer"] != writer:
            self.problem(name, "seq or writer inside does not match its file name")
        elif previous is not None and stub["prev"] != previous.entry_hash:
            before = (f"the entry_hash of {previous.name}: one of the two stubs was altered"
                      if previous.redacted
                      else "the hash of the entry before: the stub was altered"
                      if previous.name is not None
                      else "64 zeros, as for a writer's first entry: the stub was altered")
            self.problem(name, f"prev is not {before}")
        return _Link(stub["entry_hash"], name, redacted=True)

    def check_entry(self, writer: str, seq: int, name: str, public: Ed25519PublicKey | None,
                    previous: _Link | None) -> tuple[_Link | None, dict[str, Any] | None]:
        """A full entry: signature, place, link to what comes before. Returns its link and the
        entry (None, None when it cannot be parsed)."""
        data = self.members[name].data
        assert data is not None
        read = chain.read_entry(writer, seq, data, public,
                                key_note=f" (keys/{writer}.pub)")
        if read.raw is None:
            self.problem(name, read.problems[0].message)
            return None, None
        # The core names the entry by its archive key, which is its name in the package too.
        for problem in read.problems:
            self.problem(name, problem.message, read.recording)
        head = Head(seq - 1, previous.entry_hash if previous is not None else None)
        link = chain.link_problems(read, head)
        verified = read.signed and not read.problems
        if link:
            if previous is not None and previous.redacted and read.signed:
                # The signed prev is right, so the stub before claims a wrong entry_hash.
                self.problem(previous.name or name, f"entry_hash is not the prev of the signed "
                             f"entry {name} after it: the stub was altered")
            else:
                for problem in link:
                    self.problem(name, problem.message, read.recording)
                verified = False
        entry = read.entry
        if verified and entry is not None and entry["event"] in ("archived", "derived", "exported"):
            self.entries[(writer, seq)] = dict(entry)
        return _Link(read.entry_hash, name), read.raw

    # ledger, version 3: entries proven against checkpoints -------------------------------

    def proven_layout(self, package: dict[str, Any] | None) -> bool:
        """Version 3; without a readable package.json, judged by its members."""
        if package is not None:
            return bool(package["format_version"] == 3)
        return any(name.startswith((PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX))
                   for name in self.members)

    def declared_uncovered(self, package: dict[str, Any] | None) -> dict[str, frozenset[int]]:
        """Per writer, the entries package.json says no checkpoint covers (signed by the
        exporter; a covered entry declared so is caught by ``check_writer_proofs``)."""
        declared: dict[str, frozenset[int]] = {}
        for item in package.get("ledger", []) if package is not None else ():
            writer = item.get("writer") if isinstance(item, dict) else None
            uncovered = item.get("uncovered") if isinstance(item, dict) else None
            if not isinstance(writer, str) or not isinstance(uncovered, list) or not all(
                    type(seq) is int for seq in uncovered):
                self.problem(PACKAGE_JSON, f"ledger item {str(item)[:80]!r} does not name a "
                             "writer and its uncovered entries")
                continue
            declared[writer] = frozenset(uncovered)
        return declared

    def check_proven_ledger(self, package: dict[str, Any] | None) -> None:
        entries: dict[str, dict[int, str]] = defaultdict(dict)
        proofs: dict[str, dict[int, str]] = defaultdict(dict)
        stamps: dict[str, dict[int, str]] = defaultdict(dict)
        for name in self.members:
            for prefix, parse, found, what in (
                    (keys.LEDGER_PREFIX, keys.parse_ledger_key, entries, "ledger/"),
                    (PROOFS_PREFIX, parse_proof_name, proofs, "proofs/"),
                    (keys.CHECKPOINTS_PREFIX, keys.parse_timestamp_key, stamps, "checkpoints/")):
                if name.startswith(prefix):
                    parsed = parse(name)
                    if parsed is None:
                        self.unexpected(name, f"unexpected file in {what}")
                    else:
                        found[parsed[0]][parsed[1]] = name
        declared = self.declared_uncovered(package)
        for writer in sorted(set(entries) | set(proofs) | set(stamps)):
            self.check_writer_proofs(writer, entries[writer], proofs[writer], stamps[writer],
                                     declared.get(writer, frozenset()))
        for writer in sorted(set(self.public_keys) - set(entries)):
            self.problem(keys.public_key_key(writer), "a key without any ledger entry")

    def check_writer_proofs(self, writer: str, entry_names: Mapping[int, str],
                            proof_names: Mapping[int, str], stamp_names: Mapping[int, str],
                            uncovered: frozenset[int]) -> None:
        public = self.public_keys.get(writer)
        key_name = keys.public_key_key(writer)
        if public is None:
            self.problem(key_name, f"missing or invalid: the {len(entry_names)} ledger entries "
                         f"of writer {writer!r} cannot be checked")
        read: dict[int, chain.ReadEntry] = {}
        for seq, name in sorted(entry_names.items()):
            self.report.entries_checked += 1
            data = self.members[name].data
            assert data is not None
            read[seq] = chain.read_entry(writer, seq, data, public, key_note=f" ({key_name})")
            for problem in read[seq].problems:
                self.problem(name, problem.message, read[seq].recording)

        def sound(seq: int) -> chain.Entry | None:
            item = read.get(seq)
            return item.entry if item is not None and item.signed and not item.problems else None

        heads: dict[int, SignedTreeHead] = {}
        for seq in read:
            entry = sound(seq)
            if entry is None or entry["event"] != Event.CHECKPOINT:
                continue
            try:
                heads[seq] = tree_head_of(entry)
            except ValueError as exc:
                self.problem(entry_names[seq], f"not a valid checkpoint: {exc}")
                continue
            head = heads[seq]
            named = read.get(head.tree_size)
            if named is not None and named.entry_hash != head.head_hash:
                self.problem(entry_names[head.tree_size], f"is not the entry {head.tree_size} "
                             f"that checkpoint {entry_names[seq]} signs (head_hash)")

        proven: set[int] = set()
        for seq, name in sorted(proof_names.items()):
            data = self.members[name].data
            assert data is not None
            try:
                proof = parse_proof(data)
            except ValueError as exc:
                self.problem(name, f"not a valid inclusion proof ({exc}): altered")
                continue
            if (proof.writer, proof.seq) != (writer, seq):
                self.problem(name, "writer or seq inside does not match its file name")
                continue
            if seq not in read:
                if keys.ledger_key(writer, seq) not in self.reported:
                    self.problem(name, f"proves entry {seq} of writer {writer!r}, which is not "
                                 f"in the package ({keys.ledger_key(writer, seq)} is missing)")
                continue
            against = heads.get(proof.checkpoint_seq)
            if against is None:
                self.problem(name, f"is against checkpoint {proof.checkpoint_seq} of writer "
                             f"{writer!r}, which is not a verified checkpoint entry in the "
                             f"package ({entry_names[seq]} is not proven)")
                continue
            why = inclusion_problem(read[seq].entry_hash, proof, against)
            if why is not None:
                self.problem(name, f"{why} ({entry_names[seq]})", read[seq].recording)
                continue
            proven.add(seq)

        exporter = writer == self.report.exporter
        counted: list[chain.Entry] = []
        for seq, name in sorted(entry_names.items()):
            entry = sound(seq)
            covering = [head.seq for head in heads.values() if seq <= head.tree_size]
            if seq in heads or seq in proven:
                pass  # a checkpoint rests on its signature; a proven entry on its proof too
            elif seq in proof_names:
                continue  # its proof's problem was reported
            elif seq not in uncovered:
                self.problem(name, "no inclusion proof in proofs/, and package.json does not "
                             "say it is after its writer's newest checkpoint", read[seq].recording)
                continue
            elif covering:
                self.problem(name, f"package.json says no checkpoint covers it, but checkpoint "
                             f"{covering[-1]} in the package does: its inclusion proof was "
                             "removed", read[seq].recording)
                continue
            elif exporter:
                self.problem(name, "an entry of the exporting node without a proof: the "
                             "exporter checkpoints its own chain when it exports",
                             read[seq].recording)
                continue
            elif entry is not None:
                self.report.uncovered.append(name)
            if entry is not None:
                counted.append(entry)
        for seq in sorted(uncovered - set(entry_names)):
            self.problem(PACKAGE_JSON, f"says entry {seq} of writer {writer!r} is in the "
                         "package without a proof, but it is not")

        self.check_timestamps(writer, read, heads, stamp_names)
        self.report.proven[writer] = len(proven)
        if heads:
            newest = heads[max(heads)]
            self.report.checkpoints[writer] = (f"checkpoint #{newest.seq} over entries "
                                               f"1..{newest.tree_size}")
        if public is not None:
            self.judge_roles(writer, fingerprint(public), counted)

    def check_timestamps(self, writer: str, read: Mapping[int, chain.ReadEntry],
                         heads: Mapping[int, SignedTreeHead],
                         stamp_names: Mapping[int, str]) -> None:
        for seq, name in sorted(stamp_names.items()):
            entry = read[seq].entry if seq in heads else None
            if entry is None:
                self.problem(name, f"a timestamp of entry {seq} of writer {writer!r}, which is "
                             "not a verified checkpoint in the package")
                continue
            if self.tsa_trust is None:
                self.report.timestamps_unchecked.append(name)
                continue
            data = self.members[name].data
            assert data is not None
            try:
                stamped = verify_timestamp(data, canonical.canonical_bytes(entry), self.tsa_trust)
            except IntegrityError as exc:
                self.problem(name, f"{exc.message} (over {keys.ledger_key(writer, seq)})")
                continue
            self.report.timestamps[name] = (f"{keys.ledger_key(writer, seq)} existed at "
                                            f"{stamped.time.isoformat()} (TSA {stamped.tsa})")

    def judge_roles(self, writer: str, key_fingerprint: str,
                    counted: Sequence[chain.Entry]) -> None:
        """Who may sign what (``chain.judge_writer``); what counts for the recordings' checks:
        entries in the writer's role, from a trusted key when trust anchors were given."""
        judgement = chain.judge_writer(writer, key_fingerprint, counted, None)
        for problem in judgement.problems:
            if problem.kind is not ProblemKind.UNTRUSTED:  # check_keys reported it
                self.problem(problem.subject, problem.message, problem.recording)
        role = f"role {judgement.role}" if judgement.role is not None else "role unknown"
        self.report.roles[writer] = role + (", registered" if judgement.registered
                                            else ", inferred from its events")
        if self.trusted and key_fingerprint not in self.trusted:
            return
        for entry in counted:
            if entry["seq"] in judgement.counts and entry["event"] in (
                    Event.ARCHIVED, Event.DERIVED, Event.EXPORTED):
                self.entries[(writer, entry["seq"])] = dict(entry)

    def verified_events(self, event: str, recording: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries.values()
                if entry["event"] == event and entry["recording"] == recording]

    # recordings --------------------------------------------------------------------------

    def check_recordings(self, package: dict[str, Any]) -> None:
        wanted = set(self.report.recordings)
        names: dict[str, list[str]] = defaultdict(list)
        for name in self.members:
            if not name.startswith(keys.RECORDINGS_PREFIX):
                proven = ((PROOFS_PREFIX, keys.CHECKPOINTS_PREFIX)
                          if self.proven_layout(package) else ())
                if not name.startswith((keys.LEDGER_PREFIX, keys.KEYS_PREFIX, *proven)) and (
                        name not in (README_NAME, PACKAGE_JSON, PACKAGE_SIG)):
                    self.unexpected(name, "unexpected file: not part of the package layout")
                continue
            parsed = keys.parse_recording_key(name)
            if parsed is None or parsed[0] not in wanted:
                self.unexpected(name, "unexpected file: not a recording named in package.json")
                continue
            names[parsed[0]].append(parsed[1])
        for recording in self.report.recordings:
            self.check_recording(recording, sorted(names.get(recording, [])))

    def check_recording(self, recording: str, names: list[str]) -> None:
        def problem(subject: str, message: str) -> None:
            self.problem(subject, message, recording)

        prefix = keys.recording_prefix(recording)
        originals = [name for name in names if keys.is_original_name(name)]
        if len(originals) != 1:
            unreadable = any(name.startswith(prefix) and keys.is_original_name(name[len(prefix):])
                             for name in self.reported)
            if not unreadable:  # else that member's problem says it already
                problem(prefix, "no original in the package" if not originals
                        else f"several originals: {originals}")
            return
        original_key = prefix + originals[0]
        original = self.members[original_key]
        if original.sha256 != recording:
            problem(original_key, f"SHA-256 is {original.sha256[:12]}…, not the recording id: "
                    "the original was changed")

        manifest_key = keys.manifest_key(recording)
        manifest_member = self.members.get(manifest_key)
        if manifest_member is None:
            if manifest_key not in self.reported:
                problem(manifest_key, "missing from the package")
        else:
            assert manifest_member.data is not None
            archived = self.verified_events("archived", recording)
            if not archived:
                problem(prefix, "no verified 'archived' event for this recording in ledger/")
            elif all(entry["details"].get("manifest_sha256") != manifest_member.sha256
                     for entry in archived):
                problem(manifest_key, "its SHA-256 is not the manifest_sha256 of the verified "
                        "'archived' event: the manifest was changed")
            try:
                manifest = json.loads(manifest_member.data)
                facts = (manifest["sha256"], manifest["size_bytes"], manifest["original_key"])
            except (ValueError, KeyError, TypeError):
                problem(manifest_key, "not valid JSON with sha256, size_bytes, original_key")
            else:
                if facts != (recording, original.size_bytes, original_key):
                    problem(manifest_key, "does not describe the original (sha256, size_bytes "
                            "or original_key differ)")

        derived = self.verified_events("derived", recording)
        for name in names:
            key = prefix + name
            if keys.is_original_name(name) or name == "manifest.json":
                continue
            if name not in DERIVED_NAMES:
                self.unexpected(key, "unexpected file in the recording's folder", recording)
                continue
            part = "poster" if name == "poster.jpg" else "proxy"
            recorded = {
                described.get("sha256") for entry in derived
                if isinstance(described := entry["details"].get(part), dict)
                and described.get("key") == key
            }
            if not recorded:
                problem(key, "no verified 'derived' event in ledger/ describes this viewing copy")
            elif self.members[key].sha256 not in recorded:
                problem(key, f"SHA-256 is {self.members[key].sha256[:12]}…, not the one its "
                        "'derived' event recorded: the viewing copy was changed")

    # the exported event ------------------------------------------------------------------

    def check_exported(self, package: dict[str, Any]) -> None:
        described = package["exported_event"]
        writer, seq = described.get("writer"), described.get("seq")
        if not isinstance(writer, str) or not isinstance(seq, int) or seq < 1:
            self.problem(PACKAGE_JSON, "exported_event does not name a writer and seq")
            return
        try:
            name = keys.ledger_key(writer, seq)
        except ValueError:
            self.problem(PACKAGE_JSON, f"exported_event names an invalid writer {writer!r}")
            return
        entry = self.entries.get((writer, seq))
        if entry is None or entry["event"] != "exported":
            if name not in self.reported:
                self.problem(name, "the 'exported' event of this package is missing or does "
                             "not verify")
            return
        details = entry["details"]
        if writer != self.report.exporter:
            self.problem(name, f"the 'exported' event was written by {writer!r}, not by the "
                         f"exporting node {self.report.exporter!r}")
        if details.get("package_id") != self.report.package_id:
            self.problem(name, "the 'exported' event names another package_id")
        listed = details.get("recordings")
        if not isinstance(listed, list) or sorted(map(str, listed)) != sorted(self.report.recordings):
            self.problem(name, "the 'exported' event lists other recordings than the package")
        if details.get("reason") != package["reason"]:
            self.problem(name, "the 'exported' event gives another reason than package.json")


# -- output for the CLI ------------------------------------------------------------------

def format_package_report(report: PackageReport) -> list[str]:
    """The lines ``evidence-daemon verify-package`` prints (exit 0 when ``report.ok``, else 7)."""
    lines: list[str] = []
    if report.package_id is not None:
        lines.append(f"evidence package {report.package_id}: exported {report.created_at} by "
                     f"{report.exported_by} on {report.exporter}")
        lines.append(f"reason: {report.reason}")
    proven = report.format_version == 3
    for writer, key_fingerprint in sorted(report.writers.items()):
        if proven:
            against = report.checkpoints.get(writer)
            lines.append(f"ledger writer {writer}: key {key_fingerprint}, "
                         f"{report.roles.get(writer, 'role unknown')}; "
                         + (f"{report.proven.get(writer, 0)} entries proven against its {against}"
                            if against else "no checkpoint in the package"))
            continue
        count = report.redacted.get(writer, 0)
        redacted = (f", {count} {'entry' if count == 1 else 'entries'} about other recordings "
                    "redacted" if count else "")
        lines.append(f"ledger writer {writer}: key {key_fingerprint}{redacted}")
    for recording in report.recordings:
        lines.append(f"recording {recording}")
    redacted_total = sum(report.redacted.values())
    if redacted_total:
        are = "entry is" if redacted_total == 1 else "entries are"
        lines.append(f"{redacted_total} ledger {are} shown only by hash: the chain proves where "
                     "they stand, not what they say; that they concern no recording here rests "
                     "on the exporter's signature")
    for name in report.uncovered:
        lines.append(f"WARNING {name}: not covered by a checkpoint (consistency with the chain "
                     "not proven); only its writer's signature vouches for it")
    for name, stated in sorted(report.timestamps.items()):
        lines.append(f"timestamp {name}: {stated}")
    for name in report.timestamps_unchecked:
        lines.append(f"timestamp {name} not checked: give --tsa-cert FILE (the TSA's "
                     "certificates) to check it")
    for problem in report.problems:
        lines.append(f"FAIL {problem}")
    if not report.trusted_checked and report.writers:
        lines.append("keys were not compared with trusted fingerprints: compare the ones above "
                     "with those your agency publishes")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    how = (f"{sum(report.proven.values())} proven, {len(report.uncovered)} not covered by a "
           "checkpoint" if proven else f"{redacted_total} redacted")
    lines.append(f"checked {report.files_checked} file(s), {len(report.recordings)} recording(s) "
                 f"and {report.entries_checked} ledger entries ({how}) "
                 f"from {len(report.writers)} "
                 f"writer(s) in {report.path.name}: {verdict}")
    return lines
