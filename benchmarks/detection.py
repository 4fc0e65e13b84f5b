"""Copy-detection quality and speed on a corpus, for provenance and for PDQ / pHash baselines in the same run.

    python benchmarks/detection.py DIR [--pad-to 1000]

DIR holds works/ (originals to register), feed/ (copies and distractors) and truth.json
({feed file: {"work": works file or null, "attack": name}}), as ../shared/corpus/make_dev_corpus.py writes it.

The ledger is padded with synthetic works up to --pad-to so that speed is measured against that many registered
works (padding works are procedural images unlike any corpus image; a match to one counts as a wrong work).
Baselines are scored at the threshold where at most 0.1 % (and 1 %) of distractors match, chosen on this corpus
(which favours them); provenance is scored at its shipped thresholds, and its distractor rate is reported.
PROVENANCE_LOCAL_INDEX=bounded forces the bounded local index (localindex) at this size, to measure what it costs.
Blank works (uniform images, grey standard deviation < 3: e.g. a fully transparent PNG flattened on white)
cannot be told apart from one another or from any other blank image; figures are given with and without their
copies. Byte-identical works are registered once (idempotence), so a copy of either counts for that one work.
MISSES=1 lists every copy provenance does not attribute to its work.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account  # noqa: E402

import provenance  # noqa: E402
from provenance import localindex  # noqa: E402
from provenance._parallel import default_workers, imap  # noqa: E402
from provenance.fingerprints import PDQ, PHASH, fingerprint  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402
from provenance.imaging import load  # noqa: E402


def padding_image(seed: int, size=(640, 480)) -> Image.Image:
    """A procedural 'painting' (blobs, strokes, texture) unlike any corpus image, for padding the ledger."""
    rng = np.random.default_rng(10_000 + seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32) + rng.uniform(0, 255, 3)
    for _ in range(rng.integers(6, 14)):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 200)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + blob * rng.uniform(0, 255, 3)
    fx, fy = rng.uniform(0.005, 0.05, 2)
    img += 30 * np.sin(xx * fx + yy * fy + rng.uniform(0, 6))[..., None]
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write_padding(args) -> None:
    i, folder = args
    padding_image(i).save(folder / f"pad_{i:05d}.jpg", quality=85)


def _fingerprint(path: Path):
    try:
        return path.name, fingerprint(path.read_bytes(), variants=True)
    except provenance.ProvenanceError:
        return path.name, None


def _hamming_matrix(queries: list[list[str]], works: list[str]) -> np.ndarray:
    """min over each query's variants of the Hamming distance to each work: (queries, works)."""
    W = np.frombuffer(b"".join(bytes.fromhex(h) for h in works), np.uint8).reshape(len(works), -1)
    out = np.empty((len(queries), len(works)), np.int32)
    for i, variants in enumerate(queries):
        Q = np.frombuffer(b"".join(bytes.fromhex(v) for v in variants), np.uint8).reshape(len(variants), -1)
        out[i] = np.bitwise_count(Q[:, None, :] ^ W[None]).sum(2).min(0)
    return out


def _decode_pdq(path: Path) -> None:
    pdqhash.compute(np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")))


def threshold_for(fpr: float, distractor_scores: np.ndarray) -> float:
    """The lowest score threshold at which at most `fpr` of distractors score >= it (scores: higher = closer)."""
    allowed = int(np.floor(fpr * len(distractor_scores)))
    ranked = np.sort(distractor_scores)[::-1]
    return float(ranked[allowed] + 1e-9) if allowed < len(ranked) else -np.inf


class Table:
    """Recall per attack for several methods, printed side by side."""

    def __init__(self, attacks: list[str]):
        self.attacks, self.cols = attacks, []

    def add(self, name: str, per_attack: dict[str, list[int]], wrong: int, fp: int, n_distractors: int):
        self.cols.append((name, per_attack, wrong, fp, n_distractors))

    def print(self):
        width = max(14, *(len(c[0]) for c in self.cols))
        print(f"{'attack':24}" + "".join(f"{c[0]:>{width + 2}}" for c in self.cols))
        for a in self.attacks:
            cells = []
            for _, per, _, _, _ in self.cols:
                found, total = per.get(a, [0, 0])
                cells.append(f"{found / total:>{width + 2}.3f}" if total else f"{'-':>{width + 2}}")
            print(f"{a:24}" + "".join(cells))
        def row(label, fn):
            print(f"{label:24}" + "".join(f"{fn(c):>{width + 2}}" for c in self.cols))
        row("ALL", lambda c: f"{sum(v[0] for v in c[1].values()) / max(1, sum(v[1] for v in c[1].values())):.3f}")
        row("min over attacks", lambda c: f"{min(v[0] / v[1] for v in c[1].values() if v[1]):.3f}")
        row("wrong work", lambda c: str(c[2]))
        row("distractors matched", lambda c: f"{c[3]}/{c[4]}")


def score_rows(rows, truth, work_of, columns, scores: np.ndarray, thr: float, skip: set[str]):
    """per-attack [found, total], wrong-work count and distractor hits, for one method at one threshold.

    `work_of` maps a works file name to its work id; `columns` gives the work id of each column of `scores`.
    """
    per, wrong, fp = collections.defaultdict(lambda: [0, 0]), 0, 0
    for i, f in enumerate(rows):
        t = truth[f]
        best = int(np.argmax(scores[i]))
        hit = scores[i, best] >= thr
        if t["work"] is None:
            fp += bool(hit)
            continue
        if t["work"] in skip:
            continue
        per[t["attack"]][1] += 1
        if hit:
            if columns[best] == work_of[t["work"]]:
                per[t["attack"]][0] += 1
            else:
                wrong += 1
    return per, wrong, fp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--pad-to", type=int, default=1000, help="registered works to search against (default 1000)")
    args = ap.parse_args()
    truth = json.loads((args.dir / "truth.json").read_text())
    feed = sorted(args.dir / "feed" / f for f in truth)
    work_files = sorted((args.dir / "works").iterdir())
    cores = default_workers()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pad = tmp / "padding"
        pad.mkdir()
        n_pad = max(0, args.pad_to - len(work_files))
        list(imap(_write_padding, [(i, pad) for i in range(n_pad)], cores))

        ledger = Ledger.create(tmp / "ledger.db")
        t = time.perf_counter()
        reg = list(provenance.register(ledger, work_files + [pad], Account.from_key("0x" + "11" * 32),
                                       artist="bench").results)
        reg_s = time.perf_counter() - t
        work_of = {Path(r.item).name: r.work_id for r in reg if r.work_id}
        name_of = {wid: name for name, wid in work_of.items()}
        works = ledger.works()
        print(f"corpus {args.dir}: {len(work_files)} works + {n_pad} padding = {len(works)} registered"
              f" ({len(reg) / reg_s:.0f} works/s), {len(feed)} feed images, {cores} cores, local index"
              f" {os.environ.get(localindex.ENV) or 'auto'}\n")

        # Speed: provenance scan (everything) beside decode+PDQ, same files, same run.
        t = time.perf_counter()
        list(imap(_decode_pdq, feed, cores))
        pdq_s = time.perf_counter() - t
        t = time.perf_counter()
        results = {Path(r.item).name: r for r in provenance.scan(ledger, feed).results}
        scan_s = time.perf_counter() - t

        # Baselines from the same fingerprints.
        fps = dict(imap(_fingerprint, feed, cores))
        rows = [f for f in truth if fps.get(f) is not None]
        columns = [w.id for w in works]
        wq = np.array([w.fingerprints[PDQ].quality for w in works])
        d_pdq8 = _hamming_matrix([list(fps[f].pdq_variants) for f in rows], [w.fingerprints[PDQ].value for w in works])
        d_pdq1 = _hamming_matrix([[fps[f].pdq_variants[0]] for f in rows], [w.fingerprints[PDQ].value for w in works])
        d_ph1 = _hamming_matrix([[fps[f].phash_variants[0]] for f in rows], [w.fingerprints[PHASH].value for w in works])
        ledger.close()

    blank = {p.name for p in work_files if np.asarray(load(p).image.convert("L"), np.float32).std() < 3}
    distractor = np.array([truth[f]["work"] is None for f in rows])
    attacks = sorted({t["attack"] for t in truth.values() if t["work"]})

    prov_scores = np.zeros((len(rows), len(works)))
    col = {w.id: j for j, w in enumerate(works)}
    for i, f in enumerate(rows):
        for m in results[f].matches:
            prov_scores[i, col[m.work_id]] = max(prov_scores[i, col[m.work_id]], m.score)

    for skip, label in ((set(), "all works"), (blank, f"without the {len(blank)} blank works")):
        for fpr in (0.001, 0.01):
            table = Table(attacks)
            for name, scores in (("pHash", -d_ph1.astype(float)), ("PDQ", -d_pdq1.astype(float)),
                                 ("PDQ+dihedral", -d_pdq8.astype(float))):
                table.add(name, *score_rows(rows, truth, work_of, columns, scores, threshold_for(fpr, scores[distractor].max(1)),
                                            skip), int(distractor.sum()))
            table.add("provenance", *score_rows(rows, truth, work_of, columns, prov_scores, 0.5, skip), int(distractor.sum()))
            print(f"== recall, {label}; baselines at <= {fpr:.1%} distractor FPR, provenance at its shipped"
                  f" thresholds")
            table.print()
            print()

    print("provenance wrong-work attributions:")
    for f in rows:
        t, r = truth[f], results[f]
        if r.matches and t["work"] and r.matches[0].work_id != work_of[t["work"]]:
            m = r.matches[0]
            print(f"  {f} ({t['attack']} of {t['work']}) -> {name_of.get(m.work_id)} via {m.signal}: {m.transform},"
                  f" score {m.score}")
    if os.environ.get("MISSES"):  # every copy provenance does not attribute to its work
        print("copies missed:")
        for f in rows:
            t, r = truth[f], results[f]
            if t["work"] and not any(m.work_id == work_of[t["work"]] for m in r.matches):
                print(f"  {f} ({t['attack']} of {t['work']})")
    n = len(feed)
    print(f"speed over {n} feed images vs {len(works)} works, {cores} processes:")
    print(f"  decode + PDQ (baseline)        {n / pdq_s:7.1f} images/s")
    print(f"  provenance scan (all signals)  {n / scan_s:7.1f} images/s")
    failed = sum(1 for r in results.values() if r.error)
    print(f"  failed items: {failed}")


if __name__ == "__main__":
    main()
