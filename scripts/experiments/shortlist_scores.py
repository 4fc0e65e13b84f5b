"""Every re-ranked candidate's scores for the local queries of a scale ledger, to compare shortlist rankings offline:

    shortlist_scores.py OUT/ledger-N OUT/real-works OUT.npz

Per query and view (the copy, its mirror): the RERANK candidates' work ids, word scores, correspondences gathered
(n) and geometric scores before GEOMETRY_MIN (g): WordIndex.candidates; with the query's source work
(0: an unrelated image). SOURCES=N works copied (default 250), UNRELATED=N unrelated images (default 250), as
local_stage.py. Needs the bounded index scale.py built (it is loaded, not rebuilt)."""
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from PIL import Image  # noqa: E402

import scale  # noqa: E402
from provenance import local, localindex  # noqa: E402
from provenance.imaging import decode  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402


def main():
    led = Ledger.open(Path(sys.argv[1]) / "ledger.db")
    real = sorted(Path(sys.argv[2]).glob("*.jpg"))
    rnd = random.Random(0)
    sources = rnd.sample([i for i in range(len(real)) if i % 5 != 4], int(os.environ.get("SOURCES", 250)))
    images = [(real[i].name, Image.open(real[i]).convert("RGB")) for i in sources]
    lq = [(name, kind, scale._jpeg(scale.local_attack(img, kind))) for name, img in images
          for kind in scale.LOCAL_ATTACKS]
    lq += [(None, "unrelated", scale._jpeg(scale.art(10_000_000 + s)))
           for s in range(int(os.environ.get("UNRELATED", 250)))]
    id_of = {p.name: i + 1 for i, p in enumerate(real)}
    folder, m = scale._local_files(led)
    index = localindex.load(folder, m, led.target)
    out = {k: [] for k in ("query", "view", "source", "kind", "id", "s", "n", "g")}
    t0 = time.time()
    for qi, (name, kind, data) in enumerate(lq):
        q = local.Query(decode(data).image)
        for v, (des, xy, shape) in enumerate(localindex.views(q)):
            rows, s, n, g = index.candidates(des, xy, shape)
            ids = index.ids[rows]
            k = len(ids)
            out["query"].append(np.full(k, qi, np.int32))
            out["view"].append(np.full(k, v, np.int8))
            out["source"].append(np.full(k, id_of[name] if name else 0, np.int32))
            out["kind"].append(np.full(k, (*scale.LOCAL_ATTACKS, "unrelated").index(kind), np.int8))
            out["id"].append(ids.astype(np.int32))
            out["s"].append(s.astype(np.float32))
            out["n"].append(n.astype(np.int16))
            out["g"].append(g.astype(np.int16))
        if qi % 100 == 0:
            print(qi, f"{time.time() - t0:.0f} s", flush=True)
    np.savez(sys.argv[3], **{k: np.concatenate(v) for k, v in out.items()})


if __name__ == "__main__":
    main()
