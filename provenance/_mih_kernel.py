"""The multi-index probe-and-verify loop (`mih.search`), compiled by Numba.

Measured at 1 M works (benchmarks/scale.py, 2 cores): 8 PDQ variants probe ~19k buckets holding ~66k candidates.
As vectorised NumPy over one copy of the codes that took ~3.9 ms (a dozen passes over 66k-long temporaries, and a
random 32-byte gather per candidate); this kernel, over each table's own copy of the codes, ~1.6 ms (8 pHash
codes: ~0.25 ms).
The second pass asks the processor for the codes of the run PREFETCH runs ahead (LLVM's prefetch hint) while it
checks this one: the runs lie at random in ~224 MB of tables, so each is a cache miss, and without the hint the
processor has only ~2 of them in flight. 1 M works, 720 global searches of 240 planted copies replayed (a worse
day for this machine's memory: the same kernel measured 3.6-4.4 ms per query, 8 PDQ + 8 pHash + 8 equalised-PDQ
codes): 1.85-2.2 ms with the hint 16 runs ahead (4 ahead: 2.8, 8: 2.5, 32: 2.7, 64: 2.6; a plain load instead of
the hint: no faster, it holds up the loop).
`cache=True` keeps the machine code beside this file (or in Numba's user cache, or the temporary directory:
`_jit`): it is compiled once per machine.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import ensure_cache

ensure_cache()

_M1, _M2, _M4, _H = (np.uint64(v) for v in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F,
                                            0x0101010101010101))
PREFETCH = 16  # runs ahead


@intrinsic
def _prefetch(typingctx, array, row):
    """Hint the processor to fetch array[row, 0] into its caches (a 2-D array; no fault, no wait, no result)."""
    def codegen(context, builder, signature, args):
        ty = signature.args[0]
        ptr = cgutils.get_item_pointer(context, builder, ty, context.make_array(ty)(context, builder, args[0]),
                                       [args[1], context.get_constant(types.intp, 0)])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(),
                                                                                          [i8p, i32, i32, i32]))
        # read, keep in all cache levels, data
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(array, row), codegen


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
    n, runs = 0, nq * npr
    for e in range(runs):
        ahead = e + PREFETCH
        if ahead < runs and starts[ahead] < ends[ahead]:
            _prefetch(flat, starts[ahead])
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
