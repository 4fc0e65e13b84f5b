"""Local stage of scale.py on an existing scale ledger, without rebuilding the global part:

    local_stage.py OUT/ledger-N OUT/real-works [planted] [keep]

`keep`: reuse the local index already built; RERANK="0 2000" runs the queries once per value (re-ranking that many
per view at this N, up to 1 M works); STABLE=PICKLE picks
the real works' indexed keypoints by their stability (scripts/experiments/stable_keypoints.py wrote PICKLE; it
patches localindex.spread, so on a ledger of orb/4 blobs it reaches only the equalised keypoints: use PICK=table);
PICK=rare|nostop with WEIGHTS=NPY: scripts/experiments/patch_rare.py; QUERY_FEATURES=N: the shortlist votes with N keypoints per view of the copy, detected again inside the timed query (verification keeps its 500); SOURCES=N:
N works copied instead of 60; FEW_WORDS=T:K: sets localindex.FEW_FOUND, FEW_PLAIN (a real work with fewer than T
keypoints found again is indexed by K plain ones; the derived works keep PER_WORK's; 0:0 turns it off);
UNRELATED=N: unrelated images instead of 60 (scale.py --planted N: N)."""
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from PIL import Image  # noqa: E402

import scale  # noqa: E402
from provenance import local, localindex  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

led = Ledger.open(Path(sys.argv[1]) / "ledger.db")
real = sorted(Path(sys.argv[2]).glob("*.jpg"))
rnd = random.Random(0)
# as scale.main picks them; SOURCES=N: more works copied (a larger sample to tell rules apart)
sources = rnd.sample([i for i in range(len(real)) if i % 5 != 4], int(os.environ.get("SOURCES", 60)))
images = [(real[i].name, Image.open(real[i]).convert("RGB")) for i in sources]
lq = [(name, kind, scale._jpeg(scale.local_attack(img, kind))) for name, img in images for kind in scale.LOCAL_ATTACKS]
lq += [(None, None, scale._jpeg(scale.art(10_000_000 + s))) for s in range(int(os.environ.get("UNRELATED", 60)))]
id_of = {p.name: i + 1 for i, p in enumerate(real)}
n = int(Path(sys.argv[1]).name.split("-")[1])
pool = None if "planted" in sys.argv else scale._pool_features(Path(sys.argv[2]).parent)
if os.environ.get("FEW_WORDS"):  # "T:K": the few-keypoints rule's bounds (localindex.FEW_FOUND, FEW_PLAIN)
    localindex.FEW_FOUND, localindex.FEW_PLAIN = map(int, os.environ["FEW_WORDS"].split(":"))
if "keep" not in sys.argv:
    shutil.rmtree(localindex.local_folder(led), ignore_errors=True)
    blobs = led.local_features(*local.READABLE)
    if os.environ.get("PICK"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import patch_rare  # noqa: E402,F401
    if os.environ.get("STABLE"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import patch_stable  # noqa: E402
        patch_stable.load(blobs, os.environ["STABLE"])
    t = time.time()
    print("build, derive s:", scale._bulk_local(led, blobs, len(real) + 1, n - len(real), n + 1, pool),
          f"{time.time() - t:.0f} s", flush=True)
blobs = led.local_features(*local.READABLE)
if os.environ.get("QUERY_FEATURES"):  # the shortlist votes with this many keypoints per view (verification: 500)
    import cv2  # noqa: E402
    more = int(os.environ["QUERY_FEATURES"])

    def detect(g):  # detectors per call: the views run on threads
        orbs = (cv2.ORB_create(nfeatures=more, fastThreshold=local.FAST_THRESHOLD),
                cv2.ORB_create(nfeatures=more, fastThreshold=local.FAST_FALLBACK))
        kp, des = orbs[0].detectAndCompute(g, None)
        if len(kp) < local.MIN_KEYPOINTS:
            kp, des = orbs[1].detectAndCompute(g, None)
        if des is None or not kp:
            return scale.np.zeros((0, 2), scale.np.float32), scale.np.zeros((0, 32), scale.np.uint8)
        return scale.np.array([k.pt for k in kp], scale.np.float32), des

    def view(q, v):  # WordIndex.match ranks each view through localindex.view (localindex.views calls it too)
        img = q.views[v][1]
        (a, da), (b, db) = detect(img), detect(local.equalise(img))
        return scale.np.concatenate([da, db]), scale.np.concatenate([a, b]), img.shape
    localindex.view = view
for rerank in os.environ.get("RERANK", str(localindex.rerank(n))).split():
    localindex.RERANK = localindex.RERANK_MIN = int(rerank)
    print(f"RERANK={rerank}", scale._local_stage(led, blobs, len(real), lq, id_of), flush=True)
