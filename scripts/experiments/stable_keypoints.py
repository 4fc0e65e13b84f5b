# Experiment (session 5, not shipped): keypoint stability under 4 synthetic views, for choosing the indexed words.
# python scripts/experiments/stable_keypoints.py REAL_WORKS_DIR /tmp/p5/stable.pkl; then
# STABLE=/tmp/p5/stable.pkl python scripts/experiments/local_stage.py SCALE_OUT/ledger-1000000 SCALE_OUT/real-works
"""Stability scores of each real work's keypoints under synthetic views; saved as a pickle keyed by descriptor bytes."""
import os, sys, pickle
from pathlib import Path
sys.path.insert(0, "/work/main")
import numpy as np, cv2
from provenance import local, localindex
from provenance.imaging import decode
from provenance._parallel import imap

def views(g):
    h, w = g.shape
    c = (w / 2, h / 2)
    out = []
    import os
    every = ((0, 0.7, 0), (6, 1.0, 0.1), (0, 1.25, 0.1), (-4, 0.85, 0.05))
    for angle, scale, crop in [every[int(i)] for i in os.environ.get("VIEWS", "0123")]:  # VIEWS=01: the first two
        A = cv2.getRotationMatrix2D(c, angle, scale)
        v = cv2.warpAffine(g, A, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        _, enc = cv2.imencode(".jpg", v, [cv2.IMWRITE_JPEG_QUALITY, 60])
        out.append((cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE), A))
    return out

def scores(g, xy, des, vs, eq):
    if not len(des):
        return np.zeros(0, np.int8)
    wd = localindex.words(des)
    s = np.zeros(len(des), np.int8)
    for v, A in vs:
        vxy, vdes = local._detect(local.equalise(v) if eq else v)
        if not len(vdes):
            continue
        qw = localindex.query_words(vdes).reshape(-1, 2)
        M = np.vstack([A, [0, 0, 1]]); inv = np.linalg.inv(M)[:2]
        back = vxy @ inv[:, :2].T + inv[:, 2]
        d2 = ((xy[:, None, :] - back[None]) ** 2).sum(2)
        near = d2 < 16  # 4 px
        rule = os.environ.get("RULE", "word")
        if rule.startswith("dist:"):  # RULE=dist:T: a view keypoint within 4 px and T bits (no vocabulary)
            i, j = np.nonzero(near)
            bits = np.unpackbits(np.bitwise_xor(des[i], vdes[j]), axis=1).sum(1)
            ok = np.zeros(len(des), bool)
            ok[i[bits <= int(rule[5:])]] = True
            s += ok
            continue
        same = (qw[None, :, 0] == wd[:, None]) | (qw[None, :, 1] == wd[:, None])
        s += (near & same).any(1)
    return s

def one(path):
    im = decode(Path(path).read_bytes()).image
    f = local.extract(im)
    g = local._prepare(im)
    vs = views(g)
    return f.descriptors.tobytes(), scores(g, f.xy, f.descriptors, vs, False), f.eq_descriptors.tobytes(), scores(g, f.eq_xy, f.eq_descriptors, vs, True)

if __name__ == "__main__":
    paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
    out = {}
    for a, sa, b, sb in imap(one, [str(p) for p in paths]):
        out[a] = sa; out[b] = sb
    pickle.dump(out, open(sys.argv[2], "wb"))
    allv = np.concatenate(list(out.values()))
    print(len(paths), "works", np.bincount(allv, minlength=5) / len(allv))
    import time
    t = time.perf_counter()
    for p in paths[:50]:
        one(str(p))
    print(f"{(time.perf_counter() - t) / 50 * 1000:.0f} ms per work on one core (decode, extract and the views)")
