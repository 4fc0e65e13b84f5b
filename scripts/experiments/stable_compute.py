# Experiment (session 8, not shipped unless stated): cheaper stability rules, for orb/4's registration cost.
#   RULE=compute: no detection in the views; ORB descriptors recomputed at each keypoint's place in the view
#                 (cv2.ORB.compute at the transformed position, angle and size); stable when the new descriptor's
#                 query words include the keypoint's word.
#   RULE=detect1: detection as shipped, on the first view in VIEWS only.
# python scripts/experiments/stable_compute.py REAL_WORKS_DIR OUT.pkl  (pickle keyed by descriptor bytes)
import os, sys, pickle, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np, cv2
from provenance import local, localindex
from provenance.imaging import decode
from provenance._parallel import imap

VIEWS = {"0": (0.0, 0.7), "1": (6.0, 1.0)}


def compute_rule(g, sets):
    h, w = g.shape
    out = [np.zeros(len(d), np.uint8) for _, d in sets]
    own = [localindex.words(d) for _, d in sets]
    kps = [local._orb.detect(g, None), local._orb.detect(local._clahe.apply(g), None)]
    for key in os.environ.get("VIEWS", "01"):
        angle, scale = VIEWS[key]
        A = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        view = cv2.warpAffine(g, A, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        view = cv2.imdecode(cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_GRAYSCALE)
        for j, ((xy, des), eq) in enumerate(zip(sets, (False, True))):
            if not len(des):
                continue
            img = local._clahe.apply(view) if eq else view
            moved = []
            for i, (x, y) in enumerate(xy):
                p = A @ np.array([x, y, 1.0])
                moved.append(cv2.KeyPoint(float(p[0]), float(p[1]), 31 * scale, -1, 0, 0, i))
            kp, vdes = local._orb.compute(img, moved)
            if vdes is None or not kp:
                continue
            idx = np.array([k.class_id for k in kp])
            qw = localindex.query_words(vdes).reshape(-1, 2)
            out[j][idx] += (qw == own[j][idx, None]).any(1)
    return out


def one(path):
    im = decode(Path(path).read_bytes()).image
    f = local.extract(im)
    g = local._prepare(im)
    if os.environ.get("RULE", "compute") == "compute":
        s, e = compute_rule(g, [(f.xy, f.descriptors), (f.eq_xy, f.eq_descriptors)])
    else:
        localindex.STABILITY_VIEWS = tuple(VIEWS[k] for k in os.environ.get("VIEWS", "0"))
        s, e = localindex.stability(g, (f.xy, f.descriptors), (f.eq_xy, f.eq_descriptors))
    return f.descriptors.tobytes(), s, f.eq_descriptors.tobytes(), e


if __name__ == "__main__":
    paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
    out = {}
    for a, sa, b, sb in imap(one, [str(p) for p in paths]):
        out[a] = sa
        out[b] = sb
    pickle.dump(out, open(sys.argv[2], "wb"))
    allv = np.concatenate(list(out.values()))
    print(len(paths), "works", np.bincount(allv, minlength=3) / len(allv))
