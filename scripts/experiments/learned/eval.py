"""Score the descriptor on the dev corpus.

    eval.py WORK MODEL.pt DEV_CORPUS [SCALE_REAL_WORKS]    (TTA=1: each copy's 8 rotations and mirrors, best one;
                                                             TRAIN_GALLERY=1: the training images as works too)

Per attack: recall at the threshold where at most 0.1 % of the distractors match any work (as benchmarks/detection.py
scores a matcher) / top-1; then the true work's rank among the dev works plus every extra registered work
(scale.py's real works, WORK/gallery.npy, the training images); then how many of those extra works score above each
copy's true work, the figure to extrapolate to 1 M works from (an estimate, not a measurement)."""
import glob, json, os, pickle, sys, time
import numpy as np
import torch
from common import Net, plain_view, to_source, load_image

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
WORK, MODEL, DEV = sys.argv[1:4]
REAL = sys.argv[4] if len(sys.argv) > 4 else None  # benchmarks/scale.py's real works (OUT/real-works): 2,000 more
CACHE = f"{WORK}/dev.npz"
if not os.path.exists(CACHE):
    truth = json.load(open(f"{DEV}/truth.json"))
    works = sorted(os.listdir(f"{DEV}/works"))
    feed = sorted(truth)
    extra = sorted(glob.glob(f"{REAL}/*.jpg")) if REAL else []
    def src(p):
        return to_source(load_image(p))[0]
    W = np.stack([src(f"{DEV}/works/{w}") for w in works])
    Q = np.stack([src(f"{DEV}/feed/{f}") for f in feed])
    X = np.stack([src(p) for p in extra]) if extra else np.zeros((0, 128, 128, 3), np.uint8)
    np.savez(CACHE, W=W, Q=Q, X=X, works=works, feed=feed,
             qwork=[truth[f]["work"] or "" for f in feed], qattack=[truth[f]["attack"] for f in feed])
d = np.load(CACHE)
net = Net(); net.load_state_dict(torch.load(MODEL)); net.eval()


def embed(a, tta=False):
    out = []
    with torch.no_grad():
        for i in range(0, len(a), 256):
            x = plain_view(torch.from_numpy(a[i:i + 256]).permute(0, 3, 1, 2))
            if not tta:
                out.append(net(x).numpy()[:, None])
            else:
                views = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
                views += [v.transpose(2, 3) for v in views]
                out.append(np.stack([net(v).numpy() for v in views], 1))
    return np.concatenate(out)


t = time.time()
W = embed(d["W"])[:, 0]
X = embed(d["X"])[:, 0]
tta = bool(int(os.environ.get("TTA", "0")))
Q = embed(d["Q"], tta)
dt = (time.time() - t) / (len(d["W"]) + len(d["X"]) + len(d["Q"]) * (8 if tta else 1))
works = list(d["works"]); widx = {w: i for i, w in enumerate(works)}
qwork, qatt = d["qwork"], d["qattack"]
S = (Q @ W.T).max(1)  # (q, works): best over the query's views
SX = (Q @ X.T).max(1)
dis = np.array([w == "" for w in qwork])
copies = np.where(~dis)[0]
true = np.array([widx[w] for w in qwork[copies]])  # each copy's work, a column of S
for label, gallery in (("dev works", S), (f"dev works + {len(X)} procedural", np.concatenate([S, SX], 1))):
    best_d = gallery[dis].max(1)
    k = int(0.001 * dis.sum())
    thr = np.sort(best_d)[::-1][k]  # match: sim > thr
    own = gallery[copies, true]
    found, top = own > thr, own >= gallery[copies].max(1)
    print(f"{label}: threshold {thr:.3f} (distractor max sims p50 {np.median(best_d):.3f}); all {found.sum()}/"
          f"{len(copies)} = {found.mean():.3f}, top-1 {top.mean():.3f}")
    print("   " + "  ".join(f"{a} {found[qatt[copies] == a].mean():.2f}/{top[qatt[copies] == a].mean():.2f}"
                             for a in sorted(set(qatt[copies]))))
G = embed(np.load(f"{WORK}/gallery.npy"))[:, 0] if os.path.exists(f"{WORK}/gallery.npy") else X[:0]
T = embed(np.stack([to_source(a)[0] for a in pickle.load(open(f"{WORK}/train.pkl", "rb"))]))[:, 0] \
    if os.environ.get("TRAIN_GALLERY") else X[:0]
big = np.concatenate([S, SX, (Q @ G.T).max(1), (Q @ T.T).max(1)], 1)
own = big[copies, true][:, None]
dev_above = (big[copies, :S.shape[1]] > own).sum(1)
extra_above = (big[copies, S.shape[1]:] > own).sum(1)  # the extra (non-dev) works scoring above the copy's own
rank = dev_above + extra_above + 1
attacks = sorted(set(qatt[copies]))


def per_attack(ok):
    return f"all {ok.mean():.3f}  " + "  ".join(f"{a} {ok[qatt[copies] == a].mean():.2f}" for a in attacks)


print(f"rank of the true work among {big.shape[1]} works (dev + {len(X)} + {len(G)} procedural + {len(T)} training):")
for K in (1, 10, 40):
    print(f"   within {K:>2}: " + per_attack(rank <= K))
print(f"embedding {dt * 1000:.2f} ms per image (batched, {torch.get_num_threads()} threads)")
# Towards a registry of 1 M: with N extra works, c above means ~c x 1 M / N above at 1 M if the extra works were like
# a 1 M registry's (they are easier: procedural pictures; the training images as works, TRAIN_GALLERY=1, are harder).
ng = big.shape[1] - S.shape[1]
for c in (0, 1, 4):
    print(f"   at most {c} of {ng} extra works above (~{c * 1_000_000 // max(ng, 1)} at 1 M): " + per_attack(extra_above <= c))
