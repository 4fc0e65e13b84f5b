"""Brute-force nearest ORB descriptors by Hamming distance (`local.LocalIndex`'s votes: the nearest within each
work, `nearest_each`; `local._two_nearest`), compiled by Numba.

The works' descriptors are laid out as four rows of 64-bit words ((4, n): word k of every descriptor side by side),
so that LLVM computes the distances to several descriptors at once in the processor's vector registers. faiss's
IndexBinaryFlat compares one pair at a time: 500 copy descriptors against 12,500 (the ~25 works a bounded local
stage shortlists) took 12 - 17 ms on this machine's cores, this 7 - 10 ms, the same answers (ties: the lower
index, as faiss and OpenCV's BFMatcher give).
`cache=True` keeps the machine code (`_jit`): it is compiled once per machine.
"""
import numba
import numpy as np

from ._jit import ensure_cache
from ._mih_kernel import _popcount

ensure_cache()

FAR = 1 << 30  # the distance given where there is no such neighbour (fewer descriptors than asked for)


def columns(descriptors: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 ORB descriptors as the kernels read them: (4, n) uint64."""
    return np.ascontiguousarray(np.ascontiguousarray(descriptors).view(np.uint64).T)


def words(descriptors: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 copy descriptors as (n, 4) uint64."""
    return np.ascontiguousarray(descriptors).view(np.uint64)


def nearest_each(query: np.ndarray, cols: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each query descriptor's nearest distance within each run of `cols`, runs starting at `starts` (one more entry
    than runs: the end): (runs, n), FAR for an empty run. One pass over all of them: 21 runs of 500 against 500
    copy descriptors 4.95 ms at best, one nearest-descriptor search over the same 5.66, a search per run 6.3."""
    out = np.empty((len(starts) - 1, len(query)), np.int64)
    _nearest_each(words(query), cols[0], cols[1], cols[2], cols[3], starts, out)
    return out


def two_nearest(query: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's two nearest of `cols`: (distances, indices), (n, 2) each, nearest first (FAR, -1
    where `cols` has only one)."""
    dist, at = np.empty((len(query), 2), np.int64), np.empty((len(query), 2), np.int64)
    _two_nearest(words(query), cols[0], cols[1], cols[2], cols[3], dist, at)
    return dist, at


@numba.njit(cache=True, nogil=True, fastmath=True)
def _distances(q, i, c0, c1, c2, c3, d):
    a0, a1, a2, a3 = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
    for j in range(c0.shape[0]):
        d[j] = _popcount(a0 ^ c0[j]) + _popcount(a1 ^ c1[j]) + _popcount(a2 ^ c2[j]) + _popcount(a3 ^ c3[j])


@numba.njit(cache=True, nogil=True)
def _two_nearest(q, c0, c1, c2, c3, dist, at):
    d = np.empty(c0.shape[0], np.int64)
    for i in range(q.shape[0]):
        _distances(q, i, c0, c1, c2, c3, d)  # all at once (vectorised), then the least: the lower index on a tie
        b1, j1, b2, j2 = FAR, -1, FAR, -1
        for j in range(d.shape[0]):
            if d[j] < b1:
                b2, j2 = b1, j1
                b1, j1 = d[j], j
            elif d[j] < b2:
                b2, j2 = d[j], j
        dist[i, 0], at[i, 0], dist[i, 1], at[i, 1] = b1, j1, b2, j2


@numba.njit(cache=True, nogil=True)
def _nearest_each(q, c0, c1, c2, c3, starts, out):
    d = np.empty(c0.shape[0], np.int64)
    for i in range(q.shape[0]):
        _distances(q, i, c0, c1, c2, c3, d)
        for r in range(starts.shape[0] - 1):
            out[r, i] = d[starts[r]:starts[r + 1]].min() if starts[r + 1] > starts[r] else FAR
