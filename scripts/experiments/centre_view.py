"""Would a vector of each work's centre, stored beside its whole, bring a copy's work into the shortlist? (session 25)

Exact ranks by cosine of the true work, for benchmarks/scale.py's 1,000 local copies against its 1 M works (a kept
`scale.py 1000000 --out OUT` ledger), and for the dev corpus's 1,988 copies: by the whole (learned/1, every stored
vector), by centres of CENTRES (side fractions), and by both. The 1 M works' centres are not all computed: those of
S pool pictures (art(seed, half) past POOL_FULL) stand for them, their count scaled by 1 M / S.

    python scripts/experiments/centre_view.py OUT DEV_CORPUS     # S=100000 by default; ~25 min on 2 cores
"""
import json
import os
import random
import sys
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
sys.argv, ARGS = sys.argv[:1], sys.argv[1:]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import scale  # noqa: E402
from provenance import learned, local, vectorindex  # noqa: E402
from provenance.imaging import decode  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

CENTRES = (0.8, 0.7)
S = int(os.environ.get("S", "100000"))
N = 1_000_000


def crop(img, f):
    w, h = img.size
    dx, dy = round(w * (1 - f) / 2), round(h * (1 - f) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def centres(img):
    return np.stack([learned.embed(crop(img, f))[0] for f in CENTRES])


def pool_job(seed):
    return centres(scale.art(seed, True))


def copy_views(img) -> np.ndarray:
    views, unbanded = vectorindex.copy_vectors(local.Query(img))
    return np.concatenate([views, unbanded])


def table(res, keys, within):
    groups = sorted({r["attack"] for r in res}) + ["all"]
    print(f"{'attack':15s}" + "".join(f"{k:>18s}" for k in keys) + f"   (true work within the best {within})")
    for a in groups:
        rs = [r for r in res if a in (r["attack"], "all")]
        print(f"{a:15s}" + "".join(f"{sum(r[k] < within for r in rs):18d}" for k in keys) + f"   / {len(rs)}")


def main():
    out, dev = Path(ARGS[0]), Path(ARGS[1])
    seeds = range(scale.VECTOR_SEED + scale.POOL_FULL, scale.VECTOR_SEED + scale.POOL_FULL + S)
    with Pool(os.cpu_count()) as p:
        pc = np.stack(p.map(pool_job, seeds, chunksize=256))  # (S, len(CENTRES), DIM)
    folder = out / f"vectors-{learned.MODEL_SHA256[:8]}-{scale.ART}-{scale.POOL_FULL}"
    first = scale.POOL_FULL // scale.VECTOR_CHUNK
    pf = vectorindex.unit(np.concatenate([np.load(folder / f"art-{c:04d}.npy")
                                          for c in range(first, first + S // scale.VECTOR_CHUNK)]))

    def ranks(v, whole, cs):
        """Ranks among ~1 M (scaled from the S sampled pool works): whole, each centre alone, whole + each."""
        sf = (v @ whole).max()
        cf = (v @ pf.T).max(0)
        r = {"whole": 10 * int((cf > sf).sum())}
        for k, f in enumerate(CENTRES):
            sc, cc = (v @ cs[k]).max(), (v @ pc[:, k].T).max(0)
            r[f"centre{f}"] = int(round((cc > sc).sum() * N / S))
            r[f"whole+centre{f}"] = int(round(((cf > max(sf, sc)).sum() + (cc > max(sf, sc)).sum()) * N / S))
        return r

    # scale.py's copies (their ledger's real works)
    real = scale._real_works(out / "real-works", 2000)
    sources = random.Random(0).sample([i for i in range(len(real)) if i % 5 != 4], 250)
    res = []
    for i in sources:
        img = Image.open(real[i]).convert("RGB")
        whole, cs = learned.embed(img)[0], centres(img)
        for kind in scale.LOCAL_ATTACKS:
            v = copy_views(decode(scale._jpeg(scale.local_attack(img, kind))).image)
            res.append({"attack": kind, **ranks(v, whole, cs)})
    keys = [k for k in res[0] if k != "attack"]
    print("benchmarks/scale.py's copies")
    table(res, keys, 20)
    # the dev corpus
    truth = json.loads((dev / "truth.json").read_text())
    works = {}
    for path in sorted((dev / "works").iterdir()):
        img = Image.open(path).convert("RGB")
        works[path.name] = (learned.embed(img)[0], centres(img))
    dres = []
    for name, t in sorted(truth.items()):
        if t["attack"] != "distractor":
            v = copy_views(decode((dev / "feed" / name).read_bytes()).image)
            dres.append({"attack": t["attack"], **ranks(v, *works[t["work"]])})
    print("dev corpus copies")
    table(dres, keys, 20)
    for rs, name in ((res, "scale.py"), (dres, "dev corpus")):
        for f in CENTRES:
            print(f"{name}: whole within 20 or centre{f} the nearest:",
                  sum(r["whole"] < 20 or r[f"centre{f}"] < 1 for r in rs), "/", len(rs))


if __name__ == "__main__":
    main()
