"""The ledger part of a version-3 package: each writer's chosen entries, read from the archive
and checked, proven by RFC 9162 inclusion proofs against the writer's newest signed checkpoint.

What must never happen here: a proof whose tree size comes from anything but the signed
checkpoint; an entry exported that does not verify, that is not the one the catalog indexed,
or that is not about the package (nor a key registration).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...archive import keys
from ...archive.base import ArchiveStore
from ...custody import chain
from ...custody.chain import Event
from ...custody.ledger import LedgerWriter
from ...custody.proofs import checkpoint_entry_details, inclusion_proofs, proof_bytes, tree_head_of
from ...errors import IntegrityError, ObjectMissingError
from ...state.db import Database
from .format import is_relevant
from ...i18n import _


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
        raise IntegrityError(_("ledger {writer}: no entry after its last checkpoint, though the "
                               "export was just recorded").format(writer=ledger.writer))
    index_own(int(entry["seq"]))
    return entry, ledger.entry_hashes()[:int(entry["details"]["tree_size"])]


def _indexed_hashes(database: Database, writer: str, tree_size: int) -> list[str]:
    rows = database.query("SELECT seq, entry_hash FROM events WHERE writer = ? AND seq <= ? "
                          "ORDER BY seq", (writer, tree_size))
    if [int(row["seq"]) for row in rows] != list(range(1, tree_size + 1)):
        raise IntegrityError(_("the catalog does not hold entries 1..{tree_size} of writer "
                               "{writer!r} that its checkpoint signs; run reindex, then verify").format(
                                   tree_size=tree_size, writer=writer))
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
            raise IntegrityError(_("{key}: ledger entry missing from the archive").format(
                key=key)) from exc
        read = chain.read_entry(writer, seq, data, public_key)
        if not read.signed or read.problems or read.entry is None:
            why = "; ".join(problem.message for problem in read.problems)
            raise IntegrityError(_("{key}: ledger entry does not verify ({why}); run verify on "
                                   "the archive").format(key=key, why=why))
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
            raise IntegrityError(_("{key}: {exc}; run verify on the archive").format(
                key=key, exc=exc)) from None
        entry_hashes = own[1] if own is not None else _indexed_hashes(database, writer,
                                                                      head.tree_size)
        if (len(entry_hashes) != head.tree_size or checkpoint_entry_details(entry_hashes)[
                "root_hash"] != head.root.hex()):
            raise IntegrityError(_("{key}: entries 1..{tree_size} of writer {writer!r} do not "
                                   "hash to the tree head this checkpoint signs: the chain "
                                   "differs from what its writer signed; run verify").format(
                                       key=key, tree_size=head.tree_size, writer=writer))
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
            raise IntegrityError(_("{ledger_key}: the catalog says this entry concerns the "
                                   "package, the archived entry does not; run reindex").format(
                                       ledger_key=keys.ledger_key(writer, seq)))
        if seq <= len(entry_hashes) and entry_hashes[seq - 1] != read.entry_hash:
            raise IntegrityError(_("{ledger_key}: differs from the entry the catalog indexed; run "
                                   "reindex, then verify").format(
                                       ledger_key=keys.ledger_key(writer, seq)))
        entries[seq] = data
    covered = [seq for seq in sorted(seqs) if seq <= len(entry_hashes)]
    proofs = ({seq: proof_bytes(proof) for seq, proof in inclusion_proofs(
        writer, checkpoint_seq, entry_hashes, covered).items()}
              if checkpoint_seq is not None else {})
    uncovered = tuple(seq for seq in sorted(seqs) if seq > len(entry_hashes))
    return ProvenWriter(writer, entries, checkpoint_seq, proofs, uncovered, timestamp)

