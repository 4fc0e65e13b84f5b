"""Decide whether an image is a copy of a registered work, and say why.

All decision thresholds live here, in THRESHOLDS, with the data they were calibrated on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .fingerprints import BITS, DIHEDRAL, PDQ, PHASH, FingerprintSet
from .index import Index

#: Maximum Hamming distance for a match, per signal (dihedral variants included). Calibrated with
#: benchmarks/detection.py on the dev corpus (../shared/corpus: 142 works, 1,988 copies under 14 attacks, 222
#: unrelated designs): the nearest distractor is at PDQ 80 / pHash 8, and wrong-work attributions start at PDQ 50.
#: At these values 0 of 222 distractors match (< 0.45 %, the finest the corpus resolves) and 0 copies are
#: attributed to the wrong work. See README "How matching works".
THRESHOLDS = {PDQ: 40, PHASH: 6}
#: Below this PDQ quality an image is near-flat (blank, a plain gradient): its perceptual hashes are shared with
#: every other flat image, so it is matched by exact bytes only (Meta's guidance for PDQ is the same: < 50).
PDQ_MIN_QUALITY = 50


@dataclass(frozen=True)
class Match:
    """One registered work an image was found to copy."""

    work_id: int
    signal: str  # algorithm id that explains the match ("sha256/1", "pdq/1", ...)
    distance: int  # Hamming distance in that signal's bits (0 for an exact byte match)
    transform: str  # what was done to the work to get the copy, e.g. "flipped horizontally"
    score: float  # 1.0 = identical; 0.5 = exactly at the decision threshold
    sha256_exact: bool
    confidence: str  # "exact", "high" or "medium"

    def to_dict(self) -> dict:
        return asdict(self)


def _score(distance: int, threshold: int) -> float:
    # Linear in distance: 1 at 0, 0.5 at the threshold. Comparable across signals of different lengths.
    return round(max(0.0, 1.0 - 0.5 * distance / max(threshold, 1)), 3)


def find_matches(query: FingerprintSet, index: Index) -> list[Match]:
    """Every registered work `query` copies, best first. `query` must carry its dihedral variants."""
    best: dict[int, Match] = {}
    for work_id in index.by_sha256.get(query.sha256, []):
        best[work_id] = Match(work_id, "sha256/1", 0, "none (identical bytes)", 1.0, True, "exact")

    if (query.pdq.quality or 0) < PDQ_MIN_QUALITY:
        return sorted(best.values(), key=lambda m: m.work_id)
    for signal, variants in ((PDQ, query.pdq_variants), (PHASH, query.phash_variants)):
        near = index.nearest(signal, variants, THRESHOLDS[signal], PDQ_MIN_QUALITY)
        for work_id, distance, variant in zip(near.work_ids.tolist(), near.distances.tolist(), near.variants.tolist()):
            if work_id in best and best[work_id].sha256_exact:
                continue
            score = _score(distance, THRESHOLDS[signal])
            if work_id not in best or score > best[work_id].score:
                confidence = "high" if score >= 0.75 else "medium"
                best[work_id] = Match(work_id, signal, distance, DIHEDRAL[variant], score, False, confidence)
    return sorted(best.values(), key=lambda m: (-m.score, m.work_id))


def explain(match: Match) -> str:
    """One human sentence: why this image is considered a copy."""
    if match.sha256_exact:
        return "identical file bytes (SHA-256)"
    name = match.signal.split("/")[0].upper().replace("PHASH", "pHash")
    bits = BITS[match.signal]
    what = "same image" if match.transform == "none" else match.transform
    return f"{what}: {name} distance {match.distance}/{bits} (threshold {THRESHOLDS[match.signal]})"
