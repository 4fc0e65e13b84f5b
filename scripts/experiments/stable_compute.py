# Experiment (session 8): stability under fewer views, for orb/4's registration cost: localindex.stability with the
# views VIEWS names (0: 0.7x, 1: 6 degrees, 2: 1.3x; e.g. VIEWS=1), plain and equalised keypoints; ADAPT=N:KEYS
# (session 9, now orb/5's rule: localindex.FEW_STABLE, FEW_STABLE_VIEWS): works with fewer than N stable plain
# keypoints under VIEWS are counted in the views KEYS as well (default: the shipped 40:2; ADAPT=0: never).
#   python scripts/experiments/stable_compute.py REAL_WORKS_DIR OUT.pkl  (a pickle keyed by descriptor bytes), then
#   PICK=table TABLE=OUT.pkl EQ_STABLE=0 python scripts/experiments/local_stage.py SCALE_OUT/ledger-N SCALE_OUT/real-works
# (shipped: VIEWS=1 ADAPT=40:2, plain keypoints only). Measured at 1 M: see localindex.STABILITY_VIEWS, FEW_STABLE.
import os, sys, pickle, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np, cv2
from provenance import local, localindex
from provenance.imaging import decode
from provenance._parallel import imap

VIEWS = {"0": (0.0, 0.7), "1": (6.0, 1.0), "2": (0.0, 1.3)}
localindex.STABILITY_VIEWS = tuple(VIEWS[k] for k in os.environ.get("VIEWS", "1"))
if os.environ.get("ADAPT"):  # the rule localindex.stability applies: set here, so every worker process has it
    few, _, more = os.environ["ADAPT"].partition(":")
    localindex.FEW_STABLE, localindex.FEW_STABLE_VIEWS = int(few), tuple(VIEWS[k] for k in more)


def one(path):
    im = decode(Path(path).read_bytes()).image
    f = local.extract(im)
    g = local._prepare(im)
    return (f.descriptors.tobytes(), localindex.stability(g, f.xy, f.descriptors),
            f.eq_descriptors.tobytes(), localindex.stability(g, f.eq_xy, f.eq_descriptors))


if __name__ == "__main__":
    paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
    out = {}
    for a, sa, b, sb in imap(one, [str(p) for p in paths]):
        out[a] = sa
        out[b] = sb
    pickle.dump(out, open(sys.argv[2], "wb"))
    allv = np.concatenate(list(out.values()))
    print(len(paths), "works", np.bincount(allv, minlength=3) / len(allv))
