"""Proof of one ledger entry without its chain: signed tree heads and inclusion proofs. Pure.

Each writer's entries 1..N, in sequence order, are the leaves of an RFC 9162 Merkle tree
(``merkle.entry_leaf_hash`` of each entry hash). A **checkpoint** is an ordinary signed entry of
the writer's own chain, event ``checkpoint``, whose details are the tree head of the entries
before it (the agreed format)::

    {"tree_size": N, "root_hash": "<hex MTH of entries 1..N>",
     "head_seq": N, "head_hash": "<entry hash of entry N>"}

Its signature is the writer's: whoever trusts the writer's key knows that the chain held
exactly these N entries when it was signed. An **inclusion proof** of entry ``seq`` against a
checkpoint is the RFC 9162 audit path of leaf ``seq - 1`` in that tree: about log2(N) hashes,
so an evidence package proves its own entries and carries nothing of any other case, however
long the chain.

The leaf index is the entry's own ``seq`` and the tree size and root come from the signed
checkpoint entry, never from the proof or the package holding it: the same path can have the
same shape in trees of different sizes.

``checkpoint_entry_details`` is what a writer signs (a pure function of its entry hashes, so
every writer and every test computes it the same way); ``tree_head_of`` reads one back from a
verified entry; ``proof_bytes``/``parse_proof`` are the proof file of a package;
``inclusion_problem`` says why a proof does not hold.

What this module must never do: take a tree size, a root or a leaf index from anything but the
signed checkpoint and the entry itself; accept a proof file in any form but the one
``proof_bytes`` writes; read or write anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import canonical, merkle
from .chain import Entry, Event, Head, checkpoint_details
from ..i18n import _

CHECKPOINT_FIELDS = ("tree_size", "root_hash", "head_seq", "head_hash")
PROOF_FIELDS = frozenset({"writer", "seq", "checkpoint_seq", "audit_path"})
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def checkpoint_entry_details(entry_hashes: Sequence[str]) -> dict[str, Any]:
    """The details of a checkpoint over entries 1..N, given their entry hashes in seq order
    (``canonical.entry_hash``): ``chain.checkpoint_details``, the one place that writes them.
    ValueError for an empty chain or a malformed hash."""
    if not entry_hashes:
        raise ValueError(_("a checkpoint signs at least one entry"))
    tree = merkle.CompactTree().extend(merkle.entry_leaf_hash(h) for h in entry_hashes)
    return checkpoint_details(tree, Head(len(entry_hashes), entry_hashes[-1]))


@dataclass(frozen=True)
class SignedTreeHead:
    """What one verified checkpoint entry signs."""

    writer: str
    seq: int  # of the checkpoint entry itself (after the tree it signs)
    tree_size: int
    root: bytes
    head_hash: str  # entry hash of entry tree_size
    entry_hash: str  # of the checkpoint entry: what a witness names


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def tree_head_of(entry: Entry) -> SignedTreeHead:
    """The tree head a (verified) checkpoint entry signs; ValueError saying why it is none.

    The entry must come after the tree it signs; when it is the very next entry, its ``prev``
    is the head it names (one more check a verifier gets for free)."""
    if entry["event"] != Event.CHECKPOINT:
        raise ValueError(_("entry {seq} is a '{event}' event, not a checkpoint").format(
            seq=entry['seq'], event=entry['event']))
    details = entry["details"]
    missing = [name for name in CHECKPOINT_FIELDS if name not in details]
    if missing:
        raise ValueError(_("checkpoint details lack {join}").format(join=', '.join(missing)))
    tree_size, head_seq = details["tree_size"], details["head_seq"]
    root_hash, head_hash = details["root_hash"], details["head_hash"]
    if not _is_count(tree_size) or head_seq != tree_size:
        raise ValueError(_("checkpoint tree_size is not a positive count equal to head_seq"))
    if not all(isinstance(value, str) and _HEX_HASH.fullmatch(value)
               for value in (root_hash, head_hash)):
        raise ValueError(_("checkpoint root_hash or head_hash is not a SHA-256 in lower-case hex"))
    if entry["seq"] <= tree_size:
        raise ValueError(_("checkpoint entry {seq} signs a tree of {tree_size} entries, which "
                           "would hold itself").format(seq=entry['seq'], tree_size=tree_size))
    if entry["seq"] == tree_size + 1 and entry["prev"] != head_hash:
        raise ValueError(_("checkpoint head_hash is not the entry before it (its prev)"))
    return SignedTreeHead(entry["writer"], entry["seq"], tree_size, bytes.fromhex(root_hash),
                          head_hash, canonical.entry_hash(entry))


@dataclass(frozen=True)
class InclusionProof:
    """Entry ``seq`` of ``writer`` is leaf ``seq - 1`` of the tree its checkpoint entry
    ``checkpoint_seq`` signs; ``audit_path`` is PATH of RFC 9162 2.1.3.1, leaf upwards."""

    writer: str
    seq: int
    checkpoint_seq: int
    audit_path: tuple[bytes, ...]


def proof_bytes(proof: InclusionProof) -> bytes:
    """The proof file of a package: canonical JSON, hashes in lower-case hex."""
    return canonical.canonical_json({
        "writer": proof.writer, "seq": proof.seq, "checkpoint_seq": proof.checkpoint_seq,
        "audit_path": [step.hex() for step in proof.audit_path],
    })


def parse_proof(data: bytes) -> InclusionProof:
    """The inverse of ``proof_bytes``; ValueError for anything else (a proof file carries
    nothing but its proof)."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(_("not JSON: {exc}").format(exc=exc)) from None
    except RecursionError:
        raise ValueError(_("not JSON this software writes: nested too deeply")) from None
    if not isinstance(body, dict) or set(body) != PROOF_FIELDS:
        raise ValueError(_("its fields must be exactly {join}").format(
            join=', '.join(sorted(PROOF_FIELDS))))
    if not isinstance(body["writer"], str) or not all(
            _is_count(body[name]) for name in ("seq", "checkpoint_seq")):
        raise ValueError(_("writer, seq or checkpoint_seq is malformed"))
    path = body["audit_path"]
    if not isinstance(path, list) or not all(
            isinstance(step, str) and _HEX_HASH.fullmatch(step) for step in path):
        raise ValueError(_("audit_path is not a list of SHA-256 hashes in lower-case hex"))
    if canonical.canonical_json(body) != data:
        raise ValueError(_("not in canonical form"))
    return InclusionProof(body["writer"], body["seq"], body["checkpoint_seq"],
                          tuple(bytes.fromhex(step) for step in path))


def inclusion_problem(entry_hash: str, proof: InclusionProof, head: SignedTreeHead) -> str | None:
    """None when ``proof`` shows the entry with ``entry_hash`` at its seq in the tree ``head``
    signs; else why not."""
    if proof.writer != head.writer or proof.checkpoint_seq != head.seq:
        return (f"names checkpoint {proof.writer}#{proof.checkpoint_seq}, not "
                f"{head.writer}#{head.seq}")
    if proof.seq > head.tree_size:
        return (f"entry {proof.seq} is not in the tree of {head.tree_size} entries that "
                f"checkpoint {head.seq} signs")
    if not merkle.verify_inclusion(merkle.entry_leaf_hash(entry_hash), proof.seq - 1,
                                   head.tree_size, proof.audit_path, head.root):
        return (f"does not prove entry {proof.seq} under the root that checkpoint {head.seq} "
                f"signs (tree of {head.tree_size} entries): the proof was forged, or the "
                "entry is not the one the writer's chain holds")
    return None


def inclusion_proofs(writer: str, checkpoint_seq: int, entry_hashes: Sequence[str],
                     seqs: Sequence[int]) -> Mapping[int, InclusionProof]:
    """Proofs of entries ``seqs`` against the tree of ``entry_hashes`` (entries 1..N) that
    checkpoint ``checkpoint_seq`` signs. ValueError for a seq outside the tree."""
    leaves = [merkle.entry_leaf_hash(entry_hash) for entry_hash in entry_hashes]
    return {seq: InclusionProof(writer, seq, checkpoint_seq,
                                tuple(merkle.inclusion_proof(seq - 1, leaves)))
            for seq in seqs}
