"""Tests for provenance.merkle: published vectors, a naive reference, and tampering properties."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- naive reference: RFC 6962 section 2.1 transcribed literally, recursion and all -------------------

def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha(b"")
    if len(d) == 1:
        return sha(b"\x00" + d[0])
    k = _split(len(d))
    return sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[tuple[str, bytes]]:
    """PATH(m, D[n]), each element tagged with the side its subtree hangs on."""
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [("R", ref_mth(d[k:]))]
    return ref_path(m - k, d[k:]) + [("L", ref_mth(d[:k]))]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[tuple[str, bytes]]:
    """SUBPROOF(m, D[n], b), each element tagged with the recursion branch that emitted it."""
    if m == len(d):
        return [] if b else [("H", ref_mth(d))]
    k = _split(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], b) + [("R", ref_mth(d[k:]))]
    return ref_subproof(m - k, d[k:], False) + [("L", ref_mth(d[:k]))]


def path_shape(m: int, n: int) -> list[str]:
    return [tag for tag, _ in ref_path(m, [b""] * n)]


def subproof_shape(m: int, n: int) -> list[str]:
    return [tag for tag, _ in ref_subproof(m, [b""] * n, True)]


def flip(proof: list[bytes], element: int, byte: int, mask: int = 0x01) -> list[bytes]:
    tampered = [bytearray(p) for p in proof]
    tampered[element][byte] ^= mask
    return [bytes(p) for p in tampered]


# --- known answers -----------------------------------------------------------------------------------

# Certificate Transparency's reference leaves and the RFC 6962 tree heads for sizes 1..8.
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


def hexes(*hs: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hs]


def test_empty_tree_root_is_sha256_of_nothing():
    assert root([]) == root_from_leaf_hashes([]) == EMPTY_ROOT
    assert root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_single_empty_leaf():
    assert root([b""]) == leaf_hash(b"") == sha(b"\x00")


def test_hand_computed_three_leaf_tree():
    a, b, c = sha(b"\x00a"), sha(b"\x00b"), sha(b"\x00c")
    # Split at 2, not at the midpoint: ((a b) c).
    assert root([b"a", b"b", b"c"]) == sha(b"\x01" + sha(b"\x01" + a + b) + c)
    assert node_hash(a, b) == sha(b"\x01" + a + b)
    assert inclusion_proof([b"a", b"b", b"c"], 0) == [b, c]
    assert inclusion_proof([b"a", b"b", b"c"], 2) == [node_hash(a, b)]
    assert consistency_proof([b"a", b"b", b"c"], 1) == [b, c]
    assert consistency_proof([b"a", b"b", b"c"], 2) == [c]


def test_certificate_transparency_roots():
    for n in range(1, 9):
        assert root(CT_LEAVES[:n]) == CT_ROOTS[n - 1], n


def test_certificate_transparency_proofs():
    assert inclusion_proof(CT_LEAVES, 0) == hexes(
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")
    assert inclusion_proof(CT_LEAVES, 5) == hexes(
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")
    assert consistency_proof(CT_LEAVES, 2) == hexes(
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")
    six = hexes(
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")
    assert consistency_proof(CT_LEAVES, 6) == six
    assert verify_consistency(6, 8, CT_ROOTS[5], CT_ROOTS[7], six)
    assert verify_inclusion(CT_LEAVES[5], 5, 8, inclusion_proof(CT_LEAVES, 5), CT_ROOTS[7])


def test_hashed_variants_agree():
    hashes = [leaf_hash(d) for d in CT_LEAVES]
    assert root_from_leaf_hashes(hashes) == root(CT_LEAVES)
    for i in range(8):
        assert inclusion_proof(hashes, i, hashed=True) == inclusion_proof(CT_LEAVES, i)
        assert consistency_proof(hashes, i, hashed=True) == consistency_proof(CT_LEAVES, i)
    with pytest.raises(ValueError):
        root_from_leaf_hashes([b"raw data, not a hash"])
    with pytest.raises(ValueError):
        inclusion_proof(CT_LEAVES, 0, hashed=True)


def test_builders_reject_impossible_arguments():
    with pytest.raises(IndexError):
        inclusion_proof(CT_LEAVES, 8)
    with pytest.raises(IndexError):
        inclusion_proof(CT_LEAVES, -1)
    with pytest.raises(IndexError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(CT_LEAVES, 9)
    with pytest.raises(ValueError):
        consistency_proof(CT_LEAVES, -1)


def test_large_tree_has_no_recursion_limit():
    leaves = [i.to_bytes(4, "big") for i in range(100_000)]
    r = root(leaves)
    proof = inclusion_proof(leaves, 77_777)
    assert len(proof) == 17
    assert verify_inclusion(leaves[77_777], 77_777, 100_000, proof, r)
    cproof = consistency_proof(leaves, 65_537)
    assert verify_consistency(65_537, 100_000, root(leaves[:65_537]), r, cproof)


# --- verifiers never raise ---------------------------------------------------------------------------

GARBAGE = [None, "text", 3.5, -1, True, b"short", bytearray(31), [b"\x00" * 31], object(), [None], b"\x00" * 32]


def test_verifiers_return_false_on_garbage():
    leaves = CT_LEAVES[:5]
    good = (leaves[3], 3, 5, inclusion_proof(leaves, 3), root(leaves))
    assert verify_inclusion(*good)
    for pos in range(5):
        for junk in GARBAGE:
            args = list(good)
            args[pos] = junk
            assert verify_inclusion(*args) is False, (pos, junk)

    good_c = (3, 7, root(CT_LEAVES[:3]), root(CT_LEAVES[:7]), consistency_proof(CT_LEAVES[:7], 3))
    assert verify_consistency(*good_c)
    for pos in range(5):
        for junk in GARBAGE:
            args = list(good_c)
            args[pos] = junk
            assert verify_consistency(*args) is False, (pos, junk)


def test_inclusion_edge_cases():
    r = root(CT_LEAVES[:5])
    proof = inclusion_proof(CT_LEAVES[:5], 4)
    assert not verify_inclusion(CT_LEAVES[4], 5, 5, proof, r)   # index == size
    assert not verify_inclusion(CT_LEAVES[4], 4, 0, proof, r)   # empty tree holds nothing
    assert not verify_inclusion(CT_LEAVES[4], 4, 5, proof + proof[:1], r)
    assert not verify_inclusion(CT_LEAVES[4], 4, 5, proof[:-1], r)
    assert verify_inclusion(b"", 0, 1, [], root([b""]))
    assert not verify_inclusion(b"", 0, 1, [EMPTY_ROOT], root([b""]))


def test_consistency_degenerate_cases():
    r4, r5 = root(CT_LEAVES[:4]), root(CT_LEAVES[:5])
    assert verify_consistency(4, 4, r4, r4, [])
    assert not verify_consistency(4, 4, r4, r5, [])
    assert not verify_consistency(4, 4, r4, r4, [r4])
    assert verify_consistency(0, 5, EMPTY_ROOT, r5, [])  # the empty tree is a prefix of every tree
    assert not verify_consistency(0, 5, r4, r5, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r5, [r5])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, r4, [])
    assert not verify_consistency(5, 4, r5, r4, consistency_proof(CT_LEAVES[:5], 4))
    assert not verify_consistency(3, 5, root(CT_LEAVES[:3]), r5, [])


# --- exhaustive tampering on small trees -------------------------------------------------------------

SMALL = [bytes([i, i * 7 % 256]) for i in range(17)]
SMALL_ROOTS = [root(SMALL[:n]) for n in range(len(SMALL) + 1)]


def test_every_byte_flip_of_every_small_inclusion_proof_fails():
    for n in range(1, len(SMALL) + 1):
        for i in range(n):
            proof = inclusion_proof(SMALL[:n], i)
            for e in range(len(proof)):
                for byte in range(32):
                    assert not verify_inclusion(SMALL[i], i, n, flip(proof, e, byte), SMALL_ROOTS[n])


def test_every_byte_flip_of_every_small_consistency_proof_fails():
    for n in range(1, len(SMALL) + 1):
        for m in range(1, n):
            proof = consistency_proof(SMALL[:n], m)
            for e in range(len(proof)):
                for byte in range(32):
                    tampered = flip(proof, e, byte)
                    assert not verify_consistency(m, n, SMALL_ROOTS[m], SMALL_ROOTS[n], tampered)


# --- properties over random trees --------------------------------------------------------------------

# Distinct leaves: with duplicates a proof legitimately proves the twin leaf's position too.
distinct_leaves = st.lists(st.binary(max_size=12), unique=True, max_size=70)
nonempty_distinct_leaves = st.lists(st.binary(max_size=12), unique=True, min_size=1, max_size=70)
FAST = settings(max_examples=40, deadline=None)


@FAST
@given(st.lists(st.binary(max_size=12), max_size=70))
def test_root_matches_naive_reference(leaves):
    assert root(leaves) == ref_mth(leaves)
    assert root_from_leaf_hashes([leaf_hash(d) for d in leaves]) == ref_mth(leaves)


@FAST
@given(leaves=nonempty_distinct_leaves, data=st.data())
def test_inclusion_proofs_verify_and_tampering_fails(leaves, data):
    n, r = len(leaves), root(leaves)
    # One tampering recipe per example, applied to every index, keeps the test fast.
    byte = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    other_size = data.draw(st.integers(0, n + 10).filter(lambda s: s != n), label="other_size")
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof == [h for _, h in ref_path(i, leaves)]
        assert verify_inclusion(leaves[i], i, n, proof, r)

        for e in range(len(proof)):
            assert not verify_inclusion(leaves[i], i, n, flip(proof, e, byte, mask), r)
        assert not verify_inclusion(leaves[i] + b"!", i, n, proof, r)
        if len(proof) > 1:
            assert not verify_inclusion(leaves[i], i, n, proof[:-1], r)
        assert not verify_inclusion(leaves[i], i, n, proof + [r], r)
        # Within one tree size every index has its own path from the root, so another index fails.
        for j in {(i + 1) % n, (i + n // 2) % n, n} - {i}:
            assert not verify_inclusion(leaves[i], j, n, proof, r)
        # A proof does not pin the tree size on its own (the root does): leaf 0 of 3 and of 4 are
        # both "left, left". Another size is accepted exactly when RFC 6962 gives it the same path.
        same_shape = i < other_size and path_shape(i, other_size) == path_shape(i, n)
        assert verify_inclusion(leaves[i], i, other_size, proof, r) == same_shape


@FAST
@given(leaves=distinct_leaves, data=st.data())
def test_consistency_proofs_verify_and_tampering_fails(leaves, data):
    n = len(leaves)
    roots = [root(leaves[:m]) for m in range(n + 1)]
    byte = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    other_new = data.draw(st.integers(1, n + 10), label="other_new")
    for m in range(n + 1):
        proof = consistency_proof(leaves, m)
        assert verify_consistency(m, n, roots[m], roots[n], proof)
        if m in (0, n):
            assert proof == []
            continue
        assert proof == [h for _, h in ref_subproof(m, leaves, True)]

        for e in range(len(proof)):
            assert not verify_consistency(m, n, roots[m], roots[n], flip(proof, e, byte, mask))
        assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
        assert not verify_consistency(m, n, roots[m], roots[n], proof + [roots[n]])
        assert not verify_consistency(m, n, roots[m - 1], roots[n], proof)
        assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)
        assert not verify_consistency(m, n, roots[m], roots[m], proof)
        # A different old size with the same old root never verifies ...
        for m2 in {m - 1, m + 1, n} - {m}:
            if m2 > 0:
                assert not verify_consistency(m2, n, roots[m], roots[n], proof)
        # ... and, as with inclusion, a different new size verifies exactly when it has the same shape.
        if other_new != n and other_new > m:
            expected = subproof_shape(m, other_new) == subproof_shape(m, n)
            assert verify_consistency(m, other_new, roots[m], roots[n], proof) == expected
