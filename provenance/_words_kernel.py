"""The two inner loops of the bounded local index (`localindex`), compiled by Numba (cached once per machine).

`assign`: the visual word of each ORB descriptor, 2 x 256 Hamming comparisons down the vocabulary tree (~1 us per
descriptor on one core; NumPy's broadcast popcount was ~5x slower, faiss needs one index per tree node).
`vote`: idf-weighted votes of a copy's words over the posting lists, straight into a per-work score array, so a
query never materialises the millions of postings it reads at a million works.
"""
import numba
import numpy as np

from ._mih_kernel import _popcount


@numba.njit(cache=True, nogil=True)
def assign(d64, top64, leaf64, out):
    """out[i] = the word of descriptor d64[i] ((n, 4) uint64): nearest first-level centroid c (top64, (B, 4)),
    then nearest of its B children (leaf64[c], (B, B, 4)); word = c * B + child. Ties go to the lower index."""
    branch = top64.shape[0]
    for i in range(d64.shape[0]):
        a0, a1, a2, a3 = d64[i, 0], d64[i, 1], d64[i, 2], d64[i, 3]
        best, arg = 1 << 20, 0
        for c in range(branch):
            s = (_popcount(a0 ^ top64[c, 0]) + _popcount(a1 ^ top64[c, 1]) + _popcount(a2 ^ top64[c, 2])
                 + _popcount(a3 ^ top64[c, 3]))
            if s < best:
                best, arg = s, c
        best2, arg2 = 1 << 20, 0
        for c in range(branch):
            s = (_popcount(a0 ^ leaf64[arg, c, 0]) + _popcount(a1 ^ leaf64[arg, c, 1])
                 + _popcount(a2 ^ leaf64[arg, c, 2]) + _popcount(a3 ^ leaf64[arg, c, 3]))
            if s < best2:
                best2, arg2 = s, c
        out[i] = arg * branch + arg2


@numba.njit(cache=True, nogil=True)
def vote(offsets, ids, words, weights, scores, touched, n):
    """For each query word w, weights[k] onto scores[i] of every row i in ids[offsets[w]:offsets[w + 1]]; the rows
    seen for the first time are appended to touched (from position n). Returns the new n."""
    for k in range(words.shape[0]):
        w, weight = words[k], weights[k]
        for j in range(offsets[w], offsets[w + 1]):
            i = ids[j]
            if scores[i] == 0:
                touched[n] = i
                n += 1
            scores[i] += weight
    return n


@numba.njit(cache=True, nogil=True)
def vote_blocks(offsets, low, blocks, words, weights, scores, touched, n):
    """`vote` over the written lists: word w's postings in block h (rows h * 65,536 + low[j]) are
    low[offsets[w * blocks + h]:offsets[w * blocks + h + 1]]."""
    for k in range(words.shape[0]):
        w, weight = words[k], weights[k]
        for h in range(blocks):
            base = h << 16
            for j in range(offsets[w * blocks + h], offsets[w * blocks + h + 1]):
                i = base + low[j]
                if scores[i] == 0:
                    touched[n] = i
                    n += 1
                scores[i] += weight
    return n


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
            s = (_popcount(a0 ^ top64[c, 0]) + _popcount(a1 ^ top64[c, 1]) + _popcount(a2 ^ top64[c, 2])
                 + _popcount(a3 ^ top64[c, 3]))
            if s < b1:
                b2, c2 = b1, c1
                b1, c1 = s, c
            elif s < b2:
                b2, c2 = s, c
        for slot in range(2):
            node = c1 if slot == 0 else c2
            best, arg = 1 << 20, 0
            for c in range(branch):
                s = (_popcount(a0 ^ leaf64[node, c, 0]) + _popcount(a1 ^ leaf64[node, c, 1])
                     + _popcount(a2 ^ leaf64[node, c, 2]) + _popcount(a3 ^ leaf64[node, c, 3]))
                if s < best:
                    best, arg = s, c
            out[i, slot] = node * branch + arg
