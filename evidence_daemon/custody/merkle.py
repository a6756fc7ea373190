"""RFC 9162 (Certificate Transparency v2) Merkle trees over one writer's ledger. Pure functions.

Each writer's ledger entries, in sequence order, are the leaves of an append-only Merkle tree;
a checkpoint signs the tree head (size and root), and one entry is proven to belong to that
chain by an inclusion proof of about log2(size) hashes, so an evidence package can carry the
entries of its own recordings and nothing of any other case.

Hashing is exactly RFC 9162 section 2.1 with SHA-256: the empty tree's head is
``SHA-256()``, a leaf hash is ``SHA-256(0x00 || leaf)``, an inner node ``SHA-256(0x01 || left
|| right)``, and a tree of n > 1 leaves splits at the largest power of two below n. Proofs are
built by the PATH and PROOF definitions of 2.1.3.1 and 2.1.4.1 and checked by the verification
algorithms of 2.1.3.2 and 2.1.4.2, step for step, so any CT implementation checks them too.

**Leaf bytes.** The leaf of a ledger entry is its *entry hash*: the 32 raw bytes of SHA-256
over the entry's canonical bytes (``canonical.entry_hash``, the value the next entry names in
``prev``), not the canonical JSON itself. One identity per entry everywhere (links, the local
index, the API); a writer or an indexer can rebuild or extend its tree from the hashes it
already keeps, without re-reading every entry; and a proof never depends on serialising JSON a
second time. The extra SHA-256 costs nothing in strength: the 0x00/0x01 prefixes still keep
leaves and inner nodes apart.

Sequences of *leaf hashes* (``leaf_hash(leaf)``, or ``entry_leaf_hash(entry_hash)``) are what
the functions below take, so a caller hashes each entry once. ``CompactTree`` keeps a growing
log's head in one hash per set bit of its size, so a writer never re-hashes its chain to sign
a checkpoint.

A proof binds a leaf to a *signed tree head*, size and root together: the same audit path
can have the same shape in trees of n and n + 1 leaves, so a verifier takes the size from the
signed checkpoint, never from the package or the proof.

What this module must never do: accept a proof that does not follow the RFC's algorithm to the
letter (a shorter, longer, re-ordered or re-sized proof fails), raise on malformed input it was
asked to verify (verification answers False), or depend on anything outside its arguments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from ..i18n import _

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the hash of one leaf's bytes."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an inner node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def entry_leaf_hash(entry_hash: str) -> bytes:
    """The leaf hash of a ledger entry, from its entry hash (64 lower-case hex digits)."""
    if not isinstance(entry_hash, str) or not _HEX_HASH.fullmatch(entry_hash):
        raise ValueError(_("not an entry hash (64 lower-case hex digits): {entry_hash!r}").format(
            entry_hash=entry_hash))
    return leaf_hash(bytes.fromhex(entry_hash))


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (size > 1): where RFC 9162 splits."""
    return 1 << ((size - 1).bit_length() - 1)


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of leaves [start, end), end > start."""
    size = end - start
    if size == 1:
        return leaf_hashes[start]
    middle = start + _split(size)
    return node_hash(_subtree_root(leaf_hashes, start, middle),
                     _subtree_root(leaf_hashes, middle, end))


def tree_head(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1 over the given leaf hashes (the empty tree too)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1: the audit path of leaf ``index`` in the whole tree."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(_("leaf index {index} is outside a tree of {count} leaves").format(
            index=index, count=len(leaf_hashes)))
    path: list[bytes] = []
    start, end = 0, len(leaf_hashes)
    # Walk down from the root; each level contributes the sibling subtree's root. Collected
    # top-down, so reversed at the end (the RFC lists the path from the leaf upwards).
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            path.append(_subtree_root(leaf_hashes, middle, end))
            end = middle
        else:
            path.append(_subtree_root(leaf_hashes, start, middle))
            start = middle
    path.reverse()
    return path


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1: the tree of the first ``old_size`` leaves is a prefix.

    Empty when ``old_size`` is 0 or the whole tree (nothing to prove).
    """
    new_size = len(leaf_hashes)
    if not 0 <= old_size <= new_size:
        raise ValueError(_("old size {old_size} is outside 0..{new_size}").format(
            old_size=old_size, new_size=new_size))
    if old_size in (0, new_size):
        return []
    return _subproof(old_size, leaf_hashes, 0, new_size, True)


def _subproof(m: int, leaf_hashes: Sequence[bytes], start: int, end: int,
              whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b) of RFC 9162 2.1.4.1."""
    size = end - start
    if m == size:
        return [] if whole else [_subtree_root(leaf_hashes, start, end)]
    k = _split(size)
    if m <= k:
        return (_subproof(m, leaf_hashes, start, start + k, whole)
                + [_subtree_root(leaf_hashes, start + k, end)])
    return (_subproof(m - k, leaf_hashes, start + k, end, False)
            + [_subtree_root(leaf_hashes, start, start + k)])


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes,
) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not (_is_hash(leaf) and _is_hash(root) and _is_size(index) and _is_size(tree_size)):
        return False
    if not all(_is_hash(step) for step in proof):
        return False
    # 1. The index must lie inside the tree.
    if index >= tree_size:
        return False
    # 2.-3.
    fn, sn, r = index, tree_size - 1, leaf
    # 4.
    for p in proof:
        if sn == 0:  # a.
            return False
        if fn & 1 or fn == sn:  # b.
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1  # c.
        sn >>= 1
    # 5.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes],
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?

    The RFC covers 0 < old_size < new_size; the two edge cases are decided strictly: equal
    sizes need equal roots and an empty proof, and a size-0 tree must have the empty tree's
    head (which every tree extends) and an empty proof.
    """
    if not (_is_hash(old_root) and _is_hash(new_root)
            and _is_size(old_size) and _is_size(new_size)):
        return False
    if not all(_is_hash(step) for step in proof):
        return False
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    # 1.
    if not proof:
        return False
    path = list(proof)
    # 2.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:  # a.
            return False
        if fn & 1 or fn == sn:  # b.
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1  # c.
        sn >>= 1
    # 7.
    return fr == old_root and sr == new_root and sn == 0


@dataclass(frozen=True)
class CompactTree:
    """A growing log's tree head kept in O(log n) hashes (a compact range over [0, size)).

    ``peaks`` are the roots of the perfect subtrees that make up the first ``size`` leaves,
    largest (leftmost) first: one per set bit of ``size``. Appending merges equal-sized peaks;
    ``root()`` folds them from the right, which is exactly MTH of RFC 9162. Store it with
    ``to_json()`` (a size and at most 64 hex hashes) and keep extending after a restart.
    """

    size: int = 0
    peaks: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not _is_size(self.size):
            raise ValueError(_("tree size must be a non-negative integer, got {size!r}").format(
                size=self.size))
        if len(self.peaks) != bin(self.size).count("1"):
            raise ValueError(_("a tree of {size} leaves has {count} subtree roots, not {count2}").format(
                size=self.size, count=bin(self.size).count('1'), count2=len(self.peaks)))
        if not all(_is_hash(peak) for peak in self.peaks):
            raise ValueError(_("subtree roots must be 32-byte hashes"))

    @classmethod
    def of(cls, leaf_hashes: Iterable[bytes]) -> CompactTree:
        return cls().extend(leaf_hashes)

    def append(self, leaf: bytes) -> CompactTree:
        """The tree with one more leaf (given as its leaf hash)."""
        if not _is_hash(leaf):
            raise ValueError(_("a leaf hash must be 32 bytes"))
        peaks = list(self.peaks)
        carry, bits = leaf, self.size
        # Every trailing 1 bit of the size is a peak as large as what is being carried.
        while bits & 1:
            carry = node_hash(peaks.pop(), carry)
            bits >>= 1
        peaks.append(carry)
        return CompactTree(self.size + 1, tuple(peaks))

    def extend(self, leaf_hashes: Iterable[bytes]) -> CompactTree:
        tree = self
        for leaf in leaf_hashes:
            tree = tree.append(leaf)
        return tree

    def root(self) -> bytes:
        """MTH of the first ``size`` leaves."""
        if not self.peaks:
            return EMPTY_ROOT
        root = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            root = node_hash(peak, root)
        return root

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "peaks": [peak.hex() for peak in self.peaks]}

    @classmethod
    def from_json(cls, data: Any) -> CompactTree:
        """The inverse of ``to_json``; ValueError for anything else."""
        if not isinstance(data, dict) or set(data) != {"size", "peaks"}:
            raise ValueError(_("a compact tree is {\"size\": n, \"peaks\": [hex, ...]}"))
        peaks = data["peaks"]
        if not isinstance(peaks, list) or not all(
                isinstance(peak, str) and _HEX_HASH.fullmatch(peak) for peak in peaks):
            raise ValueError(_("compact tree peaks must be 64 lower-case hex digits each"))
        return cls(data["size"], tuple(bytes.fromhex(peak) for peak in peaks))
