"""Nearest-neighbour indexes over the learned vectors of a benchmarks/scale.py ledger, against the exact search: how
often each gives the exact search's best 10 and holds the copy's true work, and its time for the 8 views of a copy
(docs/measurements.md, session 22).

    vector_ann.py OUT N     (OUT: scale.py --out, with its ledger-N and real-works; the copies are scale.py's local
                             queries for --planted 250)"""
import sys, time, numpy as np, faiss, sqlite3, random
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
OUT, N = Path(sys.argv[1]), int(sys.argv[2])
sys.argv = sys.argv[:1]
import scale
from provenance import learned
from provenance.imaging import decode
from provenance import vectorindex
from provenance.ledger import Ledger
from PIL import Image
led = Ledger.open(OUT / f'ledger-{N}' / 'ledger.db')
vi = vectorindex.open_vectors(led); V = np.ascontiguousarray(vectorindex.unit(vi.vectors())); ids = vi.ids
real = scale._real_works(OUT / 'real-works', 2000)
rnd = random.Random(0)
sources = rnd.sample([i for i in range(2000) if i % 5 != 4], 250)
Q = np.stack([learned.embed(decode(scale._jpeg(scale.local_attack(Image.open(real[i]).convert('RGB'), kind))).image, 8)
              for i in sources for kind in scale.LOCAL_ATTACKS])
title = dict(sqlite3.connect(str(OUT / f'ledger-{N}' / 'ledger.db'))
             .execute("select title, id from works where id <= 2000").fetchall())
row_of = {int(w): r for r, w in enumerate(ids)}
true_rows = [row_of[title[real[i].name]] for i in sources for _ in scale.LOCAL_ATTACKS]
K = 10
def top(idx, q):
    s, r = idx.search(q, K)
    best = {}
    for rr, ss in zip(r.ravel(), s.ravel()):
        if rr >= 0 and ss > best.get(rr, -9): best[rr] = ss
    return set(sorted(best, key=lambda x: -best[x])[:K])
flat = faiss.IndexFlatIP(128); flat.add(V)
exact = [top(flat, q) for q in Q]
print('exact: true in top-10', sum(t in e for t, e in zip(true_rows, exact)))
faiss.omp_set_num_threads(2)
def trial(name, idx, setups):
    for label, setup in setups:
        setup(idx); faiss.omp_set_num_threads(1)
        t = time.perf_counter(); got = [top(idx, q) for q in Q]; ms = (time.perf_counter() - t) / len(Q) * 1000
        same, true = sum(g == e for g, e in zip(got, exact)), sum(t in g for t, g in zip(true_rows, got))
        print(f'{name} {label}: same set {same}/1000, true in top-10 {true}, {ms:.2f} ms/query (8 views)', flush=True)
for spec in ('IVF1024,SQ8', 'IVF1024,Flat', 'IVF4096,SQ8'):
    idx = faiss.index_factory(128, spec, faiss.METRIC_INNER_PRODUCT); t = time.perf_counter()
    lists = int(spec[3:7].rstrip(','))
    idx.train(V[np.random.RandomState(0).choice(len(V), min(len(V), 256 * lists), replace=False)])
    idx.add(V)
    print(spec, 'build s %.1f' % (time.perf_counter() - t))
    trial(spec, idx, [(f'nprobe {p}', (lambda p: lambda i: setattr(i, 'nprobe', p))(p)) for p in (32, 64, 128)])
for M in (16, 32):
    idx = faiss.IndexHNSWSQ(128, faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
    faiss.omp_set_num_threads(2)
    t = time.perf_counter(); idx.train(V); idx.add(V); print('HNSW', M, 'build s %.1f' % (time.perf_counter() - t))
    trial(f'HNSWSQ8 M{M}', idx,
          [(f'ef {e}', (lambda e: lambda i: setattr(i.hnsw, 'efSearch', e))(e)) for e in (32, 64, 128)])
