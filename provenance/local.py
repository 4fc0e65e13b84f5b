"""Local features: the signal that survives crops, framing, small rotations and overlays.

Global hashes see the whole picture, so cutting 15 % off it or pasting it into a screenshot changes every bit.
Keypoints do not care: ORB finds corners in the work and in the copy, a binary index votes for the works that
share descriptors, and RANSAC fits one similarity transform (rotation, scale, translation) to the matches of the
best few candidates. A pixel check then warps the copy onto a 64x64 thumbnail of the work and measures their
correlation: shared keypoints alone are not enough (a distractor icon drawn on the same DVD shape can have 195
inliers), shared *pixels* are.

Smooth works (gradients, dark wallpapers) keep too few corners once cropped for any fit. When nothing verifies,
`template/1` searches the copy's own grey pixels in the 64x64 thumbnails of the few works the keypoints voted for
(no new stored data: the thumbnail is orb/3's), at a few scales, and accepts only a near-perfect correlation that
no other candidate comes close to. It recovers crops, captions and mirrors, not rotations.

Cost per query, one core, 1,000 registered works: ~5 ms features (image and its mirror: ORB is not
mirror-invariant), ~6 ms retrieval (faiss IVF, sub-linear), ~5 ms verification of 3 candidates, and
for the copies that reach the template search (~15 % of a feed) ~17 ms more (a loaded core). Stored per work:
~40 KB with 500 + 500 keypoints, a 128x128 thumbnail and a stability count per plain keypoint (`orb/5`, `encode`);
`orb/4` (the same, counted in one view only), `orb/3` (no stability) and `orb/2` blobs (64x64 thumbnail, ~28 KB)
of older ledgers are still read and matched.

LocalIndex holds every descriptor of the works it is given, in memory: the whole ledger up to
localindex.EXACT_MAX_WORKS works, and above that only the few works the bounded index (`localindex`) shortlists
for one query - the decision below is the same either way.
"""
from __future__ import annotations

import math
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from . import _hamming_kernel
from ._parallel import thread_map

ALGORITHM = "orb/5"  # /2: CLAHE second-pass keypoints; /3: 128x128 thumbnail; /4: keypoint stability; /5: more views
#                      for works with few stable keypoints (the same layout as /4)
READABLE = ("orb/5", "orb/4", "orb/3", "orb/2")  # blob versions decode() accepts, newest first

# Every value measured on the dev corpus (benchmarks/detection.py); see README "How matching works".
MIN_SIDE = 384  # upscale smaller images first (icons, thumbnails): ORB needs pixels to find corners
N_FEATURES = 500
FAST_THRESHOLD, FAST_FALLBACK, MIN_KEYPOINTS = 20, 5, 150  # retry low-contrast art with a lower FAST threshold
VOTE_MAX_DISTANCE = 64  # of 256 bits: a nearest neighbour this close votes for its work
EXACT_SEARCH_MAX = 20_000  # descriptors; above this a trained IVF index keeps retrieval sub-linear
NLIST_MAX, NPROBE = 1024, 4
TOP_K = 3  # (work, mirror) candidates verified per query
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 4.0
THUMB = 64
#: orb/3 keeps a 128x128 thumbnail too: textures (wood grain, brushed metal, icon collages) lose their detail at
#: 64x64, so crops of them fitted by 100-200 inliers correlated only 0.70-0.79 there. Where the 64x64 fails, the
#: pixel check takes the better of the two. Held-out corpus (weak attacks + 222 distractors): 13 more copies pass 0.80;
#: the closest distractor moves 0.759 -> 0.762, the closest wrong work 0.615 -> 0.625.
FINE = 128
MIN_COVERAGE = 0.10  # the overlap must cover this much of the work for the pixel check to mean anything
#: Decision rule: RANSAC inliers and zero-mean correlation of the aligned pixels. On the dev corpus the closest
#: distractor reached 0.76 (a hard-drive icon drawn on the same body as a registered one) and the closest wrong
#: work 0.75; true copies have a median of 0.99 (0.98 on the held-out corpus, where 0.85 would lose 3 % of them).
MIN_INLIERS = 8
MIN_NCC = 0.80
#: Fewer inliers (6-7: a smooth work cropped and recompressed keeps few corners) need near-identical pixels. On the
#: held-out corpus's weak attacks + 222 distractors, fits of 5-7 inliers reached 0.71 for a distractor and 0.63 for
#: a wrong work, and 9 more copies (captioned crops, rotated crops) pass 0.90.
FEW_INLIERS, MIN_NCC_FEW = 6, 0.90
#: Second pass, only when the first verifies nothing: ORB on a CLAHE-equalised grey image of the copy against the
#: works' equalised keypoints (stored after the thumbnail). Finds low-contrast, recompressed and heavily cropped
#: copies whose plain corners are too weak. Held-out corpus: local+global recall 0.923 -> 0.932, dev 0.967 -> 0.974,
#: closest distractor and wrong work unchanged (0.76 / 0.73). The pixel check still uses the plain grey image.
CLAHE_CLIP, CLAHE_TILE = 2.5, 8
#: Last resort, only when no fit verifies: the copy's grey pixels (the whole copy, and its centre, clear of caption
#: bands) as a template at a few scales, searched in the 64x64 thumbnails of the TEMPLATE_K works the keypoints
#: voted for most. Smooth works keep too few corners once cropped, but their shading is distinctive. The search
#: tries many positions and scales, so the bar is high, and the best work must stand out from the runner-up:
#: 1 - ncc at most TEMPLATE_MARGIN of the runner-up's. Held-out corpus (unmatched copies + 222 distractors): the
#: closest distractor reached 0.932 (a monitor icon against a registered monitor icon, runner-up ratio 0.19), 12
#: crops of smooth wallpapers pass; at 0.90 the distractor would match. A thumbnail at 128x128 does not separate
#: them better (the same distractor correlates 0.92 there).
TEMPLATE = "template/1"
TEMPLATE_K = 4
TEMPLATE_SIDE = 128  # the copy is shrunk to this long side first
TEMPLATE_WINDOWS = ((0.0, 1.0), (0.2, 0.8))  # fractions of the copy, both axes
TEMPLATE_FRACTIONS = tuple(float(f) for f in np.geomspace(0.35, 1.0, 9))  # of the work's width a window covers
TEMPLATE_MIN_PX, TEMPLATE_MIN_STD = 10, 2.0  # smallest template side (thumbnail pixels); flatter windows are skipped
TEMPLATE_NCC, TEMPLATE_MARGIN = 0.96, 0.25
#: Two smooth images correlate highly wherever both shade the same way: an unrelated gradient found in a window of a
#: smooth work. The best fit must also agree beyond that: its correlation once each side's best-fit plane (a linear
#: gradient) is removed. benchmarks/scale.py's 1,000 unrelated images against 2,000 works, exact index: the 2
#: template matches 0.09 and 0.25 (at 0.977 and 0.968 whole); the 41 true template matches of the dev and both
#: held-out corpora (142 works) >= 0.64 (crops of a work that is almost one gradient: residual std 0.5 grey levels),
#: 39 of them >= 0.92.
TEMPLATE_DETAIL = 0.5
#: Two registered works whose whole thumbnails correlate this much are one picture (an edit, a re-export): the margin
#: is not measured against such a runner-up. benchmarks/scale.py's real works: a work and its registered edit (a
#: small shape added) 0.92 at the 5th percentile, median 0.99; the closest other pair 0.85 (2,000 works); held-out
#: corpus (998 works) 0.87. Captioned crops found by the template search at 1 M works, bounded index: see README.
#: Such an edit that fits the copy at >= TEMPLATE_NCC too is named beside the best.
FAMILY_NCC = 0.90
#: One part of a copy shows one picture: a fit with fewer than 1/SHADOW_RATIO of the best fit's inliers, placed
#: mostly (SHADOW_OVERLAP of its box) where the best fit's work is, is a chance fit on the same pixels and is dropped,
#: unless the two works are one picture (FAMILY_NCC). benchmarks/scale.py: work 207's 25 % crop fitted 207 with
#: 108 inliers at 0.997 and also work 22, rotated 160° and mirrored, with 9 at 0.896 over 88 % of the copy. Two
#: works side by side in a collage each keep their fit.
SHADOW_RATIO, SHADOW_OVERLAP = 4, 0.5
#: An opaque band over the copy's edge (a meme caption bar, a sticker strip) covers part of the work, and its flat
#: colour decorrelates the overlap: captioned crops of benchmarks/scale.py's works (a white bar over the bottom 14 %)
#: kept 21-284 RANSAC inliers but correlated only 0.07-0.79. When a fit fails the pixel check, the check is tried
#: again without such bands (`bands`): rows (columns) from an edge inward whose pixels mostly keep the edge line's
#: colour (BAND_FILL of them within BAND_TOLERANCE grey levels; text on the bar dips a row to ~0.55), the edge line
#: itself uniform (BAND_EDGE), the band BAND_MIN..BAND_MAX of the copy's side. Only flat bands at an edge are left
#: out, never arbitrary regions: a distractor's different content elsewhere still counts against it.
BAND_TOLERANCE, BAND_EDGE, BAND_FILL = 16, 0.9, 0.4
BAND_MIN, BAND_MAX = 0.03, 0.4

cv2.setNumThreads(1)  # we parallelise over images and views, not inside one
_per_thread = threading.local()  # OpenCV's detector and CLAHE objects keep working buffers: a set per thread


class _Tools(NamedTuple):
    orb: cv2.ORB
    orb_low: cv2.ORB  # the low FAST threshold, for images with few corners
    clahe: cv2.CLAHE


def _tools() -> _Tools:
    """This thread's detectors and CLAHE."""
    tools = getattr(_per_thread, "tools", None)
    if tools is None:
        tools = _per_thread.tools = _Tools(cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=FAST_THRESHOLD),
                                           cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=FAST_FALLBACK),
                                           cv2.createCLAHE(clipLimit=CLAHE_CLIP,
                                                           tileGridSize=(CLAHE_TILE, CLAHE_TILE)))
    return tools


def equalise(g: np.ndarray) -> np.ndarray:
    """The CLAHE-equalised grey image (low-contrast, recompressed art)."""
    return _tools().clahe.apply(g)


@dataclass(frozen=True)
class Features:
    """ORB keypoints of one image, on its prepared grey working image of `size` (h, w)."""

    size: tuple[int, int]
    xy: np.ndarray  # (n, 2) float32 pixel positions
    descriptors: np.ndarray  # (n, 32) uint8
    thumb: np.ndarray  # (THUMB, THUMB) uint8 grey thumbnail for the pixel check
    # Keypoints of the CLAHE-equalised working image, for the second pass.
    eq_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (m, 2)
    eq_descriptors: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))  # (m, 32) uint8
    fine: np.ndarray | None = None  # (FINE, FINE) uint8 grey thumbnail (orb/3); None for orb/2 blobs
    # orb/5 (and orb/4): per plain keypoint, in how many synthetic views it was found again (localindex.stability,
    # which decides the plain keypoints the bounded index keeps); None for older blobs.
    stable: np.ndarray | None = None  # (n,) uint8


@dataclass(frozen=True)
class Geometry:
    """Where a work sits in a copy."""

    angle: float  # degrees, positive = clockwise on screen
    scale: float  # copy pixels per work pixel (working images)
    crop: tuple[float, float, float, float]  # part of the work visible in the copy (x0, y0, x1, y1), fractions
    placed: tuple[float, float, float, float]  # box of the work inside the copy, fractions of the copy
    flip: bool  # the copy is mirrored left-right (a vertical flip is a mirror plus 180°)
    ncc: float  # pixel correlation of the aligned overlap
    coverage: float  # fraction of the work present in the copy
    # Flat bands over the copy's edges left out of the pixel check (a caption bar): (edge, fraction of the copy's
    # side), e.g. (("bottom", 0.14),); empty when the whole overlap was compared.
    bands: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class LocalMatch:
    position: int  # index into the features the LocalIndex was built from
    inliers: int  # RANSAC inliers; 0 for a template match
    geometry: Geometry
    method: str = ALGORITHM  # ALGORITHM (keypoints fitted) or TEMPLATE (pixels found in the thumbnail)


def _prepare(image) -> np.ndarray:
    g = cv2.cvtColor(np.ascontiguousarray(np.asarray(image)[..., :3]), cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    if max(h, w) < MIN_SIDE:
        f = MIN_SIDE / max(h, w)
        g = cv2.resize(g, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_LINEAR)
    return g


def _detect(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tools = _tools()
    kp, des = tools.orb.detectAndCompute(g, None)
    if len(kp) < MIN_KEYPOINTS:
        kp, des = tools.orb_low.detectAndCompute(g, None)
    if des is None or not kp:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in kp], np.float32), des


def extract(image) -> Features:
    """Features of an RGB working image (a registered work's, stored with it), with each keypoint's stability."""
    from . import localindex  # the stability rule is the bounded index's (it imports this module)

    g = _prepare(image)
    xy, des = _detect(g)
    exy, edes = _detect(equalise(g))
    fine = cv2.resize(g, (FINE, FINE), interpolation=cv2.INTER_AREA)
    return Features(g.shape, xy, des, _coarse(fine), exy, edes, fine, localindex.stability(g, xy, des))


def _coarse(fine: np.ndarray) -> np.ndarray:
    # orb/3 stores only the fine thumbnail; the coarse one is derived, identically at extraction and decoding.
    return cv2.resize(fine, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


_HEADER = struct.Struct("<4sHHH")  # magic, height, width, n
_MAGICS = {b"orb5": FINE, b"orb4": FINE, b"orb3": FINE, b"orb2": THUMB}  # magic -> side of the stored thumbnail
_EQ_HEADER = struct.Struct("<4sH")  # magic, n: the section after the thumbnail
_EQ_MAGIC = b"orbe"
_STABLE_HEADER = struct.Struct("<4sB")  # magic, most views a keypoint is counted in: orb/4 and orb/5's last section
_STABLE_MAGIC = b"orbs"
_NOT_A_BLOB = "not an orb/5, orb/4, orb/3 or orb/2 feature blob"


def encode(f: Features) -> bytes:
    """orb/5 bytes: header, keypoints in 1/8 px as uint16, descriptors, the 128x128 thumbnail, then the same for
    the equalised image (keypoints and descriptors only), then one stability count per plain keypoint. orb/4 is the
    same layout (its counts from one view only); orb/3 ends before the stability; orb/2 had the 64x64 thumbnail in
    the same place."""
    xy = np.round(f.xy * 8).clip(0, 65535).astype("<u2")
    exy = np.round(f.eq_xy * 8).clip(0, 65535).astype("<u2")
    if f.stable is None or len(f.stable) != len(f.descriptors):
        raise ValueError("orb/5 features need each keypoint's stability (local.extract computes it)")
    from .localindex import FEW_STABLE_VIEWS, STABILITY_VIEWS

    return (_HEADER.pack(b"orb5", f.size[0], f.size[1], len(f.descriptors)) + xy.tobytes()
            + np.ascontiguousarray(f.descriptors, np.uint8).tobytes() + np.ascontiguousarray(f.fine).tobytes()
            + _EQ_HEADER.pack(_EQ_MAGIC, len(f.eq_descriptors)) + exy.tobytes()
            + np.ascontiguousarray(f.eq_descriptors, np.uint8).tobytes()
            + _STABLE_HEADER.pack(_STABLE_MAGIC, len(STABILITY_VIEWS) + len(FEW_STABLE_VIEWS))
            + np.asarray(f.stable, np.uint8).tobytes())


def decode(blob: bytes) -> Features:
    """Features from an orb/5, orb/4, orb/3 or orb/2 blob (the last two: older ledgers, without stability)."""
    if len(blob) < _HEADER.size:
        raise ValueError(_NOT_A_BLOB)
    magic, h, w, n = _HEADER.unpack_from(blob)
    side = _MAGICS.get(magic, 0)
    end = _HEADER.size + n * 4 + n * 32 + side * side
    if not side or len(blob) < end + _EQ_HEADER.size:
        raise ValueError(_NOT_A_BLOB)
    at = _HEADER.size
    xy = np.frombuffer(blob, "<u2", n * 2, at).reshape(n, 2).astype(np.float32) / 8
    des = np.frombuffer(blob, np.uint8, n * 32, at + n * 4).reshape(n, 32)
    stored = np.frombuffer(blob, np.uint8, side * side, at + n * 36).reshape(side, side)
    emagic, m = _EQ_HEADER.unpack_from(blob, end)
    at = end + _EQ_HEADER.size
    stable_at = at + m * 36
    counted = magic in (b"orb5", b"orb4")  # with a stability section
    size = stable_at + (_STABLE_HEADER.size + n if counted else 0)
    if emagic != _EQ_MAGIC or len(blob) != size:
        raise ValueError(_NOT_A_BLOB)
    exy = np.frombuffer(blob, "<u2", m * 2, at).reshape(m, 2).astype(np.float32) / 8
    edes = np.frombuffer(blob, np.uint8, m * 32, at + m * 4).reshape(m, 32)
    stable = None
    if counted:
        if _STABLE_HEADER.unpack_from(blob, stable_at)[0] != _STABLE_MAGIC:
            raise ValueError(_NOT_A_BLOB)
        stable = np.frombuffer(blob, np.uint8, n, stable_at + _STABLE_HEADER.size)
    fine = stored if side == FINE else None
    return Features((h, w), xy, des, stored if fine is None else _coarse(fine), exy, edes, fine, stable)


_NOT_KEPT = object()


class Query:
    """A copy as the local stage sees it: its grey working image and mirror (`views`), and their keypoints, each
    detected once, on first use (the equalised ones only if a pass needs them). Views may be detected on threads of
    their own (`detect`: OpenCV releases the GIL)."""

    def __init__(self, image):
        self.image = image  # as given (RGB): a learned shortlist embeds it (vectorindex.copy_vectors)
        self.vectors = None  # its learned vectors, once computed
        g = _prepare(image)
        self.views = [(False, g), (True, np.ascontiguousarray(g[:, ::-1]))]
        self._found: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
        self._kept: dict[tuple, tuple[np.ndarray, object]] = {}

    def known(self, key: tuple, work: np.ndarray, default=None):
        """What was kept (`keep`) for this copy, `key` and a work's descriptors (`work`, plain or equalised: the
        array itself, held as long as this copy lives), or `default`. A bounded local stage's first look and its
        whole shortlist index some works twice: each would search and verify them again."""
        hit = self._kept.get((key, id(work)))
        return hit[1] if hit is not None and hit[0] is work else default  # held: no other array has its id meanwhile

    def keep(self, key: tuple, work: np.ndarray, value) -> None:
        self._kept[key, id(work)] = (work, value)

    def kept(self, key: tuple, work: np.ndarray, compute):
        """`known`, else compute() kept (a verification that failed is kept too: None)."""
        value = self.known(key, work, _NOT_KEPT)
        if value is _NOT_KEPT:
            value = compute()
            self.keep(key, work, value)
        return value

    def detect(self, view: int, equalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Keypoint positions and descriptors of view `view`, or of its CLAHE-equalised image."""
        key = (view, equalised)
        if key not in self._found:
            g = self.views[view][1]
            self._found[key] = _detect(equalise(g) if equalised else g)
        return self._found[key]

    @property
    def plain(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._every_view(False)

    @property
    def equalised(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._every_view(True)

    def _every_view(self, equalised: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """`detect` of every view: those not detected yet on a thread each (`_parallel.thread_map`)."""
        views = range(len(self.views))
        thread_map(lambda v: self.detect(v, equalised), [v for v in views if (v, equalised) not in self._found])
        return [self._found[v, equalised] for v in views]


class _Flat:
    """Brute force over few works' descriptors (up to EXACT_SEARCH_MAX), in `_hamming_kernel`'s layout: a copy's
    nearest distances within each work are computed once per copy (`Query.kept`), so a bounded local stage's first
    look and its whole shortlist, which index some works twice, search them once."""

    def __init__(self, descriptors: list[np.ndarray]):
        self.descriptors = descriptors
        self.columns = [_hamming_kernel.columns(d) for d in descriptors]

    def nearest(self, q: "Query", key: tuple, des: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each of `des`'s (the copy's descriptors `key` names) nearest distance among the works' and the position of
        the work that has it: the first of those at that distance, as one search over all of them in order gives."""
        key = ("nearest",) + key
        rows = [q.known(key, d) for d in self.descriptors]
        missing = [w for w, row in enumerate(rows) if row is None]
        if missing:
            starts = np.cumsum([0] + [len(self.descriptors[w]) for w in missing])
            found = _hamming_kernel.nearest_each(des, np.concatenate([self.columns[w] for w in missing], 1), starts)
            for w, row in zip(missing, found):
                q.keep(key, self.descriptors[w], row)
                rows[w] = row
        distances = np.stack(rows)
        works = distances.argmin(0)
        return distances[works, np.arange(len(des))], works


class LocalIndex:
    """Descriptor index over many works' features: exact below EXACT_SEARCH_MAX descriptors, IVF above."""

    def __init__(self, features: list[Features]):
        import faiss  # imported here: only scanning needs it, and it starts OpenMP

        faiss.omp_set_num_threads(1)
        self.features = features
        self.index, self.owner = self._build(faiss, [f.descriptors for f in features])
        self.eq_index, self.eq_owner = self._build(faiss, [f.eq_descriptors for f in features])

    @staticmethod
    def _build(faiss, descriptors: list[np.ndarray]):
        owner = np.concatenate([np.full(len(d), i, np.int32) for i, d in enumerate(descriptors)]) \
            if descriptors else np.zeros(0, np.int32)
        if len(owner) <= EXACT_SEARCH_MAX:  # brute force (_hamming_kernel's: faster than faiss's IndexBinaryFlat)
            return _Flat(descriptors), owner
        db = np.concatenate(descriptors)
        nlist = int(min(NLIST_MAX, len(db) // 300))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, nlist)
        sample = np.random.RandomState(0).choice(len(db), min(len(db), nlist * 40), replace=False)
        index.train(db[sample])
        index.nprobe = NPROBE
        index.add(db)
        return index, owner

    def query(self, image) -> list[LocalMatch]:
        """Accepted matches for an RGB image, most inliers first."""
        return self.match(Query(image))

    def match(self, q: "Query", prefer: tuple[int, ...] = ()) -> list[LocalMatch]:
        """Accepted matches for a prepared copy (see Query), most inliers first: plain keypoints, then equalised
        ones, then the template search, each only when the one before found nothing. `prefer`: positions of works
        another signal ranks first (the learned vectors), verified in each pass however many votes other works get,
        and template-searched first."""
        if not len(self.owner):
            return []
        found, voted = self.keypoints(q, prefer)
        return found or self._templates(q.views, voted, prefer)

    def keypoints(self, q: "Query", prefer: tuple[int, ...] = (), plain_only: bool = False
                  ) -> tuple[list[LocalMatch], list]:
        """`match`'s keypoint passes alone: the matches (plain keypoints, then, unless `plain_only`, equalised ones
        if those found nothing), and the (votes, view, position) candidates the passes' votes proposed."""
        if not len(self.owner):
            return [], []
        found, voted = self._pass(q, False, prefer)
        if not found and not plain_only and len(self.eq_owner):
            found, more = self._pass(q, True, prefer)
            voted += more
        return found, voted

    def _templates(self, views, voted, prefer: tuple[int, ...] = ()) -> list[LocalMatch]:
        """Last resort for smooth works, whose crops keep too few corners to fit: the copy's grey pixels, as a
        template at a few scales, searched in the thumbnails of the works the keypoints voted for most."""
        works = list(dict.fromkeys(prefer))
        for _, _, c in sorted(voted, reverse=True):
            if c not in works:
                works.append(c)
        if not works:
            return []
        small = _Windows(views)
        top = works[:TEMPLATE_K]
        fits = sorted(zip(thread_map(lambda c: _template_fit(self.features[c], small), top), top),
                      key=lambda t: -t[0][0])
        (ncc, hyp, detail), c = fits[0]
        # The runner-up the best must stand out from is another picture: a registered edit of the same work (its
        # whole thumbnail correlates >= FAMILY_NCC with the best's) fits a copy as well and says nothing against it.
        family = {f[1] for f in fits[1:] if _thumb_ncc(self.features[c], self.features[f[1]]) >= FAMILY_NCC}
        runner_up = max((f[0][0] for f in fits[1:] if f[1] not in family), default=0.0)
        if hyp is None or ncc < TEMPLATE_NCC or (1 - ncc) > TEMPLATE_MARGIN * (1 - runner_up) \
                or detail < TEMPLATE_DETAIL:
            return []
        # Every version of the picture the copy fits as well as any template match must is named, best first: which
        # of a work and its registered edit fits a crop a little better says nothing about which one was copied.
        found = []
        for (ncc, hyp, _), c in fits:
            if c == fits[0][1] or (c in family and hyp is not None and ncc >= TEMPLATE_NCC):
                flip, M, q_shape = hyp
                work = self.features[c]
                found.append(LocalMatch(c, 0, _geometry(M, flip, work.size, q_shape, ncc,
                                                        float(_coverage(M, work.size, q_shape))), TEMPLATE))
        return found

    def _pass(self, q: "Query", eq: bool, prefer: tuple[int, ...] = ()) -> tuple[list[LocalMatch], list]:
        """One pass (plain or equalised keypoints): each view's descriptors vote for their nearest work's, and the
        TOP_K (work, view) pairs with most votes are verified, and each preferred work in the view that voted for it
        most (if at least 2 votes did, as for any candidate). The views' searches and the verifications run on a
        thread each where this process has a core to spare (`_parallel.thread_map`: faiss and OpenCV release the
        GIL); the answer is the one they give in turn. What the copy's query already computed for a work (its
        distances to the work's descriptors, a verification) is not computed again (`Query.kept`)."""
        views, detected = q.views, (q.equalised if eq else q.plain)
        index, owner = (self.eq_index, self.eq_owner) if eq else (self.index, self.owner)

        def search(v: int) -> tuple[np.ndarray, np.ndarray] | None:
            """Each descriptor's nearest (distance, work position) among the works'."""
            des = detected[v][1]
            if not len(des):
                return None
            if isinstance(index, _Flat):
                return index.nearest(q, (eq, v), des)
            import faiss

            faiss.omp_set_num_threads(1)  # OpenMP's setting is the calling thread's: one each, as on this one
            dist, nn = index.search(des, 1)
            ok = nn[:, 0] >= 0
            return np.where(ok, dist[:, 0], _hamming_kernel.FAR), owner[np.where(ok, nn[:, 0], 0)]

        candidates, preferred = [], {}
        for v, found in enumerate(thread_map(search, range(len(detected)))):
            if found is None:
                continue
            dist, works = found
            votes = np.bincount(works[dist < VOTE_MAX_DISTANCE], minlength=len(self.features))
            candidates += [(int(votes[c]), v, int(c)) for c in np.argsort(-votes)[:TOP_K] if votes[c] >= 2]
            for c in prefer:
                preferred[c] = max(preferred.get(c, (-1, v, c)), (int(votes[c]), v, c))
        chosen = sorted(candidates, reverse=True)[:TOP_K]
        chosen += [p for c, p in preferred.items() if p[0] >= 2 and all(x[2] != c for x in chosen)]

        def verify(group: list) -> LocalMatch | None:
            """One work's candidates (a view each), most votes first: the better fit of those that verify. A
            symmetric work verifies both ways round; it is called mirrored only when the mirror fits clearly better
            (`_fits_better`), so once one view has verified, the other's pixels are checked only if its inliers
            could win."""
            best = None
            for _, v, c in group:
                (flip, image), (qxy, qdes) = views[v], detected[v]
                work = self.features[c]
                # The equalised pass matches equalised keypoints; the pixel check always compares plain grey pixels.
                wxy, wdes = (work.eq_xy, work.eq_descriptors) if eq else (work.xy, work.descriptors)
                need = 0 if best is None else _inliers_to_beat(best, flip)
                m = q.kept(("verified", eq, v, need), wdes,
                           lambda: self._verify(image, qxy, qdes, work, flip, wxy, wdes, need))
                if m is not None and (best is None or _fits_better(LocalMatch(c, *m), best)):
                    best = LocalMatch(c, *m)
            return best

        groups: dict[int, list] = {}
        for candidate in chosen:
            groups.setdefault(candidate[2], []).append(candidate)
        verified = {c: m for c, m in zip(groups, thread_map(verify, groups.values())) if m is not None}
        return self._unshadowed(sorted(verified.values(), key=lambda m: -m.inliers)), candidates

    def _unshadowed(self, found: list[LocalMatch]) -> list[LocalMatch]:
        """`found` (most inliers first) without the weak fits placed over the best fit's work (SHADOW_RATIO)."""
        if len(found) < 2:
            return found
        best = found[0]
        bx0, by0, bx1, by1 = best.geometry.placed
        kept = [best]
        for m in found[1:]:
            x0, y0, x1, y1 = m.geometry.placed
            inside = max(0.0, min(x1, bx1) - max(x0, bx0)) * max(0.0, min(y1, by1) - max(y0, by0))
            shadowed = (m.inliers * SHADOW_RATIO < best.inliers
                        and inside >= SHADOW_OVERLAP * max(1e-9, (x1 - x0) * (y1 - y0))
                        and _thumb_ncc(self.features[best.position], self.features[m.position]) < FAMILY_NCC)
            if not shadowed:
                kept.append(m)
        return kept

    @staticmethod
    def _verify(q, qxy, qdes, work: Features, flip: bool, wxy, wdes, need: int = 0) -> tuple[int, Geometry] | None:
        """(inliers, geometry) of the copy's keypoints fitted onto the work's and checked by their pixels, or None:
        too few inliers (or fewer than `need`), or pixels that disagree."""
        if len(wdes) < 2 or len(qdes) < 2:
            return None
        dist, nn = _two_nearest(qdes, wdes)
        good = np.flatnonzero(dist[:, 0] < RATIO * dist[:, 1])  # Lowe's ratio test
        if len(good) < max(5, need):  # RANSAC's inliers are some of these
            return None
        src = wxy[nn[good, 0]]
        dst = qxy[good]
        M, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                                 maxIters=2000, confidence=0.995)
        if M is None or int(inliers.sum()) < max(FEW_INLIERS, need):
            return None
        bar = MIN_NCC if int(inliers.sum()) >= MIN_INLIERS else MIN_NCC_FEW
        ncc, coverage, left_out = _pixel_check(q, M, work, bar)
        if ncc < bar:
            return None
        return int(inliers.sum()), _geometry(M, flip, work.size, q.shape, ncc, coverage, left_out)


def _two_nearest(qdes: np.ndarray, wdes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each copy descriptor's two nearest work descriptors by Hamming distance: (distances, indices), (n, 2) each,
    the lower index first on a tie: what OpenCV's BFMatcher.knnMatch gives, as arrays instead of ~1,000 DMatch
    objects (_hamming_kernel's brute force: ~0.3 ms for 500 x 500 descriptors; faiss's 0.5, OpenCV's ~3)."""
    return _hamming_kernel.two_nearest(qdes, _hamming_kernel.columns(wdes))


def _thumb_ncc(a: Features, b: Features) -> float:
    """Zero-mean correlation of two works' whole 64x64 thumbnails."""
    return _zncc(a.thumb.astype(np.float32).ravel(), b.thumb.astype(np.float32).ravel())


def _zncc(x: np.ndarray, y: np.ndarray) -> float:
    """Zero-mean normalised correlation of two same-shape arrays (0 when either is flat)."""
    x, y = x - x.mean(), y - y.mean()
    d = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / d if d > 1e-6 else 0.0


def _shrink(q: np.ndarray) -> np.ndarray:
    f = TEMPLATE_SIDE / max(q.shape)
    if f >= 1:
        return q.astype(np.float32)
    return cv2.resize(q, (max(1, round(q.shape[1] * f)), max(1, round(q.shape[0] * f))),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


class _Windows:
    """The copy's template windows (TEMPLATE_WINDOWS of each view, shrunk to TEMPLATE_SIDE; flat ones left out),
    and their resizings, kept for every candidate work that asks for the same size (works of one aspect ratio)."""

    def __init__(self, views):
        self.windows = []  # (flip, the view's working shape, shrunk pixels per working pixel, x0, y0, window)
        for flip, q in views:
            qs = _shrink(q)
            for a0, a1 in TEMPLATE_WINDOWS:
                y0, y1 = round(a0 * qs.shape[0]), round(a1 * qs.shape[0])
                x0, x1 = round(a0 * qs.shape[1]), round(a1 * qs.shape[1])
                window = qs[y0:y1, x0:x1]
                if window.size and window.std() >= TEMPLATE_MIN_STD:
                    self.windows.append((flip, q.shape, qs.shape[1] / q.shape[1], x0, y0, window))
        self._resized: dict[tuple[int, int, int], np.ndarray] = {}

    def resized(self, k: int, tw: int, th: int) -> np.ndarray:
        key = (k, tw, th)
        if key not in self._resized:  # threads may both compute one: the same pixels
            self._resized[key] = cv2.resize(self.windows[k][5], (tw, th), interpolation=cv2.INTER_AREA)
        return self._resized[key]


def _template_fit(work: Features, small: _Windows) -> tuple[float, tuple | None, float]:
    """Best zero-mean correlation of the copy (or its central part) with a window of the work's 64x64 thumbnail,
    over TEMPLATE_FRACTIONS of the work's width and both mirrors, the fit that gave it: (flip, work->copy
    transform in working-image pixels, the copy's working shape), or None, and that fit's `_detail`."""
    H, W = work.size
    T = work.thumb.shape[0]
    thumb = work.thumb.astype(np.float32)
    best: tuple[float, tuple | None] = (-1.0, None)
    pair = None
    for k, (flip, shape, f, x0, y0, window) in enumerate(small.windows):
        for fx in TEMPLATE_FRACTIONS:
            tw, th = round(T * fx), round(T * fx * W * window.shape[0] / (window.shape[1] * H))
            if not (TEMPLATE_MIN_PX <= tw <= T and TEMPLATE_MIN_PX <= th <= T):
                continue
            template = small.resized(k, tw, th)
            _, ncc, _, (lx, ly) = cv2.minMaxLoc(cv2.matchTemplate(thumb, template, cv2.TM_CCOEFF_NORMED))
            if ncc > best[0]:
                scale = window.shape[1] / f / (fx * W)  # copy pixels per work pixel
                M = np.array([[scale, 0, x0 / f - scale * lx * W / T], [0, scale, y0 / f - scale * ly * H / T]])
                best = (float(ncc), (flip, M, shape))
                pair = template, (lx, ly)
    if pair is None:
        return (*best, 0.0)
    template, (lx, ly) = pair
    th, tw = template.shape
    return (*best, _detail(template, thumb[ly:ly + th, lx:lx + tw]))


def _detail(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean correlation of two same-shape grey images once each one's best-fit plane is removed."""
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    X = np.stack([np.ones(a.size), xs.ravel(), ys.ravel()], 1).astype(np.float64)
    ra, rb = (v - X @ np.linalg.lstsq(X, v, rcond=None)[0] for v in (a.ravel().astype(np.float64),
                                                                     b.ravel().astype(np.float64)))
    return _zncc(ra, rb)


def _coverage(M: np.ndarray, size: tuple[int, int], qshape: tuple[int, int]) -> float:
    """Fraction of the work that the copy shows, for an axis-aligned work->copy transform."""
    (h, w), (qh, qw) = size, qshape
    s, tx, ty = M[0, 0], M[0, 2], M[1, 2]
    x0, x1 = max(0.0, -tx / s), min(float(w), (qw - tx) / s)
    y0, y1 = max(0.0, -ty / s), min(float(h), (qh - ty) / s)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / (w * h)


MIRROR_MARGIN = 1.25  # a fit of the mirrored copy replaces the straight one's with this many times its inliers


def _fits_better(a: LocalMatch, b: LocalMatch) -> bool:
    if a.geometry.flip == b.geometry.flip:
        return a.inliers > b.inliers
    flipped, straight = (a, b) if a.geometry.flip else (b, a)
    mirror_wins = flipped.inliers >= MIRROR_MARGIN * straight.inliers
    return (a is flipped) == mirror_wins


def _inliers_to_beat(best: LocalMatch, flip: bool) -> int:
    """The fewest inliers a fit of the same work on the copy (`flip`: mirrored) needs to replace `best`
    (`_fits_better`); a conservative bound (never above it)."""
    if flip == best.geometry.flip:
        return best.inliers + 1
    if flip:
        return math.ceil(MIRROR_MARGIN * best.inliers)
    return math.floor(best.inliers / MIRROR_MARGIN)  # more than inliers / MIRROR_MARGIN: at least this + 1


def _pixel_check(q: np.ndarray, M: np.ndarray, work: Features, bar: float
                 ) -> tuple[float, float, tuple[tuple[str, float], ...]]:
    """Zero-mean correlation between the work's thumbnail and the copy warped onto it, the overlap, and the bands
    left out: the 64x64 thumbnail's, or where that is below `bar` the better of it and (orb/3) the 128x128
    thumbnail's (which decides the same, in half the time for most copies); the overlap is measured on the 64x64
    one. Below `bar`, the copy's flat edge bands (`bands`) are left out and the better correlation kept."""
    ncc, coverage = _best_correlation(q, M, work, None, bar)
    left_out: tuple[tuple[str, float], ...] = ()
    if ncc < bar and coverage >= MIN_COVERAGE:
        found = _bands_of(q)
        if found:
            x0, y0, x1, y1 = _inside(found, q.shape[1], q.shape[0])
            keep = np.zeros(q.shape, np.uint8)
            keep[y0:y1, x0:x1] = 1
            banded = _best_correlation(q, M, work, keep, bar)[0]
            if banded > ncc:
                ncc, left_out = banded, found
    return ncc, coverage, left_out


def _best_correlation(q, M, work: Features, keep, bar: float) -> tuple[float, float]:
    """The 64x64 thumbnail's correlation and the overlap; below `bar`, the better of it and the 128x128's."""
    ncc, coverage = _correlate(q, M, work.size, work.thumb, keep)
    if work.fine is not None and coverage >= MIN_COVERAGE and ncc < bar:
        ncc = max(ncc, _correlate(q, M, work.size, work.fine, keep)[0])
    return ncc, coverage


def bands(g: np.ndarray) -> tuple[tuple[str, float], ...]:
    """Flat bands over the edges of a grey image (see BAND_FILL): ((edge, fraction of the side), ...)."""
    found = []
    for edge in ("top", "bottom", "left", "right"):
        lines = g if edge in ("top", "bottom") else g.T
        if edge in ("bottom", "right"):
            lines = lines[::-1]
        most = int(BAND_MAX * len(lines))
        outer = lines[:most + 1].astype(np.int16)
        colour = int(np.median(outer[0]))
        fill = (np.abs(outer - colour) <= BAND_TOLERANCE).mean(axis=1)
        if fill[0] < BAND_EDGE:
            continue
        below = np.flatnonzero(fill < BAND_FILL)
        if not len(below) or below[0] < BAND_MIN * len(lines):  # no end within BAND_MAX, or too thin to matter
            continue
        found.append((edge, round(int(below[0]) / len(lines), 4)))
    return tuple(found)


def unbanded(image, g: np.ndarray):
    """`image` (RGB, Pillow or array) without the flat bands over the edges of `g`, its grey view (`bands`), or
    None if it has none."""
    found = _bands_of(g)
    if not found:
        return None
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)[..., :3])
    return im.crop(_inside(found, *im.size))


def _inside(found: tuple[tuple[str, float], ...], width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of a picture of this size that its bands (`bands`: (edge, fraction)) leave."""
    cut = {edge: round(fraction * (height if edge in ("top", "bottom") else width)) for edge, fraction in found}
    return cut.get("left", 0), cut.get("top", 0), width - cut.get("right", 0), height - cut.get("bottom", 0)


_KEPT = 8


def _kept(q: np.ndarray, key, compute):
    """compute() for a copy's view `q`, kept per thread for the last _KEPT (view, key) pairs: a copy's view is
    shrunk to the same size for the works of a family (nearly the same fit), and its bands are looked for once, not
    per candidate work."""
    cache = getattr(_per_thread, "kept", None)
    if cache is None:
        cache = _per_thread.kept = OrderedDict()
    k = (id(q), key)
    if k in cache and cache[k][0] is q:  # the entry holds `q`, so no other array has its id meanwhile
        cache.move_to_end(k)
        return cache[k][1]
    value = compute()
    cache[k] = (q, value)
    while len(cache) > _KEPT:
        cache.popitem(last=False)
    return value


def _shrunk(q: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`q` resized to `size` (w, h) by area. (A whole factor, OpenCV's fast path, would take a fifth of the time, but
    moves the sampling by up to a pixel: two dev corpus copies of flat, low-contrast works then fell from 0.92 and
    0.83 to below MIN_NCC.)"""
    return _kept(q, ("shrunk", size), lambda: cv2.resize(q, size, interpolation=cv2.INTER_AREA))


def _bands_of(q: np.ndarray) -> tuple[tuple[str, float], ...]:
    return _kept(q, "bands", lambda: bands(q))


def _correlate(q: np.ndarray, M: np.ndarray, size: tuple[int, int], thumb: np.ndarray,
               keep: np.ndarray | None = None) -> tuple[float, float]:
    """Correlation over the overlap (only the copy's pixels where `keep` is nonzero, if given) and the overlap."""
    h, w = size
    T = thumb.shape[0]
    S = np.array([[w / T, 0, 0.5 * w / T - 0.5], [0, h / T, 0.5 * h / T - 0.5], [0, 0, 1]])
    A = np.vstack([M, [0, 0, 1]]) @ S  # thumbnail pixel -> copy pixel
    s = np.sqrt(abs(np.linalg.det(A[:2, :2])))
    if s > 1.5:  # shrink the copy first so the sampling does not alias
        small = _shrunk(q, (max(1, round(q.shape[1] / s)), max(1, round(q.shape[0] / s))))
        fx, fy = small.shape[1] / q.shape[1], small.shape[0] / q.shape[0]
        # Pixel centres, not corners, scale: without the half-pixel terms fine line work misaligns by ~1 pixel.
        A = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]]) @ A
        if keep is not None:
            keep = cv2.resize(keep, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        q = small
    A2 = A[:2].astype(np.float32)
    warped = cv2.warpAffine(q.astype(np.float32), A2, (T, T), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    mask = cv2.warpAffine(np.ones(q.shape, np.uint8), A2, (T, T),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    coverage = float(mask.mean())
    if keep is not None:
        mask &= cv2.warpAffine(keep, A2, (T, T), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    if coverage < MIN_COVERAGE or mask.mean() < MIN_COVERAGE:
        return 0.0, coverage
    return _zncc(warped[mask], thumb[mask].astype(np.float32)), coverage


def _geometry(M, flip: bool, wshape, qshape, ncc: float, coverage: float, bands=()) -> Geometry:
    scale = float(np.hypot(M[0, 0], M[1, 0]))
    angle = float(np.degrees(np.arctan2(M[1, 0], M[0, 0])))  # image y points down: positive is clockwise
    (wh, ww), (qh, qw) = wshape, qshape
    Mi = cv2.invertAffineTransform(M)
    corners = np.array([[0, 0], [qw, 0], [0, qh], [qw, qh]], np.float64) @ Mi[:, :2].T + Mi[:, 2]
    crop = (max(0.0, corners[:, 0].min() / ww), max(0.0, corners[:, 1].min() / wh),
            min(1.0, corners[:, 0].max() / ww), min(1.0, corners[:, 1].max() / wh))
    placed_px = np.array([[0, 0], [ww, 0], [0, wh], [ww, wh]], np.float64) @ M[:, :2].T + M[:, 2]
    x0, x1 = placed_px[:, 0].min() / qw, placed_px[:, 0].max() / qw
    if flip:  # matched on the mirrored copy: report the box (and the bands) in the copy's own coordinates
        x0, x1 = 1 - x1, 1 - x0
        angle = -angle
        bands = tuple(({"left": "right", "right": "left"}.get(e, e), f) for e, f in bands)
    placed = (max(0.0, x0), max(0.0, placed_px[:, 1].min() / qh), min(1.0, x1), min(1.0, placed_px[:, 1].max() / qh))
    return Geometry(round(angle, 2), round(scale, 4), tuple(round(float(v), 4) for v in crop),
                    tuple(round(float(v), 4) for v in placed), flip, round(ncc, 4), round(coverage, 4), tuple(bands))
