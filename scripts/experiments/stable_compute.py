# Experiment (session 8): stability under fewer views, for orb/4's registration cost: localindex.stability with the
# views VIEWS names (0: 0.7x, 1: 6 degrees, 2: 1.3x; e.g. VIEWS=1), plain and equalised keypoints; ADAPT=N:KEYS
# (session 9): works with fewer than N stable plain keypoints under VIEWS get the views KEYS as well.
#   python scripts/experiments/stable_compute.py REAL_WORKS_DIR OUT.pkl  (a pickle keyed by descriptor bytes), then
#   PICK=table TABLE=OUT.pkl EQ_STABLE=0 python scripts/experiments/local_stage.py SCALE_OUT/ledger-N SCALE_OUT/real-works
# (shipped: VIEWS=1, plain keypoints only). Measured at 1 M: see localindex.STABILITY_VIEWS.
import os, sys, pickle, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np, cv2
from provenance import local, localindex
from provenance.imaging import decode
from provenance._parallel import imap

VIEWS = {"0": (0.0, 0.7), "1": (6.0, 1.0), "2": (0.0, 1.3)}


def one(path):
    im = decode(Path(path).read_bytes()).image
    f = local.extract(im)
    g = local._prepare(im)
    localindex.STABILITY_VIEWS = tuple(VIEWS[k] for k in os.environ.get("VIEWS", "1"))
    plain = localindex.stability(g, f.xy, f.descriptors)
    if os.environ.get("ADAPT"):  # ADAPT=N:KEYS: works with fewer than N stable plain keypoints get views KEYS too
        few, more = os.environ["ADAPT"].split(":")
        if (plain > 0).sum() < int(few):
            localindex.STABILITY_VIEWS = tuple(VIEWS[k] for k in more)
            plain = plain + localindex.stability(g, f.xy, f.descriptors)
    return (f.descriptors.tobytes(), plain,
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
