"""The bounded local stage's first look (vectorindex.VectorIndex.first_look) against verifying the whole shortlist
at once, on one thread, the copy's fingerprints computed beforehand (docs/measurements.md, session 27).

    first_look.py OUT N    (OUT: scale.py --out, with its ledger-N and real-works; the copies are scale.py's local
                            queries of SOURCES real works (default 250), the unrelated images as many)
    env ALL=1: each shortlisted work without a blob (scale.py's derived works) replaced by a random real one, as a
               registry whose works all have blobs would verify; no blob cached.
        MIRROR=1: the copies mirrored.
        VIEWS=1: compare FIRST_VIEWS 1 and 2 instead.
        FIRST=n: vectorindex.FIRST.
        REPS: rounds (default 2), the modes alternating.
        MISSES=1: the copies the first look misses."""
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
OUT, N = Path(sys.argv[1]), int(sys.argv[2])
sys.argv = sys.argv[:1]
import scale  # noqa: E402
from provenance import _parallel, local, vectorindex as V  # noqa: E402
from provenance.imaging import decode  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

_parallel._in_pool = True  # one thread, as a scan's worker processes run the stage
if os.environ.get("FIRST"):
    V.FIRST = int(os.environ["FIRST"])
SOURCES, ALL = int(os.environ.get("SOURCES", "250")), bool(os.environ.get("ALL"))
real = scale._real_works(OUT / "real-works", 2000)
reals = min(N, len(real))
sources = random.Random(0).sample([i for i in range(reals) if i % 5 != 4], SOURCES)
queries = []
for i in sources:
    image = Image.open(real[i]).convert("RGB")
    for kind in scale.LOCAL_ATTACKS:
        copy = scale.local_attack(image, kind)
        queries.append((i + 1, scale._jpeg(ImageOps.mirror(copy) if os.environ.get("MIRROR") else copy)))
queries += [(None, scale._jpeg(scale.art(10_000_000 + s))) for s in range(SOURCES)]
index = V.open_vectors(Ledger.open(OUT / f"ledger-{N}" / "ledger.db"))
scale._read_graphs(index)
prepared = []
for _, data in queries:
    q = local.Query(decode(data).image)
    q.plain, q.equalised
    V.copy_vectors(q)
    prepared.append(q)

swaps: dict[int, dict[int, int]] = {}


def real_only(works: list[int], k: int) -> list[int]:
    """ALL=1: the works with each derived one swapped for a real one (the same for query k throughout)."""
    if not ALL:
        return works
    swap, rng = swaps.setdefault(k, {}), random.Random(k)
    for w in works:
        if w > reals and w not in swap:
            swap[w] = next(i for i in iter(lambda: rng.randrange(1, reals + 1), None) if i not in swap.values())
    return list(dict.fromkeys(swap.get(w, w) for w in works))


look = index.first_look


def whole_shortlist(q, k):
    return [], [], lambda: real_only(look(q)[2](), k)


def first_looked(q, k, views=None):
    if views is not None:
        V.FIRST_VIEWS = views
    first, known, everything = look(q)
    return real_only(first, k), real_only(known, k), lambda: real_only(everything(), k)


modes = {"whole shortlist": whole_shortlist, "first look": first_looked}
if os.environ.get("VIEWS"):
    modes = {"first look, 1 view": lambda q, k: first_looked(q, k, 1),
             "first look, 2 views": lambda q, k: first_looked(q, k, 2)}
copies = len(queries) - SOURCES
for _ in range(int(os.environ.get("REPS", "2"))):
    for name, mode in modes.items():
        index._features.clear()
        ms, got, verified = [], [], []
        for k, q in enumerate(prepared):
            index.first_look = lambda q, k=k: mode(q, k)
            if ALL:
                index._features.clear()
            t = time.perf_counter()
            found = index.match(q)
            ms.append(1000 * (time.perf_counter() - t))
            got.append([w for w, _ in found])
            verified.append(len(index.last_shortlist))
        found = sum(w in g for (w, _), g in zip(queries, got) if w)
        matched = sum(bool(g) for (w, _), g in zip(queries, got) if not w)
        print(f"{name:20s} ALL={int(ALL)}: copies {np.median(ms[:copies]):.2f} ms p50 ({np.percentile(ms[:copies], 90):.2f}"
              f" p90), unrelated {np.median(ms[copies:]):.2f}; found {found}/{copies}, unrelated matched {matched};"
              f" works verified a copy {np.mean(verified[:copies]):.1f}", flush=True)
        if os.environ.get("MISSES"):
            for (w, _), g, (kind) in zip(queries, got, [k for _ in sources for k in scale.LOCAL_ATTACKS]):
                if w not in g:
                    print(f"  missed work {w} {kind}: {g}")
