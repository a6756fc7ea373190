"""When checkpoints are signed, stamped and witnessed, and the checkpoint an auditor saves.

- ``Checkpointer.checkpoint()`` has the writer sign the tree head of its own chain
  (``LedgerWriter.checkpoint``) and, with ``[timestamp] url``, gets an RFC 3161 token over the
  checkpoint entry's canonical bytes (what its signature covers), stored at
  ``checkpoints/<writer>/<seq>.tsr``. A time-stamping authority that fails is logged and
  counted; it never stops the checkpoint, an ingest or an access.
- ``Checkpointer.witness()`` records the latest checkpoints of the other writers (stations
  read them from the archive with ``latest_checkpoints``; API nodes take them from their
  catalog, which reads every entry anyway).
- ``saved_checkpoint`` bundles the latest checkpoint entry of every writer, as stored, into
  the JSON an auditor keeps (``evidence-daemon checkpoint --out FILE``); ``read_saved`` turns
  such a file back into the ``SeenCheckpoint``s ``verify --checkpoint`` compares the archive
  with. The format is ``/work/checkpoint-format.md``'s (docs/architecture.md, "Checkpoints").

What this module must never do: witness a checkpoint whose signature does not check with the
writer's key in the archive, store a token that did not verify (``timestamp.py`` refuses it),
or let trusted time decide whether evidence is archived.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..archive import keys
from ..archive.base import ArchiveStore
from ..config import TimestampConfig
from ..errors import ConfigError, EvidenceError, ObjectMissingError
from . import canonical
from .chain import Event, SeenCheckpoint, checkpoint_seen, read_entry
from .ledger import LedgerWriter
from ..clock import Clock, format_time, utc_now
from .signing import fingerprint, load_public_pem, signature_valid
from .timestamp import TsaTrust, load_tsa_trust, request_timestamp
from ..i18n import _

log = logging.getLogger(__name__)

SAVED_FORMAT = "evidence-checkpoint/1"


class CheckpointMetrics(Protocol):
    """What a checkpointer reports (station and API metrics implement it)."""

    def checkpoint_signed(self) -> None: ...

    def timestamp_failed(self) -> None: ...


@dataclass(frozen=True)
class Stamping:
    """Where tokens come from: ``[timestamp] url`` and the trust they must chain to."""

    url: str
    trust: TsaTrust
    timeout_s: float

    @classmethod
    def from_config(cls, config: TimestampConfig) -> Stamping | None:
        """None when trusted time is off (no url)."""
        if not config.url:
            return None
        if config.tsa_cert_file is None:
            raise ConfigError(_("timestamp.tsa_cert_file: required when timestamp.url is set"))
        return cls(config.url, load_tsa_trust(config.tsa_cert_file), config.timeout_s)


class Checkpointer:
    """Signs, stamps and witnesses checkpoints for one writer."""

    def __init__(self, ledger: LedgerWriter, *, actor: str, stamping: Stamping | None = None,
                 metrics: CheckpointMetrics | None = None) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.actor = actor
        self.stamping = stamping
        self.metrics = metrics
        # writer -> last seq of its chain read while looking for checkpoints: a writer that
        # signs none (an older version) is not read again from its start every hour
        self._scanned: dict[str, int] = {}

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign a checkpoint when anything was appended since the last one (then stamp it).

        ``IntegrityError`` when the chain's end is gone from the archive, ``StorageError``
        when the archive cannot be reached: nothing was signed."""
        entry = self.ledger.checkpoint(actor=self.actor)
        if entry is None:
            return None
        log.info("ledger %s: checkpoint %d signed (tree of %d entries)", self.ledger.writer,
                 entry["seq"], entry["details"]["tree_size"])
        if self.metrics is not None:
            self.metrics.checkpoint_signed()
        if self.stamping is not None:
            self.stamp(entry)
        return entry

    def stamp(self, entry: dict[str, Any]) -> bool:
        """Get and store a token for a checkpoint entry; False (logged, counted) on failure."""
        assert self.stamping is not None
        key = keys.timestamp_key(self.ledger.writer, int(entry["seq"]))
        try:
            token, stamped = request_timestamp(
                canonical.canonical_bytes(entry), url=self.stamping.url,
                trust=self.stamping.trust, timeout_s=self.stamping.timeout_s)
            self.store.put_bytes(key, token, content_type="application/timestamp-reply")
        except EvidenceError as exc:
            log.error(_("ledger %s: checkpoint %d has no trusted timestamp (%s); the next "
                        "checkpoint asks again"), self.ledger.writer, entry["seq"], exc.message)
            if self.metrics is not None:
                self.metrics.timestamp_failed()
            return False
        log.info("ledger %s: checkpoint %d stamped %s by %s", self.ledger.writer, entry["seq"],
                 stamped.time.isoformat(), stamped.tsa)
        return True

    def witness(self, seen: Iterable[SeenCheckpoint]) -> int:
        """Record each checkpoint newer than the one this writer last witnessed of its writer;
        how many were recorded."""
        recorded = 0
        for item in seen:
            if self.ledger.witness(item, actor=self.actor) is not None:
                recorded += 1
        return recorded

    def witness_archive(self) -> int:
        """Witness the latest checkpoint of every other writer, read from the archive."""
        return self.witness(latest_checkpoints(self.store, skip=self.ledger.writer,
                                               after=self.ledger.witnessed(),
                                               scanned=self._scanned))

    def start(self) -> None:
        """At a writer's start: witness the others, then sign a checkpoint over that."""
        self.witness_archive()
        self.checkpoint()


# -- reading checkpoints from the archive -----------------------------------------------------


def writers_in(store: ArchiveStore) -> list[str]:
    """Writers with a published key (``keys/<writer>.pub``)."""
    found = []
    for key in store.list_keys(keys.KEYS_PREFIX):
        name = key.removeprefix(keys.KEYS_PREFIX)
        if name.endswith(".pub") and keys.is_writer(name[:-4]):
            found.append(name[:-4])
    return sorted(found)


@dataclass(frozen=True)
class StoredCheckpoint:
    """A writer's checkpoint entry as stored, checked with the writer's key."""

    writer: str
    seq: int
    data: bytes  # the stored object
    entry: dict[str, Any]
    fingerprint: str
    seen: SeenCheckpoint


def latest_checkpoint(store: ArchiveStore, writer: str, *, after: int = 0,
                      witness: str = "", scanned: dict[str, int] | None = None,
                      ) -> StoredCheckpoint | None:
    """The newest checkpoint entry of ``writer`` after seq ``after`` whose signature checks
    with the writer's key in the archive; None when there is none (or no key). Costs one
    listing from ``after`` on and reading entries back from the end to the checkpoint.
    ``scanned`` (writer -> last seq read) lets a caller that asks again skip what it read."""
    after = max(after, (scanned or {}).get(writer, 0))
    try:
        public = load_public_pem(store.get_bytes(keys.public_key_key(writer)),
                                 what=keys.public_key_key(writer))
    except EvidenceError:
        return None
    start_after = keys.ledger_key(writer, after) if after else ""
    listed = sorted(parsed[1] for key in store.list_keys(keys.ledger_prefix(writer),
                                                         start_after=start_after)
                    if (parsed := keys.parse_ledger_key(key)) is not None and parsed[1] > after)
    if scanned is not None and listed:
        scanned[writer] = listed[-1]
    for seq in reversed(listed):
        try:
            data = store.get_bytes(keys.ledger_key(writer, seq))
        except ObjectMissingError:
            continue
        read = read_entry(writer, seq, data, public)
        if read.entry is None or read.problems or read.entry["event"] != Event.CHECKPOINT:
            continue
        seen = checkpoint_seen(writer, seq, read.entry_hash, read.entry["details"],
                               witness=witness or f"writer {writer}",
                               fingerprint=fingerprint(public))
        if seen is not None:
            return StoredCheckpoint(writer, seq, data, dict(read.entry), fingerprint(public), seen)
    return None


def latest_checkpoints(store: ArchiveStore, *, skip: str | None = None,
                       after: dict[str, int] | None = None,
                       scanned: dict[str, int] | None = None) -> list[SeenCheckpoint]:
    """The newest checkpoint of every writer but ``skip`` newer than ``after[writer]``."""
    found = []
    for writer in writers_in(store):
        if writer == skip:
            continue
        stored = latest_checkpoint(store, writer, after=(after or {}).get(writer, 0),
                                   scanned=scanned)
        if stored is not None:
            found.append(stored.seen)
    return found


# -- the checkpoint an auditor saves ----------------------------------------------------------


@dataclass(frozen=True)
class SavedCheckpoint:
    document: dict[str, Any]
    checkpoints: list[StoredCheckpoint]
    without: list[str]  # writers that have no checkpoint yet


def saved_checkpoint(store: ArchiveStore, *, made_by: str,
                     signing_key: Ed25519PrivateKey | None, clock: Clock = utc_now,
                     ) -> SavedCheckpoint:
    """The latest checkpoint entry of every writer, as stored, bundled and (with a key)
    signed over its canonical JSON without ``sig``."""
    found: list[StoredCheckpoint] = []
    without: list[str] = []
    for writer in writers_in(store):
        stored = latest_checkpoint(store, writer)
        if stored is None:
            without.append(writer)
        else:
            found.append(stored)
    document: dict[str, Any] = {
        "format": SAVED_FORMAT,
        "made_at": format_time(clock()),
        "made_by": made_by,
        "writers": {item.writer: {"checkpoint": json.loads(item.data),
                                  "fingerprint": item.fingerprint} for item in found},
    }
    signature = (base64.b64encode(signing_key.sign(canonical.canonical_json(document)))
                 .decode("ascii") if signing_key is not None else None)
    document["sig"] = signature
    return SavedCheckpoint(document, found, without)


@dataclass(frozen=True)
class ReadSaved:
    """A saved checkpoint file, read back: what it says was seen, and whether its own
    signature could be checked."""

    made_at: str
    made_by: str
    seen: list[SeenCheckpoint]
    signature_note: str


def read_saved(path: Path, store: ArchiveStore) -> ReadSaved:
    """Parse a saved checkpoint; ``ConfigError`` for a file that is not one. The file's own
    signature is checked with its maker's key in the archive when there is one; an altered
    file is an ``IntegrityError`` raised by the caller from ``signature_note``."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(_("--checkpoint: cannot read {path}: {strerror}").format(
            path=path, strerror=exc.strerror)) from exc
    except (ValueError, RecursionError):
        raise ConfigError(_("--checkpoint: {path} is not JSON").format(path=path)) from None
    if not isinstance(document, dict) or document.get("format") != SAVED_FORMAT:
        raise ConfigError(_("--checkpoint: {path} is not a saved checkpoint ({SAVED_FORMAT})").format(
            path=path, SAVED_FORMAT=SAVED_FORMAT))
    writers = document.get("writers")
    made_at, made_by = str(document.get("made_at")), str(document.get("made_by"))
    if not isinstance(writers, dict):
        raise ConfigError(_("--checkpoint: {path} lists no writers").format(path=path))
    seen: list[SeenCheckpoint] = []
    witness = f"the checkpoint saved {made_at} by {made_by} ({path.name})"
    for writer, item in sorted(writers.items()):
        entry = item.get("checkpoint") if isinstance(item, dict) else None
        try:
            data = canonical.canonical_json(entry) if isinstance(entry, dict) else b""
            body, _signature = canonical.parse_stored(data)
        except ValueError:
            raise ConfigError(_("--checkpoint: {path}: the entry of writer {writer} is not a "
                                "signed ledger entry").format(path=path, writer=writer)) from None
        checkpoint = (checkpoint_seen(writer, int(body["seq"]), canonical.entry_hash(body),
                                      body["details"], witness=witness,
                                      fingerprint=_text(item.get("fingerprint")))
                      if keys.is_writer(writer) and isinstance(body.get("seq"), int)
                      and body.get("writer") == writer and isinstance(body.get("details"), dict)
                      else None)
        if checkpoint is None:
            raise ConfigError(_("--checkpoint: {path}: the entry of writer {writer} is not a "
                                "checkpoint").format(path=path, writer=writer))
        seen.append(checkpoint)
    return ReadSaved(made_at, made_by, seen, _signature_note(document, store))


def _signature_note(document: dict[str, Any], store: ArchiveStore) -> str:
    signature = document.get("sig")
    made_by = str(document.get("made_by"))
    if not isinstance(signature, str):
        return "unsigned (made by a machine without a writer key; its entries are signed)"
    writer = made_by.partition(":")[2]
    if not keys.is_writer(writer):
        return f"signed by {made_by}, whose key cannot be looked up"
    try:
        public = load_public_pem(store.get_bytes(keys.public_key_key(writer)),
                                 what=keys.public_key_key(writer))
        raw = base64.b64decode(signature, validate=True)
    except (EvidenceError, ValueError):
        return f"signed by {made_by}, whose key is not in the archive: signature not checked"
    body = {name: value for name, value in document.items() if name != "sig"}
    if signature_valid(public, raw, canonical.canonical_json(body)):
        return f"signed by {made_by} (key {fingerprint(public)}): signature checks"
    return f"ALTERED: its signature does not check with the key of {made_by}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
