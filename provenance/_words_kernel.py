"""The inner loops of the bounded local index (`localindex`), compiled by Numba (cached once per machine).

`assign` / `assign2`: the visual word(s) of each ORB descriptor, 2 x 256 (3 x 256) Hamming comparisons down the
vocabulary tree (~1 us per descriptor on one core; NumPy's broadcast popcount was ~5x slower, faiss needs one index
per tree node).
`vote`: idf-weighted votes of a copy's words over the posting lists, straight into a per-work score array, so a
query never materialises the millions of postings it reads at a million works.
`best_rows`: the rows with the best normalised scores. `gather` / `geometry`: the re-rank's correspondences, read
from the same posting lists (each posting keeps its keypoint's position), and its weak geometric check.
"""
import math

import numba
import numpy as np

from ._jit import ensure_cache
from ._mih_kernel import _popcount

ensure_cache()


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
def vote(offsets, rows, blocks, words, weights, scores):
    """For each query word w, weights[k] onto scores[i] of every row i of its postings, which are, per block h of
    65,536 rows, h * 65,536 + rows[offsets[w * blocks + h]:offsets[w * blocks + h + 1]] (the written lists: 16-bit
    rows, one block per 65,536 works; the delta: full rows, one block). At any size a copy's ~1,000 words touch
    nearly every row (7.5 M postings per view at 1 M works), so no list of touched rows is kept."""
    for h in range(blocks):  # block by block: the scores written stay within 256 KB (the cache) for a while
        base = h << 16
        for k in range(words.shape[0]):
            w, weight = words[k], weights[k]
            for j in range(offsets[w * blocks + h], offsets[w * blocks + h + 1]):
                scores[base + rows[j]] += weight


@numba.njit(cache=True, nogil=True)
def best_rows(scores, inv_norm, k):
    """The rows with a vote (scores[i] > 0) whose normalised score scores[i] * inv_norm[i] is among the k highest,
    and those scores: every row scoring at least the k-th best's histogram bin (so at least k rows, a few more where
    the bin is shared; all of them when at most k have a vote). Sequential passes over the scores instead of
    NumPy's temporaries and a partition over all of them."""
    n = scores.shape[0]
    s = np.empty(n, np.float32)
    hi, voted = np.float32(0.0), 0
    for i in range(n):
        v = scores[i] * inv_norm[i]
        s[i] = v
        voted += scores[i] > 0
        hi = max(hi, v)
    bins = 4096
    f = (bins - 1) / hi if hi > 0 else 0.0
    b, m = 0, voted
    if voted > k:
        hist = np.zeros(bins, np.int64)
        for i in range(n):
            if scores[i] > 0:
                hist[int(s[i] * f)] += 1
        b, m = bins - 1, hist[bins - 1]
        while b > 0 and m < k:
            b -= 1
            m += hist[b]
    rows, out = np.empty(m, np.int32), np.empty(m, np.float32)
    m = 0
    for i in range(n):
        if scores[i] > 0 and int(s[i] * f) >= b:
            rows[m], out[m] = i, s[i]
            m += 1
    return rows, out


@numba.njit(cache=True, nogil=True)
def gather(offsets, rows, pxy, blocks, words, slot, first, count, qxy, cap, cw, cq, n, buffer=1 << 17):
    """The correspondences of the candidates of a geometric check, read from the posting lists `vote` reads (with
    each posting's position beside it: pxy[2 j], pxy[2 j + 1]): for each query word w of `words` (ascending) and
    each of its postings whose row i is a candidate (slot[i] >= 0, its place in cw, cq, n), up to `cap` (<= 255)
    pairs of (the work's position, one of the copy's qxy[first[w]:first[w] + count[w]]) appended to cw[s], cq[s]
    while n[s] < cw.shape[1]. A row's postings are in one set of lists (written or delta), so each candidate's
    correspondences come in word order.

    The scan only notes its hits (posting, candidate, copy's positions) in a buffer of `buffer` entries, and
    `_place` copies them out whenever it is full and at the end: written straight into cw and cq (megabytes,
    scattered), the correspondences kept the scan's loads waiting. 1 M works, ~7.3 M postings and ~94,000 hits per
    view: ~21 -> ~14 ms (best of 5), the same correspondences."""
    hit_j, hit_s, hit_q = np.empty(buffer, np.int64), np.empty(buffer, np.int32), np.empty(buffer, np.int32)
    hit_c = np.empty(buffer, np.uint8)
    hits = 0
    for h in range(blocks):  # block by block, as `vote`
        base = h << 16
        for k in range(words.shape[0]):
            w = words[k]
            c = min(count[w], cap, 255)  # hit_c is a byte
            if c == 0:
                continue
            q = first[w]
            for j in range(offsets[w * blocks + h], offsets[w * blocks + h + 1]):
                s = slot[base + rows[j]]
                if s >= 0:
                    hit_j[hits], hit_s[hits], hit_q[hits], hit_c[hits] = j, s, q, c
                    hits += 1
                    if hits == buffer:
                        _place(hit_j, hit_s, hit_q, hit_c, hits, pxy, qxy, cw, cq, n)
                        hits = 0
    _place(hit_j, hit_s, hit_q, hit_c, hits, pxy, qxy, cw, cq, n)


@numba.njit(cache=True, nogil=True)
def _place(hit_j, hit_s, hit_q, hit_c, hits, pxy, qxy, cw, cq, n):
    """`gather`'s hits into the correspondences: posting hit_j[i]'s position with the copy's positions
    qxy[hit_q[i]:hit_q[i] + hit_c[i]], appended to candidate hit_s[i]'s while it has room."""
    most = cw.shape[1]
    for i in range(hits):
        s, j, q = hit_s[i], hit_j[i], hit_q[i]
        for t in range(hit_c[i]):
            m = n[s]
            if m < most:
                cw[s, m, 0], cw[s, m, 1] = pxy[2 * j], pxy[2 * j + 1]
                cq[s, m, 0], cq[s, m, 1] = qxy[q + t, 0], qxy[q + t, 1]
                n[s] = m + 1


@numba.njit(cache=True, nogil=True)
def _bin_tables(scale_bins, angle_bins):
    """What `_bins` reads: a float32 scratch and its int32 view, the exponent's offset, and the tangents of the angle
    bins' edges within a quadrant."""
    ratio = np.empty(1, np.float32)
    quarter = angle_bins // 4
    tangents = np.empty(max(quarter - 1, 0), np.float32)
    for j in range(1, quarter):
        tangents[j - 1] = math.tan(j * 2 * np.pi / angle_bins)
    return ratio, ratio.view(np.int32), scale_bins // 2 - 127, tangents


@numba.njit(cache=True, nogil=True, inline="always")
def _bins(wx, wy, qx, qy, lw, lq, ratio, ratio_bits, offset, tangents):
    """A pair's (scale bin, angle bin) for `geometry`, from its vector on the work (wx, wy) and on the copy (qx, qy)
    and their squared lengths lw, lq, without a logarithm or an arc tangent (~22 -> ~14 ms per view at 1 M works).
    A scale bin is half an octave, so it is the float32 exponent of lq / lw (its bits, read through an int32 view)
    plus `offset`: exponent 0 (a ratio in [1, 2)) is the bin above the middle. The rotation is the angle of
    dq * conj(dw) = (c, s); its bin is the quadrant of (c, s) counter-clockwise from (1, 0), times the bins per
    quadrant, plus how many of the quadrant's bin edges the angle is past (its tangent, turned into the first
    quadrant, against theirs)."""
    ratio[0] = lq / lw
    c, s = qx * wx + qy * wy, qy * wx - qx * wy
    si = ((ratio_bits[0] >> 23) & 255) + offset
    below = s < 0
    quadrant = 2 * below + ((c <= 0) != below)
    ac, as_ = abs(c), abs(s)
    odd = quadrant & 1
    x, y = (as_, ac) if odd else (ac, as_)
    ti = quadrant * (len(tangents) + 1)
    for j in range(len(tangents)):
        ti += y >= tangents[j] * x
    return si, ti


@numba.njit(cache=True, nogil=True)
def pair_bins(w, q, scale_bins, angle_bins):
    """`geometry`'s bins of pairs given as their work vectors w and copy vectors q ((n, 2) float32): (n, 2) int32,
    scale bins outside 0..scale_bins - 1 as they come (for tests)."""
    ratio, ratio_bits, offset, tangents = _bin_tables(scale_bins, angle_bins)
    out = np.empty((w.shape[0], 2), np.int32)
    for i in range(w.shape[0]):
        wx, wy, qx, qy = w[i, 0], w[i, 1], q[i, 0], q[i, 1]
        out[i, 0], out[i, 1] = _bins(wx, wy, qx, qy, wx * wx + wy * wy, qx * qx + qy * qy, ratio, ratio_bits, offset,
                                     tangents)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def geometry(cw, cq, counts, hypotheses, min_pair, tolerance, scale_bins, angle_bins, max_log_scale, out):
    """For each candidate k, the most of its correspondences (the work's positions cw[k, :counts[k]], the copy's
    cq[k, :counts[k]]: `gather`) that one similarity transform (scale, rotation, translation) carries onto the
    copy's: a weak geometric check (`WordIndex.shortlist`).

    Positions are in units of the image's long side / 255 (the work's working image, the copy's view). Every pair
    of correspondences at least `min_pair` apart on both sides implies a scale and a rotation; the pairs vote in a
    (log2 scale, angle) histogram, and pairs in its fullest 2 x 2 block each propose a transform, scored by how
    many correspondences land within `tolerance` of where it puts them. out[k] = the best such count (with fewer
    than 3 correspondences: 0 for none, else 1).

    At most `hypotheses` pairs are tried, evenly spaced over the block's pairs in their (a, b) order. The first ones
    all start from the first few correspondences, and one wrong correspondence just off its right place (a
    neighbouring keypoint with the same word) pairs into the right bin with every right one. The block's first 32
    pairs were all of that kind for one of benchmarks/scale.py's rotated copies, which scored 4 where 18 of its 45
    correspondences fit one transform."""
    most = cw.shape[1]
    # Each pair as one key (a, b, scale bin, angle bin: a byte each); each candidate's positions copied into four
    # short arrays first, which the loops read in order (1 M works, 6,000 candidates: ~22 -> ~19.7 ms per view).
    if most > 256 or scale_bins > 256 or angle_bins > 127:
        raise ValueError("geometry packs a pair's correspondences and bins into the bytes of an int32")
    if scale_bins != 4 * max_log_scale or angle_bins % 4:
        raise ValueError("geometry's scale bins are half an octave each, its angle bins a multiple of 4")
    pairs = np.empty(most * (most - 1) // 2, np.int32)
    pos = np.empty((4, most), np.float32)
    xs, ys, us, vs = pos[0], pos[1], pos[2], pos[3]
    hist = np.zeros((scale_bins, angle_bins), np.int32)
    ratio, ratio_bits, offset, tangents = _bin_tables(scale_bins, angle_bins)
    min2, tol2 = min_pair * min_pair, tolerance * tolerance
    for k in range(cw.shape[0]):
        n = counts[k]
        out[k] = min(n, 1)
        if n < 3:
            continue
        for i in range(n):
            xs[i], ys[i], us[i], vs[i] = cw[k, i, 0], cw[k, i, 1], cq[k, i, 0], cq[k, i, 1]
        hist[:, :] = 0
        npairs = 0
        for a in range(n):
            for b in range(a + 1, n):
                wx, wy = xs[b] - xs[a], ys[b] - ys[a]
                qx, qy = us[b] - us[a], vs[b] - vs[a]
                lw, lq = wx * wx + wy * wy, qx * qx + qy * qy
                if lw < min2 or lq < min2:
                    continue
                si, ti = _bins(wx, wy, qx, qy, lw, lq, ratio, ratio_bits, offset, tangents)
                if si < 0 or si >= scale_bins:
                    continue
                hist[si, ti] += 1
                pairs[npairs] = a | (b << 8) | (si << 16) | (ti << 24)
                npairs += 1
        if npairs == 0:
            continue
        bs, bt, bv = 0, 0, -1
        for si in range(max(scale_bins - 1, 1)):
            s1 = min(si + 1, scale_bins - 1)
            for ti in range(angle_bins):
                t1 = (ti + 1) % angle_bins
                v = hist[si, ti] + hist[si, t1] + (hist[s1, ti] + hist[s1, t1] if s1 != si else 0)
                if v > bv:
                    bs, bt, bv = si, ti, v
        bt1 = (bt + 1) % angle_bins
        stride = (bv + hypotheses - 1) // hypotheses
        best, tried, seen = 1, 0, 0
        for p in range(npairs):
            if tried == hypotheses:
                break
            key = pairs[p]
            ps, pt = (key >> 16) & 255, key >> 24
            if not ((ps == bs or ps == bs + 1) and (pt == bt or pt == bt1)):
                continue
            seen += 1
            if (seen - 1) % stride:
                continue
            tried += 1
            a, b = key & 255, (key >> 8) & 255
            # The similarity w -> q through the pair: q = [[c, -s], [s, c]] w + t, from the complex ratio dq / dw.
            wx, wy = xs[b] - xs[a], ys[b] - ys[a]
            qx, qy = us[b] - us[a], vs[b] - vs[a]
            den = wx * wx + wy * wy
            cc, ss = (qx * wx + qy * wy) / den, (qy * wx - qx * wy) / den
            tx = us[a] - (cc * xs[a] - ss * ys[a])
            ty = vs[a] - (ss * xs[a] + cc * ys[a])
            inl = 0
            for i in range(n):
                ex = cc * xs[i] - ss * ys[i] + tx - us[i]
                ey = ss * xs[i] + cc * ys[i] + ty - vs[i]
                inl += ex * ex + ey * ey <= tol2
            if inl > best:
                best = inl
        out[k] = best
