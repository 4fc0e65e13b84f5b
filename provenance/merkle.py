"""RFC 6962 / RFC 9162 Merkle tree over SHA-256: roots, inclusion and consistency proofs.

Pure functions over sequences of bytes, standard library only. Leaves and interior nodes are hashed
with distinct one-byte prefixes (0x00 / 0x01) so that a leaf can never be passed off as a node
(second-preimage attack on naive Merkle trees).

Building functions raise ``ValueError``/``IndexError`` on impossible arguments, because that is a
programming error; verifying functions never raise and answer ``False``, because their inputs come
from untrusted proofs.
"""
from __future__ import annotations

import hashlib
import operator
from typing import Sequence

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "leaf_hash", "node_hash", "root", "root_from_leaf_hashes",
    "inclusion_proof", "verify_inclusion", "consistency_proof", "verify_consistency",
]

HASH_SIZE = 32
#: MTH({}) as defined by RFC 6962 section 2.1: the hash of the empty string, not of a prefix.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    h = hashlib.sha256(b"\x00")
    h.update(data)  # update() instead of concatenation: no copy of large leaves
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _parent_level(level: list[bytes]) -> list[bytes]:
    # RFC 6962 splits n leaves at the largest power of two k < n, so every left subtree is perfect
    # and only the right edge can be ragged. Pairing neighbours bottom-up and promoting a lone last
    # node unchanged therefore builds exactly the same tree, without recursion and in O(n).
    parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def _hashes(leaves: Sequence[bytes], hashed: bool) -> list[bytes]:
    if not hashed:
        return [leaf_hash(d) for d in leaves]
    hashes = list(leaves)
    # Catches the easy mistake of passing raw data with hashed=True, which would otherwise
    # produce a plausible-looking but meaningless root.
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} is {len(h)} bytes, expected {HASH_SIZE}")
    return hashes


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash (RFC 6962 MTH) of leaves that are already hashed with `leaf_hash`."""
    level = _hashes(hashes, hashed=True)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash (RFC 6962 MTH) of raw leaf data; ``root([]) == sha256(b"")``."""
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int, *, hashed: bool = False) -> list[bytes]:
    """Audit path (RFC 6962 PATH) for leaf `index`, ordered from the leaf's sibling up to the root.

    `leaves` is raw leaf data, or leaf hashes when `hashed` is true. Raises IndexError when
    `index` is not in ``range(len(leaves))`` (negative indices are not wrapped: a proof for
    "the last leaf" must name its position).
    """
    level = _hashes(leaves, hashed)
    index = operator.index(index)
    if not 0 <= index < len(level):
        raise IndexError(f"leaf index {index} out of range for a tree of {len(level)} leaves")
    proof = []
    while len(level) > 1:
        sibling = index ^ 1
        # A promoted last node has no sibling at this level, and PATH emits nothing for it.
        if sibling < len(level):
            proof.append(level[sibling])
        level = _parent_level(level)
        index //= 2
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int, *, hashed: bool = False) -> list[bytes]:
    """Proof (RFC 6962 PROOF/SUBPROOF) that the first `old_size` leaves are a prefix of `leaves`.

    Empty when `old_size` is 0 or ``len(leaves)``: nothing needs proving. Raises ValueError when
    `old_size` is outside ``0..len(leaves)``.
    """
    hashes = _hashes(leaves, hashed)
    m, n = operator.index(old_size), len(hashes)
    if not 0 <= m <= n:
        raise ValueError(f"old size {m} out of range for a tree of {n} leaves")
    if m in (0, n):
        return []
    # SUBPROOF, unrolled: each step descends into the subtree that still contains the old/new
    # boundary and records the other subtree's root. Those records come out root-first but the
    # proof lists them leaf-first, hence `tail` is reversed at the end. The subtrees are
    # disjoint, so hashing them all is O(n) overall.
    lo, hi, tail, old_is_whole_subtree = 0, n, [], True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # largest power of two < hi - lo
        if m <= k:
            tail.append(root_from_leaf_hashes(hashes[lo + k:hi]))
            hi = lo + k
        else:
            tail.append(root_from_leaf_hashes(hashes[lo:lo + k]))
            lo, m, old_is_whole_subtree = lo + k, m - k, False
    # When the old tree is itself one of the subtrees, the verifier already holds its root.
    head = [] if old_is_whole_subtree else [root_from_leaf_hashes(hashes[lo:hi])]
    return head + tail[::-1]


def _is_size(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _is_digest(x: object) -> bool:
    return isinstance(x, (bytes, bytearray)) and len(x) == HASH_SIZE


def _digest_list(proof: object) -> list[bytes] | None:
    try:
        items = list(proof)  # type: ignore[call-overload]
    except TypeError:
        return None
    return items if all(_is_digest(p) for p in items) else None


def verify_inclusion(leaf_data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True iff `proof` shows `leaf_data` at `index` in the tree of `size` leaves with this `root`.

    RFC 9162 section 2.1.3.2. Malformed input of any kind gives False, never an exception.
    """
    path = _digest_list(proof)
    if (path is None or not isinstance(leaf_data, (bytes, bytearray, memoryview)) or not _is_digest(root)
            or not _is_size(index) or not _is_size(size) or index >= size):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf_data)
    for p in path:
        if sn == 0:  # proof longer than the tree is tall
            return False
        if fn & 1 or fn == sn:  # we are a right child, or the last node and so promoted
            r = node_hash(p, r)
            # Skip the levels where the last node is promoted: they consume no proof element.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True iff `proof` shows the tree (`old_size`, `old_root`) is a prefix of (`new_size`, `new_root`).

    RFC 9162 section 2.1.4.2, plus the trivial cases it leaves out: equal sizes need equal roots and
    an empty proof; an empty old tree needs the empty root and an empty proof. Never raises.
    """
    path = _digest_list(proof)
    if (path is None or not _is_digest(old_root) or not _is_digest(new_root)
            or not _is_size(old_size) or not _is_size(new_size) or old_size > new_size):
        return False
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    # A power-of-two old tree is a complete subtree of the new one, so the prover omits its root.
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # climb to the lowest ancestor whose left edge the old tree covers
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:  # c is on our left: it belongs to both the old and the new tree
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:  # c is on our right: only in the new tree
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
