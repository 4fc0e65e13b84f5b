"""The vector shortlist (vectorindex.VectorIndex.shortlist_of, one thread) under different beams: how often the
copy's true work is shortlisted, and the ms a copy and an unrelated image take (docs/measurements.md, session 26).

    shortlist_beams.py OUT N    (OUT: scale.py --out, with its ledger-N and real-works; the copies are scale.py's
                                 local queries for --planted 250, the unrelated images its 250)
    env SETTINGS: a list of (EF_SEARCH, EF_TURNED, EF_UNBANDED, EF_CENTRED, CENTRED) to try;
        EFC: first build both graphs anew in memory with this efConstruction (~6 min a graph at 1 M on 2 cores)."""
import os
import random
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
OUT, N = Path(sys.argv[1]), int(sys.argv[2])
sys.argv = sys.argv[:1]
import scale  # noqa: E402
from provenance import _parallel, local, vectorindex as V  # noqa: E402
from provenance.imaging import decode  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

SETTINGS = eval(os.environ.get("SETTINGS", "[(128, 32, 64, 64, 3), (64, 32, 64, 64, 3), (64, 16, 32, 32, 3)]"))
_parallel._in_pool = True
vi = V.open_vectors(Ledger.open(OUT / f"ledger-{N}" / "ledger.db"))
scale._read_graphs(vi)
if os.environ.get("EFC"):
    V.EF_CONSTRUCTION = int(os.environ["EFC"])
    for vectors in (vi, vi.centre):
        if vectors is not None:
            t = time.perf_counter()
            vectors._index = V._graph(vectors.vectors())
            print(f"graph of {len(vectors)} built at efConstruction {V.EF_CONSTRUCTION} in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
faiss.omp_set_num_threads(1)
real = scale._real_works(OUT / "real-works", 2000)
copies, truth = [], []
for i in random.Random(0).sample([i for i in range(2000) if i % 5 != 4], 250):
    image = Image.open(real[i]).convert("RGB")
    for kind in scale.LOCAL_ATTACKS:
        copies.append(local.Query(decode(scale._jpeg(scale.local_attack(image, kind))).image))
        truth.append(i + 1)  # scale.py registers work_i as id i + 1
unrelated = [local.Query(decode(scale._jpeg(scale.art(10_000_000 + s))).image) for s in range(250)]
for q in copies + unrelated:
    V.copy_vectors(q)
for V.EF_SEARCH, V.EF_TURNED, V.EF_UNBANDED, V.EF_CENTRED, V.CENTRED in SETTINGS:
    t = time.perf_counter()
    shortlists = [vi.shortlist_of(q) for q in copies]
    tc, t = time.perf_counter() - t, time.perf_counter()
    for q in unrelated:
        vi.shortlist_of(q)
    tu = time.perf_counter() - t
    per = {}
    for k, (w, s) in enumerate(zip(truth, shortlists)):
        kind = scale.LOCAL_ATTACKS[k % len(scale.LOCAL_ATTACKS)]
        per[kind] = per.get(kind, 0) + (w in s)
    print(f"ef upright {V.EF_SEARCH}, turned {V.EF_TURNED}, unbanded {V.EF_UNBANDED}, centres {V.EF_CENTRED} x "
          f"{V.CENTRED}: true work shortlisted {sum(per.values())} / {len(copies)} "
          f"({' '.join(f'{k} {v}' for k, v in per.items())}); {1000 * tc / len(copies):.2f} ms a copy, "
          f"{1000 * tu / len(unrelated):.2f} an unrelated image", flush=True)
