"""Decide whether an image is a copy of a registered work, and say why.

All decision thresholds live here, in THRESHOLDS, with the data they were calibrated on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import local
from .fingerprints import BITS, DIHEDRAL, PDQ, PDQEQ, PHASH, FingerprintSet
from .index import Index

#: Maximum Hamming distance for a match, per signal (dihedral variants included). Calibrated with
#: benchmarks/detection.py on the dev corpus (../shared/corpus: 142 works, 1,988 copies under 14 attacks, 222
#: unrelated designs): the nearest distractor is at PDQ 80 / pHash 8, and wrong-work attributions start at PDQ 50.
#: At these values 0 of 222 distractors match (< 0.45 %, the finest the corpus resolves) and 0 copies are
#: attributed to the wrong work. See README "How matching works".
THRESHOLDS = {PDQ: 40, PHASH: 6, PDQEQ: 40}
#: Two weaker signals that agree on the same work are as good as one strong one: both within these distances.
#: On the dev corpus this finds most captioned and watermarked copies and still matches 0 of 222 distractors.
AGREEMENT = {PDQ: 72, PHASH: 10}
#: Below this PDQ quality a hash carries too little detail to trust (Meta's guidance for PDQ: < 50). Works whose
#: plain PDQ is that weak (dark, low-contrast) are matched by their equalised PDQ (pdqeq/1) and local features;
#: blank images (pdqeq quality 0 too) by exact bytes only, since every blank image looks like every other.
PDQ_MIN_QUALITY = 50


@dataclass(frozen=True)
class Match:
    """One registered work an image was found to copy."""

    work_id: int
    signal: str  # algorithm id that explains the match ("sha256/1", "pdq/1", "orb/3", "template/1", ...)
    distance: int | None  # Hamming distance for hash signals (0 for exact bytes); None for orb/3 and template/1
    # (see geometry; template/1 is the copy's pixels found in the thumbnail orb/3 stores)
    transform: str  # what was done to the work to get the copy, e.g. "flipped horizontally"
    score: float  # 1.0 = identical; 0.5 = exactly at the decision threshold
    sha256_exact: bool
    confidence: str  # "exact", "high" or "medium"
    geometry: dict | None = None  # crop box, placement, rotation, scale, flip where known

    def to_dict(self) -> dict:
        return asdict(self)


_SIGNALS = (PDQ, PHASH, f"{PDQ}+{PHASH}", PDQEQ)  # candidate signal codes, in the order a tie is settled


def _score(distance: int, threshold: int) -> float:
    # Linear in distance: 1 at 0, 0.5 at the threshold. Comparable across signals of different lengths.
    return round(max(0.0, 1.0 - 0.5 * distance / max(threshold, 1)), 3)


@lru_cache(maxsize=None)
def _score_table(threshold: int) -> np.ndarray:
    return np.array([_score(d, threshold) for d in range(257)])


def _scores(distances: np.ndarray, threshold: int) -> np.ndarray:
    """`_score` of many distances (a table: the same rounding as the scalar's)."""
    return _score_table(threshold)[distances]


def _confidence(score: float) -> str:
    return "high" if score >= 0.75 else "medium"


class _Candidates:
    """Hash hits of every view of one image, as columns: (work, signal code, distance, variant, view, score).

    Each work keeps its first best-scoring hit, in the order the hits were added (whole image before the framed
    view, single signals before their agreement, equalised PDQ last), so one Match is made per work, not per hit:
    near-duplicate clusters give ~200 hits per image at a million works."""

    def __init__(self):
        self.columns: list[tuple[np.ndarray, ...]] = []

    def add(self, work_ids, signal: int, distances, variants, view: int, scores) -> None:
        if len(work_ids):
            n = len(work_ids)
            self.columns.append((np.asarray(work_ids, np.int64), np.full(n, signal), np.asarray(distances, np.int64),
                                 np.asarray(variants, np.int64), np.full(n, view), np.asarray(scores, np.float64)))

    def best(self) -> list[tuple]:
        """Per work, its (work, signal, distance, variant, view, score) that wins."""
        if not self.columns:
            return []
        work, signal, distance, variant, view, score = (np.concatenate(c) for c in zip(*self.columns))
        order = np.lexsort((np.arange(len(work)), -score, work))  # per work: highest score, then first added
        first = np.ones(len(order), bool)
        first[1:] = work[order[1:]] != work[order[:-1]]
        pick = order[first]
        return list(zip(work[pick].tolist(), signal[pick].tolist(), distance[pick].tolist(), variant[pick].tolist(),
                        view[pick].tolist(), score[pick].tolist()))


def _global(found: _Candidates, index: Index, pdq_variants, phash_variants, quality: int, view: int) -> None:
    """Hash hits of one view of the image (the whole image, or the picture inside a frame)."""
    if quality < PDQ_MIN_QUALITY:
        return
    detailed = index.detailed(PDQ, PDQ_MIN_QUALITY)
    # PDQ's agreement radius is too wide for an index: search PDQ at its own threshold, and compute the PDQ
    # distance of the (few) works within pHash's agreement radius directly. Same hits as scanning at 72.
    phash = index.nearest(PHASH, phash_variants, AGREEMENT[PHASH], detailed)
    strong = index.nearest(PDQ, pdq_variants, THRESHOLDS[PDQ], detailed)
    agree = index.nearest(PDQ, pdq_variants, AGREEMENT[PDQ], detailed, among=phash.work_ids)
    for code, n in ((0, strong), (1, phash)):
        keep = n.distances <= THRESHOLDS[_SIGNALS[code]]
        found.add(n.work_ids[keep], code, n.distances[keep], n.variants[keep], view,
                  _scores(n.distances[keep], THRESHOLDS[_SIGNALS[code]]))
    # Works within both agreement radii (every PDQ hit within 72 of a pHash hit is in `agree`).
    both, ia, ib = np.intersect1d(agree.work_ids, phash.work_ids, assume_unique=True, return_indices=True)
    score = np.maximum(0.5, np.minimum(_scores(agree.distances[ia], AGREEMENT[PDQ]),
                                       _scores(phash.distances[ib], AGREEMENT[PHASH])))
    found.add(both, 2, agree.distances[ia], agree.variants[ia], view, score)


def _low_detail(found: _Candidates, index: Index, query: FingerprintSet) -> None:
    """Dark or low-contrast works, whose plain PDQ is too weak to use, by their equalised PDQ."""
    eligible = index.only_detailed(PDQ, PDQEQ, PDQ_MIN_QUALITY)
    eq = query.get(PDQEQ)
    if not eligible.any() or eq is None or (eq.quality or 0) < PDQ_MIN_QUALITY:
        return
    near = index.nearest(PDQEQ, query.pdqeq_variants, THRESHOLDS[PDQEQ], eligible)
    found.add(near.work_ids, 3, near.distances, near.variants, 2, _scores(near.distances, THRESHOLDS[PDQEQ]))


def _local_score(m: local.LocalMatch) -> float:
    if m.method == local.TEMPLATE:  # 0.5 at TEMPLATE_NCC, never more than medium confidence: no keypoints agree
        return round(0.5 + 0.2 * (m.geometry.ncc - local.TEMPLATE_NCC) / (1 - local.TEMPLATE_NCC), 3)
    # 0.5 at the decision rule's edge, rising with pixel agreement and with inliers (saturating at 40).
    ncc = min(1.0, max(0.0, (m.geometry.ncc - local.MIN_NCC) / (1 - local.MIN_NCC)))
    inliers = min(1.0, max(0.0, (m.inliers - local.MIN_INLIERS) / 32))
    return round(0.5 + 0.25 * ncc + 0.25 * inliers, 3)


def describe_geometry(g: local.Geometry) -> str:
    """'cropped to 70% x 70% of the work, rotated 5° counter-clockwise' from a fitted transform."""
    parts, angle = [], g.angle
    if g.flip:
        vertical = abs(abs(angle) - 180) < 45
        parts.append("flipped vertically" if vertical else "flipped horizontally")
        if vertical:
            angle = angle - 180 if angle > 0 else angle + 180
    if abs(angle) >= 1.5:
        parts.append(f"rotated {abs(angle):.0f}° {'clockwise' if angle > 0 else 'counter-clockwise'}")
    x0, y0, x1, y1 = g.crop
    if (x1 - x0) * (y1 - y0) < 0.95:
        parts.append(f"cropped to {x1 - x0:.0%} x {y1 - y0:.0%} of the work")
    px0, py0, px1, py1 = g.placed
    if (px1 - px0) * (py1 - py0) < 0.85:
        parts.append(f"framed inside a larger image (the work fills {(px1 - px0) * (py1 - py0):.0%} of it)")
    for edge, fraction in g.bands:
        parts.append(f"a flat band over the {edge} {fraction:.0%} of the copy (a caption bar?) not compared")
    return ", ".join(parts) or "same image, resized or recompressed"


def find_matches(query: FingerprintSet, index: Index, image=None) -> list[Match]:
    """Every registered work `query` copies, best first. `query` must carry its dihedral variants.

    Cheap signals first: exact bytes, then PDQ and pHash in 8 orientations, of the whole image and of the picture
    inside a uniform frame. Only when those find nothing, and `image` (the RGB working image) is given, the local
    features stage looks for crops, framing, small rotations and overlays.
    """
    best: dict[int, Match] = {}
    for work_id in index.by_sha256.get(query.sha256, []):
        best[work_id] = Match(work_id, "sha256/1", 0, "none (identical bytes)", 1.0, True, "exact")
    found = _Candidates()
    _global(found, index, query.pdq_variants, query.phash_variants, query.pdq.quality or 0, 0)
    inner = query.inner
    if inner is not None:
        _global(found, index, inner.pdq_variants, inner.phash_variants, inner.quality, 1)
    _low_detail(found, index, query)
    for work_id, signal, distance, variant, view, score in found.best():
        if work_id in best:  # identical bytes
            continue
        transform, geometry = DIHEDRAL[variant], None
        if view == 1:
            transform = f"framed (border removed){'' if variant == 0 else ', ' + transform}"
            geometry = {"placed": tuple(round(v, 4) for v in inner.box)}
        best[work_id] = Match(work_id, _SIGNALS[signal], distance, transform, score, False, _confidence(score),
                              geometry)
    if not best and image is not None and index.has_local:
        for work_id, m in index.local_matches(image):
            score = _local_score(m)
            geometry = {**asdict(m.geometry), "inliers": m.inliers}
            best[work_id] = Match(work_id, m.method, None, describe_geometry(m.geometry), score, False,
                                  _confidence(score), geometry)
    return sorted(best.values(), key=lambda m: (-m.score, m.work_id))


def explain(match: Match) -> str:
    """One human sentence: why this image is considered a copy."""
    if match.sha256_exact:
        return "identical file bytes (SHA-256)"
    what = "same image" if match.transform == "none" else match.transform
    if match.signal == local.ALGORITHM:
        g = match.geometry
        return f"{what}: {g['inliers']} matching keypoints, pixel correlation {g['ncc']:.2f}"
    if match.signal == local.TEMPLATE:
        return f"{what}: too few keypoints to fit, but its pixels are found in the work's thumbnail (correlation" \
               f" {match.geometry['ncc']:.3f}, well above any other candidate work)"
    if "+" in match.signal:
        return f"{what}: PDQ distance {match.distance}/256 and pHash agree (both within {AGREEMENT[PDQ]}/256 and" \
               f" {AGREEMENT[PHASH]}/64)"
    name = {PDQ: "PDQ", PHASH: "pHash", PDQEQ: "PDQ of the equalised image"}.get(match.signal, match.signal)
    return f"{what}: {name} distance {match.distance}/{BITS[match.signal]} (threshold {THRESHOLDS[match.signal]})"
