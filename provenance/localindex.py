"""The bounded local index: visual words of ORB descriptors in an inverted file on disk, for many registered works.

`local.LocalIndex` keeps every descriptor of every work in memory (~32 KB per work, plus the ~40 KB blobs it is
built from): fine for a few thousand works, ~72 GB at a million. Above EXACT_MAX_WORKS (or when forced with
PROVENANCE_LOCAL_INDEX=bounded) the local stage runs in two steps instead:

1. Shortlist (this module). Each descriptor is quantised to one of 65,536 visual words: a 2-level vocabulary tree
   of binary centroids (256 x 256, Nister & Stewenius 2006), trained once on the dev corpus by
   scripts/train_vocabulary.py and shipped as package data (`orbwords/1`, pinned by its SHA-256). Per work at most
   PER_WORK plain + equalised descriptors are kept (`picks`): the plain keypoints a synthetic view of the work found
   again at registration first (orb/4's stability), and otherwise spread over a GRID x GRID grid (round-robin over
   the cells, so a crop keeps its share, and within a cell over every pyramid level, so a copy shown small does),
   as a set of words. A posting list per word holds the works with that word (CSR per
   word and block of 65,536 works: offsets + 16-bit rows, memory-mapped, read only where a query looks). A copy's
   descriptors (plain and equalised, itself and its mirror) vote with two words each (QUERY_WORDS) and idf^2
   weights (Sivic & Zisserman 2003), normalised by the work's word count. At a million works every work shares
   some words with any copy by chance, so a copy's own work, cropped or rotated, can score below thousands of
   others. The best (RERANK per million works, at least RERANK_MIN) are ranked again by a weak geometric check:
   each word is stored with where its keypoint sits in the work, and the score is how many of the words a work
   shares with the copy one similarity transform (scale, rotation, shift) carries onto the copy's keypoints (pairs
   of correspondences vote for a scale and a rotation, the fullest bin's pairs propose transforms, inliers are
   counted; `_words_kernel.geometry`). Chance
   collisions sit anywhere; the true work's fall into place. The check's correspondences are read in a second pass
   over the same posting lists, which keep each posting's position (`_words_kernel.gather`): a query touches no
   per-work file, so at a million works only the lists are resident. The SHORTLIST best go on.
2. Verify (`local.LocalIndex`, unchanged): only the shortlisted works' blobs are read from the ledger
   (`Ledger.local_features_of`, one connection per process, opened on first use) and today's exact index is
   built over them; its descriptor votes, RANSAC, pixel check, equalised second pass and template last resort
   decide, with the same thresholds as below EXACT_MAX_WORKS.

Files (`ledger.db.index/local/`, a cache beside the global index): per work its id, word count, sorted words and
their positions (appended as works are registered), the posting lists of the first `sealed` works with each
posting's position beside it (so a query reads only the lists: the word files are read when the index is opened and
when the lists are rewritten), and a manifest with the ledger entry it covers, the vocabulary and parameters, and the
SHA-256 of every file. Works added since the
posting lists were written (at most DELTA_MAX) get their postings in memory when the index is opened; past that the
lists are rewritten from the word file (a counting sort in chunks, never all postings in memory). Missing, corrupt
or stale files (another ledger, a rewritten entry, a changed blob count) are rebuilt from the ledger's blobs,
streamed a few hundred at a time.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import learned, local
from ._parallel import in_place, thread_map
from .errors import UsageError
from .index import clear_folder, sha256_of, valid_manifest

VOCABULARY = "orbwords/1"
_VOCABULARY_FILE = Path(__file__).resolve().parent / "data" / "orbwords-1.npy"
#: SHA-256 of the vocabulary file's array, as scripts/train_vocabulary.py prints it: a changed file is refused.
VOCABULARY_SHA256 = "05a546e1da4d3057eb216bf38eb3f4cac6a5623c1d064b5d1a9c76b6b69495dd"
BRANCH = 256
WORDS = BRANCH * BRANCH
#: Descriptors kept per work (plain, equalised) and the grid they are spread over.
PER_WORK = (96, 64)
GRID = 4
#: Which keypoints: a copy matches a work only through the keypoints both keep, and most of a work's 500 are lost to
#: a rescale, a rotation or JPEG. Registration (orb/4, orb/5) counts for each plain keypoint in how many of these
#: views of the work - (rotation degrees, scale), JPEG quality STABLE_JPEG - a keypoint with its word lies within
#: STABLE_PX of where the view puts it (`stability`); the most stable are kept (`pick`). benchmarks/scale.py at 1 M,
#: planted copies found of 240 (the exact index over the real works: 221; right work shortlisted): spread alone
#: 215 (235); this view 218 (237); adding a 0.7x view 219 (238), the equalised keypoints' stability too 219 (237),
#: 4 views 219, but each view is one more ORB detection per registered work (~4.5 ms on one core) and registration
#: must fingerprint at >= 2x decode+PDQ on 2 cores (benchmarks/throughput.py: 2.22x with this view, 1.84x with two);
#: the 0.7x view alone 214. Rarer words first among equally stable keypoints: 218.
STABILITY_VIEWS = ((6.0, 1.0),)
STABLE_PX, STABLE_JPEG = 4.0, 60
#: orb/5: a work with fewer than FEW_STABLE plain keypoints found again (smooth or soft pictures: ~5 % of the
#: benchmark's works, ~10 % of the dev corpus's) is counted in these views too: 1.3x, the border cut off, as a
#: crop shown larger. Those works are the ones the bounded index misses: at 1 M, 1,000 copies of 250 works
#: (scripts/experiments/local_stage.py SOURCES=250, stable_compute.py ADAPT=40:2), found 895 -> 898 of the exact
#: index's 902 (25 % crops 245 -> 248 of 250); with a 0.7x view instead 896.
FEW_STABLE, FEW_STABLE_VIEWS = 40, ((0.0, 1.3),)
#: A work with fewer than FEW_FOUND keypoints found again in any view (5.4 % of the benchmark's real works) is indexed
#: by FEW_PLAIN plain keypoints instead of PER_WORK's: half the copies the bounded index still missed were of works
#: with 21 - 40 (a typical one has ~80), whose few stable words leave the geometric check too little to place
#: (re-ranking 30,000 works instead of 6,000 found none of the misses). benchmarks/scale.py's 1,000 copies at 1 M
#: (scripts/experiments/local_stage.py SOURCES=250 FEW_WORDS=45:192): found 900 -> 902 of the exact index's 902, the
#: right work shortlisted 994 -> 996. Memory: 3.8 more postings per work on average (the 2,000 real works: 142.2
#: words instead of 138.4), ~15 MiB at a million.
FEW_FOUND, FEW_PLAIN = 45, 192
#: Works whose blobs are read and verified per query: 40 x 500 descriptors keeps local.LocalIndex exact (flat).
#: benchmarks/scale.py at 100k works put the planted copy's work in the best 24 for 223 of 240 copies, 48: 231.
SHORTLIST = 40
#: QUERY_WORDS: a copy's descriptors vote with two words each (the best leaf under each of the two nearest
#: first-level centroids; `query_words`): a descriptor that moved across a first-level boundary still meets its
#: original. benchmarks/scale.py at 1 M works (240 planted copies), one word -> two: the right work in the shortlist
#: 213 -> 228, found 192 -> 204 (the exact index over the real works alone: 219), shortlist 90 -> 110 ms. A
#: shortlist of 80 instead of 40 adds 1.
QUERY_WORDS = 2
#: RERANK: per view and million works, the works with the best word scores that the geometric check ranks again (0:
#: word scores only); at least RERANK_MIN (`rerank`). A copy's own work is outscored by chance works in proportion to
#: the registry, so the re-rank grows with it. 1,000 copies of 250 works and 250 unrelated images
#: (scripts/experiments/local_stage.py SOURCES=250 UNRELATED=250) at 100k works: re-ranking 6,000 / 1,000 / 500
#: found 996 / 996 / 994 of the exact index's 998 in 31.5 / 21.1 / 19.2 ms p50 (fingerprint excluded); at 10k
#: 6,000 / 1,000: 996 / 996 in 27.0 / 20.5 ms.
#: GEOMETRY_*: its parameters, in units of 1/255 of an image's long side (see _words_kernel.geometry).
#: benchmarks/scale.py at 1 M works (240 planted copies; exact index over the real works: 221 found): word scores
#: only, the right work shortlisted / found 226 / 205, ~100 ms per query; re-ranking the best 500 / 1,000 / 2,000 /
#: 4,000: shortlisted 233 / 234 / 235 / 236; at 2,000 found 215 in ~150 ms (the check ~35 ms), at 4,000 216 in ~185
#: ms (before `best_rows`, which took ~20 ms off both). Held-out corpus at 998 works, bounded index forced: recall
#: 0.953 / min 0.873 either way (with no GEOMETRY_MIN, ranking by the check alone: 0.949 / 0.858). With the
#: positions in the posting lists (the check's cost no longer grows with the candidates read, only its own ~4 ms per
#: 1,000): 1 M works, 215 found in 112.6 ms p50; re-ranking 4,000: 216 (+13 ms), 8,000: 216 (shortlisted 234).
#: With orb/4's stable keypoints and every word voting, 1,000 copies of 250 works at 1 M (SOURCES=250): 2,000 /
#: 4,000 / 6,000 found 893 / 895 / 896 of the exact index's 902, p50 105 / 127 / 145 ms. Every copy it misses has
#: its work outside the shortlist, and the word score is what leaves them out: of the benchmark's 240 copies (stop
#: words not voting) 237 have their work among the best 500 by word score, the other 3 at 2,342 - 5,231, where
#: the check would have put two of them first. With orb/5 (same 1,000 copies): 4,000 / 6,000 found 898 / 900,
#: p50 118 / 135 ms.
RERANK, RERANK_MIN = 6000, 1000
#: Correspondences: one per shared word, at most GEOMETRY_MOST per work; at most GEOMETRY_HYPOTHESES transforms
#: tried per work (pairs of its fullest bin, evenly spaced over them). 2 per word, 96 and every pair: the same 235
#: shortlisted in 49 ms. 1,000 copies (scripts/experiments/local_stage.py SOURCES=250), 32 -> 64 hypotheses: 995 ->
#: 996 found at 100k works (every pair of the bin: 996), 994 at 1 M either way, no slower beyond this machine's noise
#: (~60 ms p50); a candidate tries ~12 on average, only those with many correspondences more.
GEOMETRY_CAP = 1
GEOMETRY_MOST = 64
GEOMETRY_HYPOTHESES = 64
GEOMETRY_MIN_PAIR = 12.0  # shorter pairs say little about scale and rotation
GEOMETRY_TOLERANCE = 4.0  # a correspondence this close to where the transform puts it is consistent
GEOMETRY_SCALE_BINS, GEOMETRY_ANGLE_BINS, GEOMETRY_MAX_LOG_SCALE = 12, 16, 3.0  # half octaves from 1/8 to 8
GEOMETRY_MIN = 5  # fewer consistent words than this count as none
#: Words in more than this share of the works (and more than STOP_MIN of them) give the geometric check no
#: correspondences: too common to say where anything is. They still vote, with their small idf^2 weight (idf ~2.3 at
#: 10 %, ~7 for a word in a thousandth of the works). benchmarks/scale.py's local stage with 1,000 copies (250 works,
#: SOURCES=250 in scripts/experiments/local_stage.py) at 1 M works: found 891 of the 902 the exact index finds when
#: these words did not vote either, 893 when they vote; with RERANK 6,000 instead of 2,000: 894 / 896.
STOP_FRACTION, STOP_MIN = 0.05, 1_000
#: A work's word score is normalised by its word count (to the power -0.5), counted up to NORM_MOST: a work indexed
#: by FEW_PLAIN keypoints because few of its keypoints are stable is not a more common picture, and scaled down by
#: all its ~250 words its copies rank below thousands of chance works. benchmarks/scale.py's 1 M ledger with 5.4 % of
#: the derived works indexed by as many words as such works (scripts/experiments/local_stage.py SOURCES=250
#: UNRELATED=250): 994 -> 995 found of the exact index's 998 (work 1613 rotated), 1 unrelated image matched either
#: way. The exponents -0.35 and -0.7 for every work instead: 994 / 993.
NORM_MOST = sum(PER_WORK)
#: Works kept past the written posting lists (their postings are built in memory on open) before a rewrite.
DELTA_MAX = 16_384
#: Up to this many works with blobs the exact in-memory LocalIndex is used (~72 KB per work resident: ~350 MiB).
EXACT_MAX_WORKS = 5_000
ENV = "PROVENANCE_LOCAL_INDEX"
MODES = ("auto", "exact", "bounded", "words")
FORMAT = "provenance-localindex/4"  # /2: 16-bit rows per block of 65,536; /3: word positions; /4: in the postings
_CACHED_FEATURES = 256  # decoded blobs kept per process: popular works are shortlisted again and again

_vocabulary: tuple[np.ndarray, np.ndarray] | None = None


def vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """The vocabulary tree as (256, 4) and (256, 256, 4) uint64: first-level centroids, then their children."""
    global _vocabulary
    if _vocabulary is None:
        raw = np.load(_VOCABULARY_FILE, allow_pickle=False)
        if raw.shape != (BRANCH + WORDS, 32) or hashlib.sha256(raw.tobytes()).hexdigest() != VOCABULARY_SHA256:
            raise ValueError(f"{_VOCABULARY_FILE} is not the {VOCABULARY} vocabulary (reinstall provenance)")
        top = np.ascontiguousarray(raw[:BRANCH]).view(np.uint64)
        _vocabulary = top, np.ascontiguousarray(raw[BRANCH:]).view(np.uint64).reshape(BRANCH, BRANCH, 4)
    return _vocabulary


def hamming_argmin(descriptors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of `centroids` ((k, 32) uint8) for each descriptor ((n, 32) uint8)."""
    d64, c64 = np.ascontiguousarray(descriptors).view(np.uint64), np.ascontiguousarray(centroids).view(np.uint64)
    out = np.empty(len(d64), np.int64)
    for at in range(0, len(d64), 4096):
        out[at:at + 4096] = np.bitwise_count(d64[at:at + 4096, None, :] ^ c64[None]).sum(2).argmin(1)
    return out


def query_words(descriptors: np.ndarray) -> np.ndarray:
    """Words a copy's descriptors vote with: per descriptor its word and the best leaf under its second-nearest
    first-level centroid (QUERY_WORDS)."""
    from ._words_kernel import assign2

    top, leaves = vocabulary()
    out = np.empty((len(descriptors), QUERY_WORDS), np.int32)
    if len(descriptors):
        assign2(np.ascontiguousarray(descriptors, np.uint8).view(np.uint64), top, leaves, out)
    return out.ravel()


def words(descriptors: np.ndarray) -> np.ndarray:
    """The visual word (0..65,535) of each ORB descriptor ((n, 32) uint8)."""
    from ._words_kernel import assign

    top, leaves = vocabulary()
    out = np.empty(len(descriptors), np.int32)
    if len(descriptors):
        assign(np.ascontiguousarray(descriptors, np.uint8).view(np.uint64), top, leaves, out)
    return out


def spread(xy: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """Positions of at most k keypoints, taken round-robin over a GRID x GRID grid of the image, so that every part
    of the image keeps some; within a cell in a low-discrepancy order over their stored order (ORB stores them
    pyramid level by level), so that every scale keeps some too: a copy shown small (a screenshot) matches the
    work's coarse-level keypoints, which taking each cell's first ones would leave out."""
    return _spread_order(xy, size)[:k]


def _spread_order(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    n = len(xy)
    h, w = size
    gx = np.clip((xy[:, 0] * GRID / max(w, 1)).astype(np.int64), 0, GRID - 1)
    gy = np.clip((xy[:, 1] * GRID / max(h, 1)).astype(np.int64), 0, GRID - 1)
    cell = gy * GRID + gx
    by_cell = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=GRID * GRID)
    within = np.empty(n, np.int64)
    within[by_cell] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # stored order in its cell
    # 0, .618, .236, .854, ...: each prefix spreads over the cell's order, denser at its start (the finer levels,
    # which crops at full size match) by SPREAD_BIAS + 1 to 1 at its end.
    frac = np.modf(within * _GOLDEN)[0] * (1 + SPREAD_BIAS * within / counts[cell])
    rank = np.empty(n, np.int64)
    by_frac = np.lexsort((frac, cell))
    rank[by_frac] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.lexsort((cell, rank))


def pick(xy: np.ndarray, size: tuple[int, int], k: int, stable: np.ndarray | None) -> np.ndarray:
    """Positions of the k keypoints a work is indexed by: the most stable first (`stability`, orb/4 blobs), in
    `spread`'s order among equally stable ones; `spread` alone for blobs without stability (orb/3, orb/2)."""
    if stable is None or len(xy) <= k:
        return spread(xy, size, k)
    order = _spread_order(xy, size)
    rank = np.empty(len(xy), np.int64)
    rank[order] = np.arange(len(xy))
    return np.lexsort((rank, -stable.astype(np.int64)))[:k]


def stability(g: np.ndarray, xy: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
    """For each plain keypoint of a work's prepared grey image `g` (positions, descriptors), in how many of
    STABILITY_VIEWS it is found again: the view, JPEG-compressed, has a keypoint within STABLE_PX of where the
    view's transform puts it whose words (`query_words`, as a copy votes) include the keypoint's word; in
    FEW_STABLE_VIEWS too when fewer than FEW_STABLE keypoints were. Counts as uint8, one per keypoint."""
    out = np.zeros(len(descriptors), np.uint8)
    if not len(descriptors):
        return out
    own = words(descriptors)
    _count_views(g, xy, own, STABILITY_VIEWS, out)
    if np.count_nonzero(out) < FEW_STABLE:
        _count_views(g, xy, own, FEW_STABLE_VIEWS, out)
    return out


def _count_views(g: np.ndarray, xy: np.ndarray, own: np.ndarray, views, out: np.ndarray) -> None:
    h, w = g.shape
    for angle, scale in views:
        A = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        view = cv2.warpAffine(g, A, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        view = cv2.imdecode(cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, STABLE_JPEG])[1],
                            cv2.IMREAD_GRAYSCALE)
        vxy, vdes = local._detect(view)
        if len(vdes):
            back = cv2.invertAffineTransform(A)
            out += _found_again(xy, own, vxy @ back[:, :2].T + back[:, 2], query_words(vdes))


def _found_again(xy: np.ndarray, own: np.ndarray, at: np.ndarray, view_words: np.ndarray) -> np.ndarray:
    """Which keypoints (at `xy`, words `own`) a view keypoint (at `at`, words `view_words`, QUERY_WORDS each) with
    the same word lies within STABLE_PX of; only pairs sharing a word are compared."""
    order = np.argsort(view_words, kind="stable")
    lo, hi = np.searchsorted(view_words[order], own, "left"), np.searchsorted(view_words[order], own, "right")
    count = hi - lo
    i = np.repeat(np.arange(len(own)), count)
    j = order[np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(count.sum())] // QUERY_WORDS
    found = np.zeros(len(own), bool)
    found[i[((xy[i] - at[j]) ** 2).sum(1) < STABLE_PX ** 2]] = True
    return found


_GOLDEN = (np.sqrt(5) - 1) / 2
#: Measured (benchmarks/scale.py 1 M: planted copies found / right work shortlisted; held-out corpus at 998 works:
#: copies the exact index finds and the bounded one misses): each cell's first keypoints only 204 / 228, 24 misses;
#: evenly over the order (bias 0) 183 / 205, 4; bias 2: 190 / 213, 3; bias 6: 195 / 218, 4. The synthetic scale
#: crops are full size (fine levels), the held-out screenshots small (coarse levels).
SPREAD_BIAS = 6.0


def work_words(f: local.Features) -> np.ndarray:
    """The sorted set of words a work is indexed by: PER_WORK plain and equalised descriptors (`picks`)."""
    return work_entry(f)[0]


def picks(f: local.Features) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the plain keypoints (`pick`; FEW_PLAIN of a work with few stable ones) and the equalised ones
    (`spread`) a work is indexed by."""
    few = f.stable is not None and np.count_nonzero(f.stable) < FEW_FOUND
    return pick(f.xy, f.size, FEW_PLAIN if few else PER_WORK[0], f.stable), spread(f.eq_xy, f.size, PER_WORK[1])


def work_entry(f: local.Features) -> tuple[np.ndarray, np.ndarray]:
    """A work's entry in the index: its words (`work_words`) and, for each, where the first keypoint with that word
    sits, as (x, y) uint8 on the working image scaled to a long side of 255 (for the geometric re-rank)."""
    pick, epick = picks(f)
    w = words(np.concatenate([f.descriptors[pick], f.eq_descriptors[epick]]))
    xy = np.concatenate([f.xy[pick], f.eq_xy[epick]]).reshape(-1, 2)
    unique, first = np.unique(w, return_index=True)
    return unique.astype(np.uint16), positions(xy[first], f.size)


def units(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel positions on an image of `size` (h, w) scaled so that its long side is 255 (float32)."""
    return (np.asarray(xy, np.float32) * (255 / max(size[0], size[1], 1))).astype(np.float32)


def positions(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Keypoint positions as the index stores them: `units`, rounded to uint8."""
    return units(xy, size).round().clip(0, 255).astype(np.uint8)


# -- the index in use ------------------------------------------------------------------------------------------
class Shortlisted:
    """A bounded local stage: some index shortlists the few works a copy may be of (`shortlist_of`), and their
    blobs, read from the ledger, are verified by local.LocalIndex exactly as below EXACT_MAX_WORKS."""

    def __init__(self, target, keep=None):
        self.target = target  # the ledger's path or URL: each process opens its own connection
        self._keep = keep  # a temporary folder that must live as long as the maps (unwritable index folder)
        self._ledger, self._pid = None, None
        self._features: OrderedDict[int, local.Features | None] = OrderedDict()
        self.last_shortlist: list[int] = []  # of the latest query, best first (for benchmarks and tests)
        self.prefer = 0  # how many of the best shortlisted works are verified whatever their keypoints' votes

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ledger"], state["_pid"] = None, None  # a connection never crosses processes
        return state

    def shortlist_of(self, q: local.Query) -> list[int]:
        raise NotImplementedError

    def query(self, image) -> list[tuple[int, local.LocalMatch]]:
        """Accepted local matches for an RGB image as (work id, match), most inliers first: the shortlisted works
        verified by local.LocalIndex exactly as below EXACT_MAX_WORKS."""
        return self.match(local.Query(image))

    def first_look(self, q: local.Query) -> tuple[list[int], list[int], Callable[[], list[int]]]:
        """The works to look at first (by their plain keypoints alone, before the whole shortlist), the other works
        known so far that `family_of` may pick from, and a function giving the whole shortlist. Here: none first,
        the shortlist (`shortlist_of`) at once."""
        return [], [], lambda: self.shortlist_of(q)

    def family_of(self, found: list[int], candidates: list[int]) -> list[int]:
        """Those of `candidates` that may be other versions of the `found` works (none here)."""
        return []

    def match(self, q: local.Query) -> list[tuple[int, local.LocalMatch]]:
        """`query` for a prepared copy (its keypoints detected already, or on first use). The works of
        `first_look` are verified first, by their plain keypoints: if that finds a match, it is the answer, with
        any of the other known works `family_of` the found ones verified too. Otherwise the whole shortlist is
        verified as local.LocalIndex verifies (plain keypoints, equalised ones, templates)."""
        first, known, everything = self.first_look(q)
        if first:
            self.last_shortlist = list(first)
            q.plain  # detected now, a view on each core there is; the first look's few works are verified in place
            with in_place():  # handing its small searches to threads and back cost more than it saved (~0.5 ms)
                found = self._matches_among(q, first, plain_only=True)
                family = [w for w in dict.fromkeys(self.family_of([w for w, _ in found], known)) if w not in first]
                if family:  # none when nothing was found
                    self.last_shortlist += family
                    found = sorted(found + self._matches_among(q, family, plain_only=True, prefer=0),
                                   key=lambda f: -f[1].inliers)
            if found:
                return found
        self.last_shortlist = short = everything()
        return self._matches_among(q, short)

    def _matches_among(self, q: local.Query, short: list[int], plain_only: bool = False, prefer: int | None = None
                ) -> list[tuple[int, local.LocalMatch]]:
        """local.LocalIndex's matches among these works (read from the ledger), as (work id, match): all its passes,
        or the plain keypoints' alone. The first `prefer` (self.prefer) are verified whatever the votes."""
        features = self.features_of(short)
        # In id order, as the exact index holds them: a descriptor equally near two works (a work and a small edit
        # of it) votes for the earlier one in both, so both modes name the same work.
        ids = sorted(i for i in short if features.get(i) is not None)
        if not ids:
            return []
        prefer = self.prefer if prefer is None else prefer
        first = tuple(ids.index(i) for i in short[:prefer] if features.get(i) is not None)
        index = local.LocalIndex([features[i] for i in ids])
        found = index.keypoints(q, first, plain_only)[0] if plain_only else index.match(q, first)
        return [(ids[m.position], m) for m in found]

    def features_of(self, work_ids: list[int]) -> dict[int, local.Features | None]:
        """Decoded features of these works (None: no blob, or one that does not decode), read from the ledger."""
        missing = [i for i in work_ids if i not in self._features]
        if missing:
            blobs = self._connection().local_features_of(missing, *local.READABLE)
            for i in missing:
                try:
                    self._features[i] = local.decode(blobs[i]) if i in blobs else None
                except ValueError:
                    self._features[i] = None
        out = {}
        for i in work_ids:
            self._features.move_to_end(i)
            out[i] = self._features[i]
        while len(self._features) > _CACHED_FEATURES:
            self._features.popitem(last=False)
        return out

    def _connection(self):
        if self._ledger is None or self._pid != os.getpid():
            from .ledger import Ledger

            self._ledger, self._pid = Ledger.open(self.target), os.getpid()
        return self._ledger


class WordIndex(Shortlisted):
    """Posting lists over works' visual words, and the ledger their blobs are read from when shortlisted."""

    def __init__(self, ids, counts, sealed, delta, target, keep=None):
        super().__init__(target, keep)
        self.ids, self.counts = ids, counts
        # Written lists: per (word, block of 65,536 rows) a run of the rows' low 16 bits; the delta: rows (int32).
        # Both as (offsets, rows, positions): each posting's keypoint position (x, y uint8) beside it.
        self.blocks = (len(sealed[0]) - 1) // WORDS
        self._sealed, self._delta = sealed, delta
        offsets, delta_offsets = sealed[0], delta[0]
        n = len(ids)
        df = np.diff(offsets[::self.blocks]) + np.diff(delta_offsets)
        idf = np.log((n + 1) / np.maximum(df, 1)).astype(np.float32)
        self.weight = (idf * idf).astype(np.float32)
        self.unplaced = df > max(STOP_FRACTION * n, STOP_MIN)  # stop words: no correspondences
        # Per row: the word score's normalisation, by at most NORM_MOST words.
        self.inv_norm = 1 / np.sqrt(np.clip(np.asarray(counts, np.float32), 1, NORM_MOST))

    def __len__(self) -> int:
        return len(self.ids)

    def shortlist_of(self, q: local.Query) -> list[int]:
        # Each view's keypoints are detected on the thread that ranks it.
        return self._merged(lambda v: self._view(*view(q, v)), range(len(q.views)))

    def shortlist(self, views: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]) -> list[int]:
        """The SHORTLIST work ids that best match any of `views` (per view: its descriptors, their positions and the
        view's (h, w): the copy, its mirror), best first. Per view the `rerank` works with the best word scores are
        ranked again by the geometric check (`_words_kernel.geometry`): how many of the words they share with the
        copy one similarity transform explains (fewer than GEOMETRY_MIN: none); ties by word score."""
        return self._merged(lambda v: self._view(*v), views)

    def _merged(self, ranked, items) -> list[int]:
        """The SHORTLIST best of `ranked(item)` over the items (views), each work at its best. The views are
        independent passes over the lists, in compiled code (and OpenCV) that releases the GIL: one thread each
        where this process has a core to spare (`_parallel.threads`: not in a scan's worker processes)."""
        per_view = thread_map(ranked, items)
        best: dict[int, tuple[int, float]] = {}
        for found in per_view:
            for c, v in found:
                if v > best.get(c, (-1, 0.0)):
                    best[c] = v
        order = sorted(best.items(), key=lambda t: (-t[1][0], -t[1][1], t[0]))[:SHORTLIST]
        return [c for c, _ in order]

    def _view(self, des: np.ndarray, xy: np.ndarray, shape: tuple[int, int]) -> list[tuple[int, tuple[int, float]]]:
        """One view's SHORTLIST best as (work id, (geometric score, word score))."""
        cand, s, _, g = self.candidates(des, xy, shape)
        g[g < GEOMETRY_MIN] = 0  # a few consistent words happen by chance: the word score ranks those works
        return [(int(self.ids[cand[i]]), (int(g[i]), float(s[i]))) for i in np.lexsort((-s, -g))[:SHORTLIST]]

    def candidates(self, des: np.ndarray, xy: np.ndarray,
                   shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One view's re-ranked candidates: their rows, word scores, correspondences gathered and geometric scores
        (before GEOMETRY_MIN; zeros without a re-rank). scripts/experiments/shortlist_scores.py reads them all."""
        from ._words_kernel import best_rows, gather, geometry, vote

        (offsets, low, pxy), (delta_offsets, delta_rows, delta_xy) = self._sealed, self._delta
        b = self.blocks
        qw = query_words(des)
        w = np.unique(qw).astype(np.int64)
        if not len(w) or not len(self):
            return (np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))
        weights = self.weight[w]
        scores = np.zeros(len(self), np.float32)
        vote(offsets, low, b, w, weights, scores)
        vote(delta_offsets, delta_rows, 1, w, weights, scores)
        depth = rerank(len(self))
        keep = max(depth, SHORTLIST)
        cand, s = best_rows(scores, self.inv_norm, keep)
        s /= np.sqrt(weights.sum())
        if len(cand) > keep:
            top = np.argpartition(-s, keep - 1)[:keep]
            cand, s = cand[top], s[top]
        g, n_of = np.zeros(len(cand), np.int32), np.zeros(len(cand), np.int32)
        if depth:
            first, count, at = by_word(qw, np.repeat(units(xy, shape), QUERY_WORDS, axis=0))
            count[self.unplaced] = 0  # stop words: too common to say where anything is
            slot = np.full(len(self), -1, np.int32)  # a candidate's place among the re-ranked
            slot[cand] = np.arange(len(cand), dtype=np.int32)
            cw, cq = (np.empty((len(cand), GEOMETRY_MOST, 2), np.float32) for _ in range(2))
            gather(offsets, low, pxy, b, w, slot, first, count, at, GEOMETRY_CAP, cw, cq, n_of)
            gather(delta_offsets, delta_rows, delta_xy, 1, w, slot, first, count, at, GEOMETRY_CAP, cw, cq, n_of)
            geometry(cw, cq, n_of, GEOMETRY_HYPOTHESES, GEOMETRY_MIN_PAIR, GEOMETRY_TOLERANCE,
                     GEOMETRY_SCALE_BINS, GEOMETRY_ANGLE_BINS, GEOMETRY_MAX_LOG_SCALE, g)
        return cand, s, n_of, g


def rerank(works: int) -> int:
    """How many of the best word scores among `works` works one view ranks again by the geometric check."""
    return max(RERANK_MIN, -(-RERANK * works // 1_000_000)) if RERANK else 0


def by_word(query_words: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A copy's word positions as _words_kernel.geometry reads them: `at` (one (x, y) per entry of `query_words`)
    sorted by word, and per word (int32, WORDS each) where its positions start and how many there are."""
    full = np.bincount(query_words, minlength=WORDS)
    first = (np.cumsum(full) - full).astype(np.int32)
    order = np.argsort(query_words, kind="stable")
    return first, full.astype(np.int32), np.ascontiguousarray(np.asarray(at, np.float32)[order])


def view(q: local.Query, v: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """What WordIndex.shortlist takes of view `v` of a copy (itself, its mirror): its plain and equalised
    descriptors, their positions and the view's (h, w)."""
    (xy, des), (exy, edes) = q.detect(v), q.detect(v, True)
    return np.concatenate([des, edes]), np.concatenate([xy, exy]), q.views[v][1].shape


def views(q: local.Query) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """`view` of each view of a copy."""
    return [view(q, v) for v in range(len(q.views))]


def attach(index, ledger, mode: str | None = None) -> None:
    """Give a global Index its local stage for `ledger`: the exact in-memory LocalIndex's blobs up to
    EXACT_MAX_WORKS works with blobs; above, a bounded one: the learned vectors' shortlist (vectorindex) when every
    work has a vector, else the visual words' (WordIndex). `mode` (default: $PROVENANCE_LOCAL_INDEX, else "auto")
    forces "exact", "bounded" or "words" (the visual words even where every work has a vector)."""
    mode = (mode or os.environ.get(ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise UsageError(f"{ENV}={mode!r} is not a local index mode", hint=f"use one of {', '.join(MODES)}")
    if mode == "auto":
        mode = "exact" if ledger.local_feature_state(local.READABLE, 2 ** 62)[3] <= EXACT_MAX_WORKS else "bounded"
    if mode == "exact":
        index.local_blobs = ledger.local_features(*local.READABLE)  # orb/2 of older ledgers too
        index.local_vectors = {r[0]: r[2] for r in ledger.fingerprint_rows((learned.ALGORITHM,))[0]
                               if learned.readable(r[2]) and r[0] in index.local_blobs}
        return
    if mode == "bounded":
        from .vectorindex import open_vectors

        vectors = open_vectors(ledger)
        if vectors.covers_all:
            index.bounded = vectors
            return
    index.bounded = open_local(ledger)


# -- the files ---------------------------------------------------------------------------------------------------
def local_folder(ledger) -> Path:
    return ledger.index_folder() / "local"


def open_local(ledger, folder: Path | str | None = None) -> WordIndex:
    """The ledger's bounded local index, brought up to date (read, extended with the works registered since, or
    rebuilt from the ledger's blobs if missing, corrupt or stale). An unwritable folder: built in a temporary one."""
    folder = local_folder(ledger) if folder is None else Path(folder)
    return in_folder(folder, "provenance-local-", lambda f, keep: load(f, sync(f, ledger), ledger.target, keep))


def in_folder(folder: Path, prefix: str, make):
    """`make(folder, None)`; if the folder cannot be written, `make(temporary folder, keep)` instead, where `keep` (a
    TemporaryDirectory named by `prefix`) must live as long as what `make` returns."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return make(folder, None)
    except OSError:
        keep = tempfile.TemporaryDirectory(prefix=prefix)
        return make(Path(keep.name), keep)


def _params() -> dict:
    return {"vocabulary": VOCABULARY_SHA256, "per_work": list(PER_WORK), "grid": GRID, "spread": [2, SPREAD_BIAS],
            "pick": "stable-first/1", "few": [FEW_FOUND, FEW_PLAIN]}


def _fresh(ledger) -> dict:
    return {"format": FORMAT, **_params(), "ledger_id": ledger.ledger_id, "rows": 0, "words": 0, "sealed": 0,
            "sealed_words": 0, "last_id": 0}


def sync(folder: Path, ledger) -> dict:
    """Bring the files in `folder` up to date with `ledger`; returns the manifest."""
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time; readers keep the files they mapped
        m = _valid_manifest(folder, ledger)
        seq, digest, top, count = ledger.local_feature_state(local.READABLE, m["last_id"] if m else 0)
        if m is None or count != m["rows"]:  # missing, corrupt, stale, or blobs rows edited
            clear_folder(folder)
            m = _fresh(ledger)
        changed = False
        for batch in ledger.local_feature_batches(local.READABLE, m["last_id"], top):
            ids, lists, xys = [], [], []
            for work_id, blob in batch:
                try:
                    w, xy = work_entry(local.decode(blob))
                except ValueError:
                    w, xy = np.zeros(0, np.uint16), np.zeros((0, 2), np.uint8)  # counted: the index stays in step
                ids.append(work_id)
                lists.append(w)
                xys.append(xy)
            append(folder, m, np.array(ids, np.int32), lists, xys)
            changed = True
        if m["rows"] - m["sealed"] > DELTA_MAX:
            seal(folder, m)
            changed = True
        if changed or m.get("covered_seq") != seq or "files" not in m:
            m.update(covered_seq=seq, covered_hash=digest)
            write_manifest(folder, m)
    return m


def _files(m: dict) -> dict[str, tuple[np.dtype, int]]:
    out = {"ids": (np.dtype(np.int32), m["rows"]), "counts": (np.dtype(np.uint16), m["rows"]),
           "words": (np.dtype(np.uint16), m["words"]), "xy": (np.dtype(np.uint8), 2 * m["words"])}
    if m["sealed"]:
        out |= {"postings.offsets": (np.dtype(np.int64), WORDS * _blocks(m["sealed"]) + 1),
                "postings.low": (np.dtype(np.uint16), m["sealed_words"]),
                "postings.xy": (np.dtype(np.uint8), 2 * m["sealed_words"])}
    return out


def _blocks(rows: int) -> int:
    return max(1, -(-rows // 65536))


def append(folder: Path, m: dict, ids: np.ndarray, lists: list[np.ndarray], xys: list[np.ndarray]) -> None:
    """Add works (ids above m["last_id"], increasing; each a sorted set of words and their (n, 2) uint8 positions,
    see work_entry) at the end of the word files, cutting off whatever an interrupted writer left past the
    manifest. Updates `m` (write it with write_manifest)."""
    if not len(ids):
        return
    counts = np.array([len(x) for x in lists], np.uint16)
    if [len(x) for x in xys] != counts.tolist():
        raise ValueError("every word needs its position")
    new = {"ids": np.asarray(ids, np.int32), "counts": counts,
           "words": np.concatenate(lists).astype(np.uint16) if lists else np.zeros(0, np.uint16),
           "xy": np.concatenate(xys).astype(np.uint8).ravel() if lists else np.zeros(0, np.uint8)}
    sizes = _files(m)
    for name, arr in new.items():
        with open(folder / name, "ab") as f:
            f.truncate(sizes[name][1] * sizes[name][0].itemsize)
            f.write(np.ascontiguousarray(arr).tobytes())
            f.flush()
            os.fsync(f.fileno())
    m["rows"] += len(ids)
    m["words"] += int(counts.sum(dtype=np.int64))
    m["last_id"] = int(ids[-1])


def _map(folder: Path, name: str, dtype: np.dtype, count: int) -> np.ndarray:
    if not count:
        return np.zeros(0, dtype)
    return np.memmap(folder / name, dtype, "r", shape=(count,))


def seal(folder: Path, m: dict, chunk: int = 1 << 24) -> None:
    """Write the posting lists of every work in the word files (a counting sort, `chunk` postings at a time).

    A list is keyed by (word, block of 65,536 rows) and holds the rows' low 16 bits, in row order: half the bytes
    of 32-bit ids (1 M works: ~300 instead of ~600 MiB), for an offset per word and block."""
    rows = m["rows"]
    counts = np.asarray(_map(folder, "counts", np.dtype(np.uint16), rows)).astype(np.int64)
    allwords = _map(folder, "words", np.dtype(np.uint16), m["words"])
    allxy = _map(folder, "xy", np.dtype("<u2"), m["words"])  # a word's (x, y) as one 16-bit value
    b = _blocks(rows)
    ends = np.cumsum(counts)
    row_block = np.repeat(np.arange(b), np.diff(np.minimum(np.arange(b + 1) * 65536, rows)))

    def keys(row, last, start, stop):  # (word, block) of the postings of rows [row, last)
        return np.asarray(allwords[start:stop], np.int64) * b + np.repeat(row_block[row:last], counts[row:last])

    def chunks():
        row, start = 0, 0
        while row < rows:
            last = max(row + 1, int(np.searchsorted(ends, start + chunk, "right")))
            stop = int(ends[last - 1])
            yield row, last, start, stop
            row, start = last, stop

    df = np.zeros(WORDS * b, np.int64)
    for c in chunks():
        df += np.bincount(keys(*c), minlength=WORDS * b)
    offsets = np.zeros(WORDS * b + 1, np.int64)
    np.cumsum(df, out=offsets[1:])
    total = int(offsets[-1])
    tmp = {name: folder / f".postings.{name}.tmp" for name in ("low", "xy")}
    out = {name: np.memmap(path, "<u2", "w+", shape=(max(total, 1),)) for name, path in tmp.items()}
    cursor = offsets[:-1].copy()
    for row, last, start, stop in chunks():  # rows in order, so every list comes out in row order
        k = keys(row, last, start, stop)
        owner = np.repeat(np.arange(row, last), counts[row:last])
        order = np.argsort(k, kind="stable")
        k, owner = k[order], owner[order]
        c = np.bincount(k, minlength=WORDS * b)
        at = cursor[k] + np.arange(len(k)) - np.repeat(np.cumsum(c) - c, c)
        out["low"][at] = owner & 0xFFFF
        out["xy"][at] = np.asarray(allxy[start:stop])[order]
        cursor += c
    for name, path in tmp.items():
        out[name].flush()
        del out[name]
        with open(path, "r+b") as f:
            f.truncate(total * 2)
            os.fsync(f.fileno())
        os.replace(path, folder / f"postings.{name}")
    _write_array(folder / "postings.offsets", offsets)
    m["sealed"], m["sealed_words"] = m["rows"], m["words"]


def load(folder: Path, m: dict, target, keep=None) -> WordIndex:
    """A WordIndex over the files `m` describes; the works past the posting lists get theirs in memory."""
    f = {name: _map(folder, name, dt, n) for name, (dt, n) in _files(m).items()}
    ids, counts = np.asarray(f["ids"]), np.asarray(f["counts"])
    if m["sealed"]:
        sealed = (np.asarray(f["postings.offsets"]), np.asarray(f["postings.low"]), np.asarray(f["postings.xy"]))
    else:
        sealed = (np.zeros(WORDS + 1, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.uint8))
    # The works past the written lists (at most DELTA_MAX): their postings, in memory. The word files are read
    # only here and by `seal`, never by a query.
    w = np.asarray(f["words"][m["sealed_words"]:], np.int64)
    owner = np.repeat(np.arange(m["sealed"], m["rows"]), counts[m["sealed"]:].astype(np.int64))  # rows
    order = np.argsort(w, kind="stable")
    delta_offsets = np.zeros(WORDS + 1, np.int64)
    np.cumsum(np.bincount(w, minlength=WORDS), out=delta_offsets[1:])
    delta_xy = np.asarray(f["xy"][2 * m["sealed_words"]:]).reshape(-1, 2)[order].ravel()
    return WordIndex(ids, counts, sealed, (delta_offsets, owner[order].astype(np.int32), delta_xy), target, keep)


def write_manifest(folder: Path, m: dict, digests=None) -> None:
    """Write `m` with the SHA-256 of every file it covers (`digests(folder, m)`: this module's files by default)."""
    m["files"] = (digests or _digests)(folder, m)
    tmp = folder / ".manifest.json.tmp"
    with open(tmp, "w") as f:
        json.dump(m, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / "manifest.json")


def _write_array(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(np.ascontiguousarray(arr).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a reader that mapped the old file keeps it


def _digests(folder: Path, m: dict, names=None) -> dict[str, str]:
    out = {}
    for name, (dt, n) in _files(m).items():
        if names is not None and name not in names:
            continue
        out[name] = sha256_of(folder / name, dt.itemsize * n)
    return out


def _valid_manifest(folder: Path, ledger) -> dict | None:
    return valid_manifest(folder, ledger, {"format": FORMAT, **_params()}, _digests)
