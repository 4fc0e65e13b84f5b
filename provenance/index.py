"""Candidate lookup over registered works.

Global hashes: an exact Hamming scan with NumPy's popcount, O(N) per query (~35 ms at 1 M works, well under 1 ms
at the thousands of works one artist has). Local features: a faiss binary index over every work's descriptors
(local.LocalIndex), built on first use. The interface (add / nearest / local) is what a sub-linear global index
(multi-index hashing, FAISS) will implement when ledgers grow past that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import local
from .fingerprints import PDQ, PDQEQ, PHASH
from .ledger import Work

_BYTES = {PDQ: 32, PHASH: 8, PDQEQ: 32}


@dataclass(frozen=True)
class Nearest:
    """Per work: the smallest distance over the query's variants, and which variant gave it."""

    work_ids: np.ndarray  # (k,)
    distances: np.ndarray  # (k,)
    variants: np.ndarray  # (k,) index into fingerprints.DIHEDRAL


class Index:
    """In-memory Hamming index, rebuilt from the ledger's works (cheap: one row per work)."""

    def __init__(self, works: list[Work] = (), local_blobs: dict[int, bytes] | None = None):
        self.local_blobs = dict(local_blobs or {})
        self._local: tuple[local.LocalIndex, list[int]] | None = None
        self.work_ids = np.zeros(0, dtype=np.int64)
        self.codes = {alg: np.zeros((0, n), dtype=np.uint8) for alg, n in _BYTES.items()}
        self.quality = {PDQ: np.zeros(0, dtype=np.int16), PDQEQ: np.zeros(0, dtype=np.int16)}
        self.by_sha256: dict[str, list[int]] = {}
        self.add(list(works))

    def __len__(self) -> int:
        return len(self.work_ids)

    def add(self, works: list[Work]) -> None:
        if not works:
            return
        self.work_ids = np.concatenate([self.work_ids, [w.id for w in works]])
        for alg, n in _BYTES.items():
            rows = [bytes.fromhex(w.fingerprints[alg].value) if alg in w.fingerprints else bytes(n) for w in works]
            new = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(works), n)
            self.codes[alg] = np.concatenate([self.codes[alg], new])
        for alg in self.quality:
            q = [(w.fingerprints[alg].quality or 0) if alg in w.fingerprints else 0 for w in works]
            self.quality[alg] = np.concatenate([self.quality[alg], np.asarray(q, dtype=np.int16)])
        for w in works:
            self.by_sha256.setdefault(w.sha256, []).append(w.id)

    def local(self) -> tuple[local.LocalIndex, list[int]]:
        """The local-feature index and the work id of each of its positions (built once, on first use)."""
        if self._local is None:
            ids = sorted(self.local_blobs)
            self._local = local.LocalIndex([local.decode(self.local_blobs[i]) for i in ids]), ids
        return self._local

    def nearest(self, algorithm: str, variants: tuple[str, ...] | list[str], max_distance: int,
                eligible: np.ndarray | None = None) -> Nearest:
        """Works within `max_distance` of any query variant, with the best variant for each.

        `eligible` (a boolean per work, in index order) restricts the search, e.g. to works whose hashes of this
        kind are informative.
        """
        if not len(self) or not variants:
            empty = np.zeros(0, dtype=np.int64)
            return Nearest(empty, empty, empty)
        q = np.frombuffer(b"".join(bytes.fromhex(v) for v in variants), dtype=np.uint8).reshape(len(variants), -1)
        # (variants, works) distance matrix; the XOR is the only O(N) step.
        d = np.bitwise_count(q[:, None, :] ^ self.codes[algorithm][None, :, :]).sum(axis=2, dtype=np.int32)
        best_variant = d.argmin(axis=0)
        best = d[best_variant, np.arange(d.shape[1])]
        hit = np.flatnonzero((best <= max_distance) & (True if eligible is None else eligible))
        return Nearest(self.work_ids[hit], best[hit], best_variant[hit])
