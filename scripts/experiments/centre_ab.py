"""Same-hour A/B at N works (a kept `benchmarks/scale.py N --out OUT` ledger; env N, OUT): the bounded local
stage with and without the centres' shortlist, alternating, on one thread, the copies' fingerprints computed
beforehand; then each search's time alone (docs/measurements.md, session 25)."""
import sys, time, random, os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.argv = ['x']; sys.path[:0] = [os.path.join(ROOT, 'benchmarks'), ROOT]
import numpy as np
from pathlib import Path
from PIL import Image
import scale
from provenance import local, vectorindex, _parallel
from provenance.imaging import decode
from provenance.ledger import Ledger
out = Path(os.environ["OUT"]); N = int(os.environ.get("N", "300000"))
real = scale._real_works(out / "real-works", 2000)
rnd = random.Random(0)
sources = rnd.sample([i for i in range(min(N, len(real))) if i % 5 != 4], 250)
images = [(i, Image.open(real[i]).convert("RGB")) for i in sources]
lq = [(i + 1, kind, scale._jpeg(scale.local_attack(img, kind))) for i, img in images for kind in scale.LOCAL_ATTACKS]
lq += [(None, None, scale._jpeg(scale.art(10_000_000 + s))) for s in range(250)]
ledger = Ledger.open(out / f"ledger-{N}" / "ledger.db")
b = vectorindex.open_vectors(ledger)
scale._read_graphs(b)
centre = b.centre
qs = []
for _, _, data in lq:
    q = local.Query(decode(data).image); q.plain, q.equalised; vectorindex.copy_vectors(q); qs.append(q)
_parallel._in_pool = True
for q in qs[:50]: b.match(q)
for run in range(4):
    b.centre = centre if run % 2 == 0 else None
    lat, found, short = [], 0, 0
    for (true, _, _), q in zip(lq, qs):
        t = time.perf_counter(); got = b.match(q); lat.append(time.perf_counter() - t)
        if true is not None:
            found += true in [w for w, _ in got]; short += true in b.shortlist_of(q)  # the whole shortlist
    lat = 1000 * np.array(lat)
    print("centre" if b.centre else "no centre", f"p50 {np.percentile(lat, 50):.2f} p99 {np.percentile(lat, 99):.2f} copies {np.percentile(lat[:1000], 50):.2f} unrelated {np.percentile(lat[1000:], 50):.2f}  found {found} shortlisted {short}", flush=True)
b.centre = centre
t = time.perf_counter()
for q in qs:
    views, unbanded = vectorindex.copy_vectors(q)
    b.centre.nearest(np.concatenate([views[:vectorindex.UPRIGHT], unbanded]), vectorindex.CENTRED, vectorindex.EF_CENTRED)
print("centre search ms", 1000 * (time.perf_counter() - t) / len(qs))
t = time.perf_counter()
for q in qs: b.nearest(vectorindex.copy_vectors(q)[0])
print("whole search ms", 1000 * (time.perf_counter() - t) / len(qs))
