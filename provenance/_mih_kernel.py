"""The multi-index probe-and-verify loop (`mih.search`), compiled by Numba.

Measured at 1 M works (benchmarks/scale.py, 2 cores): 8 PDQ variants probe ~19k buckets holding ~66k candidates.
As vectorised NumPy over one copy of the codes that took ~3.9 ms (a dozen passes over 66k-long temporaries, and a
random 32-byte gather per candidate); this kernel, over each table's own copy of the codes, ~1.6 ms (8 pHash
codes: ~0.25 ms).
`cache=True` keeps the machine code beside this file (or in Numba's user cache): it is compiled once per machine.
"""
import numba
import numpy as np

_M1, _M2, _M4, _H = (np.uint64(v) for v in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F,
                                            0x0101010101010101))


@numba.njit(cache=True, nogil=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H) >> np.uint64(56))


@numba.njit(cache=True, nogil=True)
def search(offsets, order, codes, kept, full, q64, keys, chunk, masks, bases, radius):
    """(position, distance, query) of every row within `radius`; a row found by two chunks comes twice.

    Per query qi and probe p: the bucket bases[p] + (keys[qi, chunk[p]] ^ masks[p]) of chunk j = chunk[p]'s table,
    whose codes are the run codes[j, start:end] (stored in that table's order: of each code the 64-bit words
    kept[j]) and rows order[j, start:end]. A candidate within `radius` on its kept words is checked on its full
    code, full[row] (all of it when every word is kept).
    Two passes: every bucket's bounds first, then the runs of codes. Reading each bucket's codes as its bounds are
    read makes the processor wait on every bucket in turn (6 ms for 8 PDQ codes at 1 M works); with the bounds
    known up front it overlaps those cache misses. (A middle pass that listed the candidates first cost 1.71 vs
    1.57 ms for 8 PDQ codes, 0.53 vs 0.25 ms for 8 pHash codes, at 1 M works.)
    """
    nq, npr, rows, k, words = q64.shape[0], chunk.shape[0], codes.shape[1], codes.shape[2], full.shape[1]
    starts, ends = np.empty(nq * npr, np.int64), np.empty(nq * npr, np.int64)
    total = 0
    for qi in range(nq):
        for p in range(npr):
            b = bases[p] + (keys[qi, chunk[p]] ^ masks[p])
            e = qi * npr + p
            starts[e] = offsets[b] + chunk[p] * rows  # into the (m * rows) flattened tables
            ends[e] = offsets[b + 1] + chunk[p] * rows
            total += ends[e] - starts[e]
    flat, flat_order = codes.reshape(-1, k), order.reshape(-1)
    at, dist, of = np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, np.int64)
    n = 0
    for e in range(nq * npr):
        qi, j = e // npr, chunk[e % npr]
        for a in range(starts[e], ends[e]):
            d = 0
            for i in range(k):
                d += _popcount(flat[a, i] ^ q64[qi, kept[j, i]])
            if d <= radius and k < words:
                r, d = flat_order[a], 0
                for w in range(words):
                    d += _popcount(full[r, w] ^ q64[qi, w])
            if d <= radius:
                at[n], dist[n], of[n] = a, d, qi
                n += 1
    return flat_order[at[:n]].astype(np.int64), dist[:n], of[:n]
