"""Train the visual-word vocabulary of the bounded local index (provenance/localindex.py) and write it as package
data. Run once; the output is committed and versioned (localindex.VOCABULARY), never retrained at run time.

    .venv/bin/python scripts/train_vocabulary.py DIR [DIR ...] [--out provenance/data/orbwords-1.npy]

Input: every image under the folders (the dev corpus: works/ and feed/, i.e. originals, reposted copies and
unrelated designs), reduced to orb/3 features exactly as registration extracts them (plain and CLAHE-equalised
ORB descriptors). Output: a (256 + 256 * 256, 32) uint8 array, the 256 first-level binary centroids, then for
each of them its 256 second-level centroids: a 2-level vocabulary tree of 65,536 words (Nister & Stewenius).

k-means is faiss's (float k-means over the 256 bits, centroids then rounded to bits: the bitwise majority of
each cluster, the binary centroid that minimises the summed Hamming distance); assignment is by Hamming
distance, as localindex.words assigns. Seeds are fixed: the same input gives the same vocabulary.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance import local  # noqa: E402
from provenance._parallel import imap  # noqa: E402
from provenance.errors import ImageError  # noqa: E402
from provenance.imaging import decode, read_bytes  # noqa: E402
from provenance.localindex import BRANCH, hamming_argmin  # noqa: E402

LEVEL1_SAMPLE = 262_144  # descriptors for the first level (1,024 per centroid)
LEVEL2_SAMPLE = 8_192  # at most this many per first-level cell (32 per centroid)
ITERATIONS = 12


def _descriptors(path: Path) -> np.ndarray:
    try:
        f = local.extract(decode(read_bytes(path)).image)
    except ImageError:
        return np.zeros((0, 32), np.uint8)
    return np.concatenate([f.descriptors, f.eq_descriptors])


def _kmeans(faiss, binary: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k binary centroids of `binary` ((n, 32) uint8); fewer points than k: the points, repeated."""
    if len(binary) <= k:
        return np.resize(binary, (k, 32)) if len(binary) else np.zeros((k, 32), np.uint8)
    bits = np.unpackbits(binary, axis=1).astype(np.float32)
    km = faiss.Kmeans(256, k, niter=ITERATIONS, seed=seed, verbose=False, spherical=False)
    km.train(bits)
    return np.packbits(km.centroids >= 0.5, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "provenance" / "data"
                    / "orbwords-1.npy")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)  # a shared machine: one core
    files = sorted(p for d in args.dirs for p in d.rglob("*") if p.is_file() and p.suffix.lower() in
                   (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"))
    t = time.perf_counter()
    des = np.concatenate(list(imap(_descriptors, files, workers=1)))
    print(f"{len(files)} images, {len(des):,} descriptors ({time.perf_counter() - t:.0f} s)", flush=True)
    rng = np.random.default_rng(0)
    top = _kmeans(faiss, des[rng.choice(len(des), min(len(des), LEVEL1_SAMPLE), replace=False)], BRANCH, 1)
    cell = hamming_argmin(des, top)
    leaves = np.zeros((BRANCH, BRANCH, 32), np.uint8)
    for c in range(BRANCH):
        members = des[cell == c]
        if len(members) > LEVEL2_SAMPLE:
            members = members[rng.choice(len(members), LEVEL2_SAMPLE, replace=False)]
        leaves[c] = _kmeans(faiss, members, BRANCH, 2 + c)
    vocabulary = np.concatenate([top, leaves.reshape(-1, 32)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, vocabulary, allow_pickle=False)
    sizes = np.bincount(cell, minlength=BRANCH)
    print(f"wrote {args.out} ({time.perf_counter() - t:.0f} s): first-level cells hold {sizes.min()}-{sizes.max()}"
          f" descriptors (median {int(np.median(sizes))}); sha256 {hashlib.sha256(vocabulary.tobytes()).hexdigest()}")


if __name__ == "__main__":
    main()
