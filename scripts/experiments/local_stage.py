"""Local stage of scale.py on an existing scale ledger: local1m.py LEDGER_DIR REAL_DIR [planted]"""
import sys, random, shutil, json, time
from pathlib import Path
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
from PIL import Image
import scale
from provenance import local, localindex
from provenance.ledger import Ledger
led = Ledger.open(Path(sys.argv[1]) / "ledger.db")
realdir = Path(sys.argv[2])
real = sorted(realdir.glob("*.jpg"))
rnd = random.Random(0)
sources = rnd.sample([i for i in range(len(real)) if i % 5 != 4], 60)
images = [(real[i].name, Image.open(real[i]).convert("RGB")) for i in sources]
lq = [(name, kind, scale._jpeg(scale.local_attack(img, kind))) for name, img in images for kind in scale.LOCAL_ATTACKS]
lq += [(None, None, scale._jpeg(scale.art(10_000_000 + s))) for s in range(60)]
id_of = {p.name: i + 1 for i, p in enumerate(real)}
n = int(Path(sys.argv[1]).name.split("-")[1])
import os
if os.environ.get("STABLE"):
    sys.path.insert(0, "/tmp/p5"); import patch_stable; patch_stable.load(led.local_features(*local.READABLE))
pool = None if "planted" in sys.argv else scale._pool_features(realdir.parent)
if "keep" not in sys.argv:
    shutil.rmtree(localindex.local_folder(led), ignore_errors=True)
    blobs = led.local_features(*local.READABLE)
    t = time.time()
    print(scale._bulk_local(led, blobs, len(real) + 1, n - len(real), n + 1, pool), time.time() - t, flush=True)
blobs = led.local_features(*local.READABLE)
row = scale._local_stage(led, blobs, len(real), lq, id_of)
print(row)
