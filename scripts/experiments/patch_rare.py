"""Experiment (session 8): among equally stable keypoints, prefer the rarer words. PICK=rare: by the word weights in
WEIGHTS (an .npy of idf^2 with 0 for stop words: WordIndex.weight until stop words voted too, session 9), rarest
first; PICK=nostop: words with weight 0
last, spread order otherwise; PICK=plainonly: stability for the plain keypoints only. Imported by local_stage.py when PICK is set."""
import os
import numpy as np
from provenance import localindex

W = np.load(os.environ["WEIGHTS"]) if os.environ.get("WEIGHTS") else None
_pick = localindex.pick


def _rule(xy, des, size, k, stable):
    n = len(xy)
    if stable is None or n <= k:
        return _pick(xy, size, k, stable)
    order = localindex._spread_order(xy, size)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    w = W[localindex.words(des)]
    if os.environ["PICK"] == "rare":
        return np.lexsort((rank, -w, -stable.astype(np.int64)))[:k]
    return np.lexsort((rank, w == 0, -stable.astype(np.int64)))[:k]


TABLE = None
if os.environ.get("PICK") == "table":  # stabilities from TABLE (a pickle keyed by descriptor bytes, as
    import pickle                      # stable_compute.py writes it); EQ_STABLE=0: the equalised ones by spread
    TABLE = pickle.load(open(os.environ["TABLE"], "rb"))


def _from_table(des):
    return TABLE.get(np.ascontiguousarray(des).tobytes())


def picks(f):
    if TABLE is not None:
        eq = _from_table(f.eq_descriptors) if os.environ.get("EQ_STABLE", "1") == "1" else None
        return (_pick(f.xy, f.size, localindex.PER_WORK[0], _from_table(f.descriptors)),
                _pick(f.eq_xy, f.size, localindex.PER_WORK[1], eq))
    if os.environ["PICK"] == "plainonly":  # the equalised keypoints by spread alone (their stability unused)
        return (_pick(f.xy, f.size, localindex.PER_WORK[0], f.stable),
                _pick(f.eq_xy, f.size, localindex.PER_WORK[1], None))
    return (_rule(f.xy, f.descriptors, f.size, localindex.PER_WORK[0], f.stable),
            _rule(f.eq_xy, f.eq_descriptors, f.size, localindex.PER_WORK[1], f.eq_stable))


localindex.picks = picks
