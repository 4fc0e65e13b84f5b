"""Multi-index hashing: exact Hamming radius search over binary codes, sub-linear in their number.

Split each B-bit code into m chunks. If two codes are within distance R, then by the pigeonhole principle some
chunk i is within r_i of the query's chunk i whenever sum(r_i + 1) > R. So for every chunk we look up every
chunk value within r_i of the query's (a "probe": a table bucket), and check the full distance of only the
codes found there. Nothing within R is missed; the result is exactly a brute-force scan's (Norouzi, Punjani,
Fleet: "Fast Exact Search in Hamming Space with Multi-Index Hashing", 2014).

Each chunk's table is a sorted permutation of the rows plus an offset per chunk value (CSR) and a copy of (part of)
the codes in that order, so a probe is two array reads and one run of codes; the probe-and-verify loop is a small Numba
kernel (`_mih_kernel`), everything else vectorised NumPy: no per-probe Python. Chunk sizes follow the number of rows
(about log2 N bits, so a bucket holds ~1 code of random data); `plan` picks the chunking with the fewest
expected probes + candidates. Tables are plain arrays, so they can be memory-mapped from disk and shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import combinations
from math import comb

import numpy as np

#: Cost of a candidate relative to a probe. A probe is a random read of a bucket's bounds and of its first codes;
#: a candidate, one code read in a run and a popcount. Measured at 1 M works (8 pHash codes, radius 10): 3 chunks
#: of 21-22 bits (27k probes, 14k candidates) 0.82 ms, 4 of 16 bits (3.4k probes, 52k candidates) 0.64 ms.
_CANDIDATE_COST = 0.5
#: Of codes wider than this, each table keeps only this many bits, the 64-bit words that overlap its chunk least:
#: a candidate whose kept bits are already farther than the radius is rejected there, and the few that are not
#: (a random 128-bit slice is within 40 of a query's once in ~10^5) read their full code from the rows. PDQ at 1 M
#: works: 14 tables x 16 instead of 32 bytes per code, 224 MB less.
KEPT_BITS = 128


@dataclass(frozen=True)
class Chunk:
    start: int  # first bit (most significant bit of byte 0 is bit 0)
    bits: int
    radius: int  # probe every chunk value within this distance of the query's


def _probes(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def plan(code_bits: int, radius: int, rows: int) -> tuple[Chunk, ...]:
    """The chunking with the lowest expected cost per query on uniform codes (pigeonhole-exact for `radius`).

    With more chunks than radius + 1, some chunks get radius -1: they are not needed and not kept.
    """
    best, best_cost = None, float("inf")
    for m in range(1, code_bits + 1):
        sizes = [code_bits // m + (i < code_bits % m) for i in range(m)]
        if max(sizes) > 24:  # 2^24 offsets per table is the most worth holding
            continue
        q, extra = divmod(radius + 1, m)  # sum(r_i + 1) = radius + 1: the tightest exact allocation
        # Give the extra radius to the smallest chunks: fewer probes for the same guarantee.
        order = sorted(range(m), key=lambda i: sizes[i])
        radii = [q - 1] * m
        for i in order[:extra]:
            radii[i] += 1
        cost = sum(_probes(b, r) * (1 + _CANDIDATE_COST * rows / 2 ** b) for b, r in zip(sizes, radii) if r >= 0)
        if cost < best_cost:
            starts = np.cumsum([0] + sizes[:-1]).tolist()
            best, best_cost = tuple(Chunk(s, b, r) for s, b, r in zip(starts, sizes, radii) if r >= 0), cost
    return best


@lru_cache(maxsize=None)
def _masks(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit value with at most `radius` ones: XORed with a key, the keys within `radius` of it."""
    out = [0]
    for k in range(1, radius + 1):
        out += [sum(1 << b for b in c) for c in combinations(range(bits), k)]
    return np.asarray(out, dtype=np.int64)


def _weights(chunks: tuple[Chunk, ...], code_bits: int) -> np.ndarray:
    """(code_bits, m) matrix taking a code's bits to its chunk values (float32 is exact below 2^24)."""
    w = np.zeros((code_bits, len(chunks)), np.float32)
    for j, c in enumerate(chunks):
        w[c.start:c.start + c.bits, j] = 2.0 ** np.arange(c.bits - 1, -1, -1)
    return w


def chunk_keys(codes: np.ndarray, chunks: tuple[Chunk, ...], block: int = 1 << 14) -> np.ndarray:
    """(n, m) int64 chunk values of (n, bytes) uint8 codes, most significant bit first."""
    w = _weights(chunks, codes.shape[1] * 8)
    out = np.empty((len(codes), len(chunks)), dtype=np.int64)
    for at in range(0, len(codes), block):
        out[at:at + block] = np.unpackbits(np.asarray(codes[at:at + block]), axis=1).astype(np.float32) @ w
    return out


def query_keys(queries: np.ndarray, chunks: tuple[Chunk, ...]) -> np.ndarray:
    """`chunk_keys` of a few codes: each chunk (<= 24 bits) lies within 4 bytes, read as one big-endian word and
    shifted (for 8 queries ~5x cheaper than unpacking bits, and than Python integers)."""
    at, shift, mask = _key_reads(chunks)
    q = np.zeros((len(queries), queries.shape[1] + 4), np.int64)
    q[:, :queries.shape[1]] = queries
    words = (q[:, at] << np.array([24, 16, 8, 0])).sum(axis=2)  # (q, m)
    return (words >> shift) & mask


@lru_cache(maxsize=None)
def _key_reads(chunks: tuple[Chunk, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = np.array([c.start // 8 for c in chunks])
    shift = np.array([32 - c.start % 8 - c.bits for c in chunks])
    return first[:, None] + np.arange(4), shift, np.array([(1 << c.bits) - 1 for c in chunks])


@dataclass(frozen=True)
class Tables:
    """The chunk tables over `rows` rows of a code array (all of [0, rows), or a subset): `order` (m, rows) int32
    row positions, `offsets` (sum 2^b + 1), and `codes` (m, rows, k) uint64: each table's codes in its own bucket
    order, so a probe reads its candidates' codes in one run instead of one random read per candidate (~3x faster
    searches), of each code only the k 64-bit words `kept` (m, k) names (`kept_words`)."""

    chunks: tuple[Chunk, ...]
    rows: int
    order: np.ndarray
    offsets: np.ndarray
    codes: np.ndarray
    words: int  # 64-bit words per full code

    @cached_property
    def kept(self) -> np.ndarray:
        return kept_words(self.chunks, self.words)

    @property
    def bases(self) -> np.ndarray:
        return np.cumsum([0] + [(1 << c.bits) + 1 for c in self.chunks[:-1]]).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return self.order.nbytes + self.offsets.nbytes + self.codes.nbytes

    @cached_property
    def probe_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per probe of one query: its chunk, its mask, and the start of its chunk's offsets."""
        chunk = np.concatenate([np.full(len(_masks(c.bits, c.radius)), j) for j, c in enumerate(self.chunks)])
        masks = np.concatenate([_masks(c.bits, c.radius) for c in self.chunks])
        return chunk, masks, self.bases[chunk]


def kept_count(words: int) -> int:
    """How many of a code's `words` 64-bit words each table keeps."""
    return min(words, KEPT_BITS // 64)


def kept_words(chunks: tuple[Chunk, ...], words: int) -> np.ndarray:
    """(m, k) the 64-bit words of a code each chunk's table keeps, in order: all of them up to KEPT_BITS, else the
    k = kept_count(words) that share the fewest bits with the chunk (its own bits say least: they are near the
    query's in every bucket probed)."""
    k = kept_count(words)
    out = np.empty((len(chunks), k), np.int64)
    for j, c in enumerate(chunks):
        overlap = [max(0, min(c.start + c.bits, 64 * (w + 1)) - max(c.start, 64 * w)) for w in range(words)]
        out[j] = np.sort(np.argsort(overlap, kind="stable")[:k])
    return out


def build(codes: np.ndarray, chunks: tuple[Chunk, ...], rows: np.ndarray | None = None) -> Tables:
    """Tables over every row of `codes`, or over only `rows` (positions into codes): a search then finds only
    those rows, and reports their positions in `codes`."""
    keys = chunk_keys(codes if rows is None else np.take(codes, rows, axis=0), chunks)
    n = len(keys)
    codes64 = np.ascontiguousarray(codes).view(np.uint64)
    kept = kept_words(chunks, codes64.shape[1])
    order = np.empty((len(chunks), n), dtype=np.int32)
    ordered = np.empty((len(chunks), n, kept.shape[1]), dtype=np.uint64)
    offsets = []
    for j, c in enumerate(chunks):
        order[j] = np.argsort(keys[:, j], kind="stable")
        if rows is not None:
            order[j] = np.take(rows, order[j])
        for i, w in enumerate(kept[j]):
            np.take(codes64[:, w], order[j], out=ordered[j, :, i])
        counts = np.bincount(keys[:, j], minlength=1 << c.bits)
        offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return Tables(chunks, n, order, np.concatenate(offsets), ordered, codes64.shape[1])


def search(tables: Tables, codes: np.ndarray, queries: np.ndarray, radius: int) -> tuple[np.ndarray, ...]:
    """(position, distance, query) of every row the tables hold within `radius` of each query: exact, each pair
    once. `codes` is the (n, bytes) uint8 array the tables were built over, `queries` (q, bytes) uint8. `radius`
    may be smaller than the tables were planned for, never larger.
    """
    if tables.rows == 0 or len(queries) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    keys = query_keys(queries, tables.chunks)  # (q, m)
    chunk, masks, bases = tables.probe_plan
    positions, d, qs = _kernel()(tables.offsets, tables.order, tables.codes, tables.kept,
                                 np.ascontiguousarray(codes).view(np.uint64),
                                 np.ascontiguousarray(queries).view(np.uint64), keys, chunk, masks, bases, radius)
    # A row can sit in the probed buckets of several chunks: report each (row, query) pair once.
    pair = np.unique(positions * len(queries) + qs, return_index=True)[1]
    return positions[pair], d[pair], qs[pair]


def _kernel():
    from ._mih_kernel import search  # Numba: imported only once a registry is large enough for tables
    return search
