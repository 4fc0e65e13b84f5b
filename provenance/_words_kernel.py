"""The two inner loops of the bounded local index (`localindex`), compiled by Numba (cached once per machine).

`assign` / `assign2`: the visual word(s) of each ORB descriptor, 2 x 256 (3 x 256) Hamming comparisons down the
vocabulary tree (~1 us per descriptor on one core; NumPy's broadcast popcount was ~5x slower, faiss needs one index
per tree node).
`vote`: idf-weighted votes of a copy's words over the posting lists, straight into a per-work score array, so a
query never materialises the millions of postings it reads at a million works.
"""
import numba
import numpy as np

from ._mih_kernel import _popcount


@numba.njit(cache=True, nogil=True, inline="always")
def _distance(a0, a1, a2, a3, centroids, c):
    return (_popcount(a0 ^ centroids[c, 0]) + _popcount(a1 ^ centroids[c, 1]) + _popcount(a2 ^ centroids[c, 2])
            + _popcount(a3 ^ centroids[c, 3]))


@numba.njit(cache=True, nogil=True, inline="always")
def _nearest(a0, a1, a2, a3, centroids):
    """Index of the nearest of centroids ((B, 4) uint64) to the descriptor (a0..a3); ties go to the lower index."""
    best, arg = 1 << 20, 0
    for c in range(centroids.shape[0]):
        s = _distance(a0, a1, a2, a3, centroids, c)
        if s < best:
            best, arg = s, c
    return arg


@numba.njit(cache=True, nogil=True)
def assign(d64, top64, leaf64, out):
    """out[i] = the word of descriptor d64[i] ((n, 4) uint64): nearest first-level centroid c (top64, (B, 4)),
    then nearest of its B children (leaf64[c], (B, B, 4)); word = c * B + child. Ties go to the lower index."""
    branch = top64.shape[0]
    for i in range(d64.shape[0]):
        a0, a1, a2, a3 = d64[i, 0], d64[i, 1], d64[i, 2], d64[i, 3]
        node = _nearest(a0, a1, a2, a3, top64)
        out[i] = node * branch + _nearest(a0, a1, a2, a3, leaf64[node])


@numba.njit(cache=True, nogil=True)
def assign2(d64, top64, leaf64, out):
    """Two words per descriptor, for a query: the nearest leaf under each of the two nearest first-level centroids
    (out[i, 0] is `assign`'s word). A copy's descriptor that moved across a first-level boundary still meets its
    original."""
    branch = top64.shape[0]
    for i in range(d64.shape[0]):
        a0, a1, a2, a3 = d64[i, 0], d64[i, 1], d64[i, 2], d64[i, 3]
        b1, c1, b2, c2 = 1 << 20, 0, 1 << 20, 0
        for c in range(branch):
            s = _distance(a0, a1, a2, a3, top64, c)
            if s < b1:
                b2, c2 = b1, c1
                b1, c1 = s, c
            elif s < b2:
                b2, c2 = s, c
        out[i, 0] = c1 * branch + _nearest(a0, a1, a2, a3, leaf64[c1])
        out[i, 1] = c2 * branch + _nearest(a0, a1, a2, a3, leaf64[c2])


@numba.njit(cache=True, nogil=True)
def vote(offsets, rows, blocks, words, weights, scores, touched, n):
    """For each query word w, weights[k] onto scores[i] of every row i of its postings, which are, per block h of
    65,536 rows, h * 65,536 + rows[offsets[w * blocks + h]:offsets[w * blocks + h + 1]] (the written lists: 16-bit
    rows, one block per 65,536 works; the delta: full rows, one block). The rows seen for the first time are
    appended to touched (from position n). Returns the new n."""
    for k in range(words.shape[0]):
        w, weight = words[k], weights[k]
        for h in range(blocks):
            base = h << 16
            for j in range(offsets[w * blocks + h], offsets[w * blocks + h + 1]):
                i = base + rows[j]
                if scores[i] == 0:
                    touched[n] = i
                    n += 1
                scores[i] += weight
    return n
