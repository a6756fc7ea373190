"""RFC 9162 Merkle trees: the CT test vectors, an independent reference, every index and size.

The vectors are the RFC 6962 ones Certificate Transparency implementations test against
(transparency-dev/merkle ``testonly/constants.go`` and ``proof/verify_test.go``; the same
numbers as google/certificate-transparency). The reference below is a second, deliberately
naive implementation written straight from the RFC's recursive definitions over list slices,
so the module's index arithmetic and the RFC's verification algorithms are checked against it
for every leaf of every tree up to 70 leaves, and every tampered proof must fail.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence

import pytest

from evidence_daemon.custody import canonical
from evidence_daemon.custody.merkle import (
    EMPTY_ROOT,
    CompactTree,
    consistency_proof,
    entry_leaf_hash,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_head,
    verify_consistency,
    verify_inclusion,
)

# --- the CT / RFC 6962 vectors --------------------------------------------------------------

LEAF_INPUTS = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # indexed by tree size, 0..8
LEAF_HASHES_HEX = (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
)
LEVEL1 = ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")
LEVEL2 = ("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")

# (leaf index, tree size, audit path)
INCLUSION_VECTORS = [
    (0, 8, ("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, ("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",)),
    (1, 5, ("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (0, 1, ()),
]
# (old size, new size, consistency proof)
CONSISTENCY_VECTORS = [
    (1, 1, ()),
    (1, 8, ("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, ("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, ("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, ("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

VECTOR_LEAVES = [leaf_hash(data) for data in LEAF_INPUTS]


def hexes(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


def test_leaf_and_node_hashes_match_the_vectors() -> None:
    assert [h.hex() for h in VECTOR_LEAVES] == list(LEAF_HASHES_HEX)
    pairs = [node_hash(VECTOR_LEAVES[i], VECTOR_LEAVES[i + 1]).hex() for i in range(0, 8, 2)]
    assert pairs == list(LEVEL1)
    assert node_hash(bytes.fromhex(LEVEL1[0]), bytes.fromhex(LEVEL1[1])).hex() == LEVEL2[0]
    assert EMPTY_ROOT == ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_tree_heads_match_the_vectors(size: int) -> None:
    assert tree_head(VECTOR_LEAVES[:size]) == ROOTS[size]
    assert CompactTree.of(VECTOR_LEAVES[:size]).root() == ROOTS[size]


def test_compact_trees_hold_the_vector_subtree_roots() -> None:
    expected = {
        1: [LEAF_HASHES_HEX[0]], 2: [LEVEL1[0]], 3: [LEVEL1[0], LEAF_HASHES_HEX[2]],
        4: [LEVEL2[0]], 5: [LEVEL2[0], LEAF_HASHES_HEX[4]], 6: [LEVEL2[0], LEVEL1[2]],
        7: [LEVEL2[0], LEVEL1[2], LEAF_HASHES_HEX[6]], 8: [ROOTS[8].hex()],
    }
    for size, peaks in expected.items():
        assert [p.hex() for p in CompactTree.of(VECTOR_LEAVES[:size]).peaks] == peaks


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_vectors(index: int, size: int, path: tuple[str, ...]) -> None:
    proof = inclusion_proof(index, VECTOR_LEAVES[:size])
    assert proof == hexes(path)
    assert verify_inclusion(VECTOR_LEAVES[index], index, size, proof, ROOTS[size])
    for probe in corrupt_inclusion(VECTOR_LEAVES[index], index, size, proof, ROOTS[size]):
        assert not verify_inclusion(*probe[1:]), probe[0]


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_vectors(old: int, new: int, path: tuple[str, ...]) -> None:
    proof = consistency_proof(old, VECTOR_LEAVES[:new])
    assert proof == hexes(path)
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)
    if proof:
        for probe in corrupt_consistency(old, new, ROOTS[old], ROOTS[new], proof):
            assert not verify_consistency(*probe[1:]), probe[0]


# --- an independent reference, straight from the RFC's definitions ------------------------

def ref_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, data[:k]) + [ref_mth(data[k:])]
    return ref_path(m - k, data[k:]) + [ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [ref_mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return ref_subproof(m, data[:k], whole) + [ref_mth(data[k:])]
    return ref_subproof(m - k, data[k:], False) + [ref_mth(data[:k])]


def leaf_data(count: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(count)]


MAX_SIZE = 70
DATA = leaf_data(MAX_SIZE)
LEAVES = [leaf_hash(item) for item in DATA]
HEADS = [ref_mth(DATA[:size]) for size in range(MAX_SIZE + 1)]


def flip(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


Probe = tuple[str, bytes, int, int, list[bytes], bytes]


def corrupt_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes],
                      root: bytes) -> list[Probe]:
    """The tampering transparency-dev's verifier is tested with, plus a few more.

    Not "size + 1": a path can have the same shape in trees of n and n + 1 leaves, so a proof
    alone does not pin the size; the signed tree head (size *and* root) does, which is why
    checkpoints sign both.
    """
    probes: list[Probe] = [
        ("index - 1", leaf, index - 1, size, proof, root),
        ("index + 1", leaf, index + 1, size, proof, root),
        ("index ^ 2", leaf, index ^ 2, size, proof, root),
        ("size * 2", leaf, index, size * 2, proof, root),
        ("size / 2", leaf, index, size // 2, proof, root),
        ("wrong leaf", flip(leaf), index, size, proof, root),
        ("short leaf", b"WrongLeaf", index, size, proof, root),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("flipped root", leaf, index, size, proof, flip(root)),
        ("trailing garbage", leaf, index, size, proof + [b""], root),
        ("trailing root", leaf, index, size, proof + [root], root),
        ("preceding garbage", leaf, index, size, [b""] + proof, root),
        ("preceding root", leaf, index, size, [root] + proof, root),
    ]
    for i in range(len(proof)):
        tampered = list(proof)
        tampered[i] = flip(tampered[i])
        probes.append((f"proof[{i}] bit flipped", leaf, index, size, tampered, root))
    if proof:
        probes.append(("removed component", leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("inserted component", leaf, index, size,
                       [proof[0], SOME_HASH] + proof[1:], root))
        probes.append(("swapped components", leaf, index, size,
                       [proof[1], proof[0]] + proof[2:], root))
    return probes


CProbe = tuple[str, int, int, bytes, bytes, list[bytes]]


def corrupt_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                        proof: list[bytes]) -> list[CProbe]:
    probes: list[CProbe] = [
        ("old - 1", old - 1, new, old_root, new_root, proof),
        ("old + 1", old + 1, new, old_root, new_root, proof),
        ("old ^ 2", old ^ 2, new, old_root, new_root, proof),
        ("new * 2", old, new * 2, old_root, new_root, proof),
        ("new / 2", old, new // 2, old_root, new_root, proof),
        ("wrong old root", old, new, flip(old_root), new_root, proof),
        ("wrong new root", old, new, old_root, flip(new_root), proof),
        ("short root", old, new, b"WrongRoot", new_root, proof),
        ("swapped roots", old, new, new_root, old_root, proof),
        ("empty proof", old, new, old_root, new_root, []),
        ("trailing garbage", old, new, old_root, new_root, proof + [b""]),
        ("trailing old root", old, new, old_root, new_root, proof + [old_root]),
        ("trailing new root", old, new, old_root, new_root, proof + [new_root]),
        ("preceding garbage", old, new, old_root, new_root, [b""] + proof),
        ("preceding old root", old, new, old_root, new_root, [old_root] + proof),
        ("preceding new root", old, new, old_root, new_root, [new_root] + proof),
        ("preceding proof[0]", old, new, old_root, new_root, [proof[0]] + proof),
        ("truncated proof", old, new, old_root, new_root, proof[:-1]),
    ]
    for i in range(len(proof)):
        tampered = list(proof)
        tampered[i] = flip(tampered[i], 4)
        probes.append((f"proof[{i}] bit flipped", old, new, old_root, new_root, tampered))
    return probes


def test_reference_agrees_with_the_vectors() -> None:
    assert [ref_mth(LEAF_INPUTS[:n]) for n in range(9)] == ROOTS


@pytest.mark.parametrize("size", range(MAX_SIZE + 1))
def test_tree_head_and_compact_tree_equal_the_reference(size: int) -> None:
    assert tree_head(LEAVES[:size]) == HEADS[size]
    compact = CompactTree.of(LEAVES[:size])
    assert compact.root() == HEADS[size]
    assert compact.size == size and len(compact.peaks) == bin(size).count("1")
    restored = CompactTree.from_json(json.loads(json.dumps(compact.to_json())))
    assert restored == compact
    if size < MAX_SIZE:  # a restored tree keeps growing where it left off
        assert restored.append(LEAVES[size]).root() == HEADS[size + 1]


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_verifies_and_every_tampered_one_fails(size: int) -> None:
    leaves, root = LEAVES[:size], HEADS[size]
    bound = math.ceil(math.log2(size)) if size > 1 else 0
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        assert proof == ref_path(index, DATA[:size])
        assert len(proof) <= bound
        assert verify_inclusion(leaves[index], index, size, proof, root)
        for probe in corrupt_inclusion(leaves[index], index, size, proof, root):
            assert not verify_inclusion(*probe[1:]), (index, size, probe[0])
        # Another leaf of the same tree never passes with this leaf's proof.
        for other in range(size):
            if other != index:
                assert not verify_inclusion(leaves[other], index, size, proof, root)


@pytest.mark.parametrize("new", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_verifies_and_every_tampered_one_fails(new: int) -> None:
    leaves = LEAVES[:new]
    bound = math.ceil(math.log2(new)) + 1
    for old in range(0, new + 1):
        proof = consistency_proof(old, leaves)
        expected = [] if old in (0, new) else ref_subproof(old, DATA[:new], True)
        assert proof == expected
        assert len(proof) <= bound
        assert verify_consistency(old, new, HEADS[old], HEADS[new], proof)
        if not proof:
            continue
        for probe in corrupt_consistency(old, new, HEADS[old], HEADS[new], proof):
            assert not verify_consistency(*probe[1:]), (old, new, probe[0])
        # A tree that is *not* a prefix (one earlier leaf changed) fails with any proof.
        forked = list(LEAVES[:new])
        forked[old - 1] = flip(forked[old - 1])
        assert not verify_consistency(old, new, tree_head(forked[:old]), HEADS[new], proof)
        assert not verify_consistency(old, new, HEADS[old], tree_head(forked), proof)


def test_edge_cases_of_consistency_are_strict() -> None:
    root1, root2 = HEADS[1], HEADS[2]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, HEADS[5], [])
    assert not verify_consistency(0, 5, SOME_HASH, HEADS[5], [])  # not the empty tree's head
    assert not verify_consistency(0, 5, EMPTY_ROOT, HEADS[5], [EMPTY_ROOT])
    assert verify_consistency(1, 1, root1, root1, [])
    assert not verify_consistency(1, 1, root1, root2, [])
    assert not verify_consistency(1, 1, root1, root1, [EMPTY_ROOT])
    assert not verify_consistency(2, 1, root2, root1, [])  # time travel to the past
    assert not verify_consistency(1, 2, root1, root2, [])  # a proof is needed
    assert not verify_consistency(-1, 2, root1, root2, [LEAVES[1]])


def test_inclusion_needs_a_leaf_inside_the_tree() -> None:
    for index, size in ((0, 0), (1, 0), (2, 1), (1, 1), (-1, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
    single = LEAVES[0]
    assert verify_inclusion(single, 0, 1, [], single)
    assert not verify_inclusion(single, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    assert not verify_inclusion(single, True, 2, [LEAVES[1]], HEADS[2])  # a bool is no index


def test_proof_builders_refuse_positions_outside_the_tree() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(3, LEAVES[:3])
    with pytest.raises(ValueError):
        inclusion_proof(-1, LEAVES[:3])
    with pytest.raises(ValueError):
        consistency_proof(4, LEAVES[:3])


def test_large_trees_keep_proofs_logarithmic() -> None:
    """100,000 leaves (a station's decade): proofs of at most 17 (+1) hashes, under 1 KB."""
    size = 100_000
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    compact = CompactTree.of(leaves)
    root = compact.root()
    assert root == tree_head(leaves)
    rng = random.Random(11)
    for index in [0, size - 1, *rng.sample(range(size), 3)]:
        proof = inclusion_proof(index, leaves)
        assert len(proof) <= 17 and len(b"".join(proof)) <= 17 * 32
        assert verify_inclusion(leaves[index], index, size, proof, root)
    for old in [1, 2**16, size - 1, rng.randrange(1, size)]:
        proof = consistency_proof(old, leaves)
        assert len(proof) <= 18
        assert verify_consistency(old, size, tree_head(leaves[:old]), root, proof)


def test_entry_leaf_is_the_raw_entry_hash() -> None:
    entry = {"seq": 1, "prev": canonical.GENESIS_PREV, "time": "2026-01-01T00:00:00+00:00",
             "writer": "station-1", "event": "archived", "recording": "ab" * 32,
             "actor": "station", "details": {"manifest_sha256": "cd" * 32}}
    digest = canonical.entry_hash(entry)
    assert entry_leaf_hash(digest) == hashlib.sha256(b"\x00" + bytes.fromhex(digest)).digest()
    assert entry_leaf_hash(digest) != leaf_hash(canonical.canonical_bytes(entry))
    for bad in ("AB" * 32, "ab" * 31, "zz" * 32, ""):
        with pytest.raises(ValueError):
            entry_leaf_hash(bad)


@pytest.mark.parametrize("data", [
    {"size": 3, "peaks": ["00" * 32]},  # 3 leaves need 2 roots
    {"size": -1, "peaks": []},
    {"size": "1", "peaks": ["00" * 32]},
    {"size": 1, "peaks": ["00" * 31]},
    {"size": 1, "peaks": ["zz" * 32]},
    {"size": 0},
    {"size": 0, "peaks": [], "root": ""},
    ["size", 0],
])
def test_a_malformed_stored_compact_tree_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        CompactTree.from_json(data)


def test_compact_tree_refuses_a_leaf_that_is_no_hash() -> None:
    with pytest.raises(ValueError):
        CompactTree().append(b"short")
