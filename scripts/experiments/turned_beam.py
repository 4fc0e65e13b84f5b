"""The vector index's graph, searched with one beam (efSearch) for the copy as it is and mirrored and another for
its views turned by 90, 180 and 270 degrees (vectorindex.EF_TURNED): how often the copy's true work is within the
best 20, and the time for the 8 views; and the same copies as if turned by 90 degrees (their upright view searched
with the turned views' beam). Also IVF + 4-bit PQ fast scan, re-ranked on the stored vectors, for comparison
(docs/measurements.md, session 24).

    turned_beam.py OUT N     (OUT: scale.py --out, with its ledger-N and real-works; the copies are scale.py's
                              local queries for --planted 250)"""
import sys, time, random
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
OUT, N = Path(sys.argv[1]), int(sys.argv[2])
sys.argv = sys.argv[:1]
import scale  # noqa: E402
from provenance import learned, vectorindex  # noqa: E402
from provenance.imaging import decode  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

K = 20
led = Ledger.open(OUT / f"ledger-{N}" / "ledger.db")
vi = vectorindex.open_vectors(led)
V = np.ascontiguousarray(vectorindex.unit(vi.vectors()))
real = scale._real_works(OUT / "real-works", 2000)
sources = random.Random(0).sample([i for i in range(2000) if i % 5 != 4], 250)
Q = np.stack([learned.embed(decode(scale._jpeg(scale.local_attack(Image.open(real[i]).convert("RGB"), kind))).image,
                            8) for i in sources for kind in scale.LOCAL_ATTACKS])
row_of = {int(w): r for r, w in enumerate(vi.ids) if w <= 2000}
true_rows = [row_of[i + 1] for i in sources for _ in scale.LOCAL_ATTACKS]  # scale.py registers work_i as id i + 1


def merged(sims, rows):
    best = {}
    for r, s in zip(rows.ravel(), sims.ravel()):
        if r >= 0 and s > best.get(r, -2):
            best[r] = s
    return set(sorted(best, key=lambda r: (-best[r], r))[:K])


def trial(label, search):
    faiss.omp_set_num_threads(1)
    t, got = time.perf_counter(), [search(q) for q in Q]
    ms = 1000 * (time.perf_counter() - t) / len(Q)
    print(f"{label:44s} true in {K}: {sum(r in g for r, g in zip(true_rows, got))}/{len(Q)}  {ms:.2f} ms a copy",
          flush=True)


flat = faiss.IndexFlatIP(learned.DIM)
flat.add(V)
trial("exact", lambda q: merged(*flat.search(q, K)))
graph = vi.search_index()


def beams(up, turned, swap=False):
    def search(q):
        upright, rest = (q[2:4], np.concatenate([q[:2], q[4:]])) if swap else (q[:2], q[2:])
        a = graph.search(np.ascontiguousarray(upright), K, params=faiss.SearchParametersHNSW(efSearch=up))
        b = graph.search(np.ascontiguousarray(rest), K, params=faiss.SearchParametersHNSW(efSearch=turned))
        return merged(np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
    return search


for up, turned in ((128, 128), (128, 32), (96, 32), (160, 32)):
    trial(f"graph, upright ef {up}, turned ef {turned}", beams(up, turned))
    if up != turned:
        trial("  the copies turned by 90 degrees", beams(up, turned, swap=True))
faiss.omp_set_num_threads(2)
ivf = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(learned.DIM), learned.DIM, 4096, 32, 4, faiss.METRIC_INNER_PRODUCT)
ivf.train(V[np.sort(np.random.RandomState(0).choice(len(V), min(len(V), 200_000), replace=False))])
ivf.add(V)
for nprobe, kk in ((32, 100), (64, 200)):
    ivf.nprobe = nprobe

    def rerank(q):
        cand = np.unique(ivf.search(q, kk)[1])
        cand = cand[cand >= 0]
        sims = (q @ V[cand].T).max(0)
        return set(cand[np.lexsort((cand, -sims))[:K]])
    trial(f"IVF4096,PQ32x4fs nprobe {nprobe}, re-rank {kk}", rerank)
