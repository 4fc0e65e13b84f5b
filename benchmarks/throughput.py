"""Fingerprinting and scan throughput, beside plain decode+PDQ and decode+pHash on the same files, same run.

    python benchmarks/throughput.py DIR [--limit N]

DIR is a folder of images (recursively), or a corpus folder with works/ and feed/ (then works/ are registered
and feed/ is scanned). Baselines decode the full image with Pillow and hash it as the libraries' own examples do.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account  # noqa: E402

import provenance  # noqa: E402
from provenance._parallel import default_workers, imap  # noqa: E402
from provenance.fingerprints import fingerprint  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402
from provenance.sources import collect_files  # noqa: E402


def baseline_pdq(data: bytes) -> None:
    pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def baseline_phash(data: bytes) -> None:
    imagehash.phash(Image.open(io.BytesIO(data)).convert("RGB"))


def full_fingerprint(path: Path) -> None:
    fingerprint(path.read_bytes(), variants=True)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} images/s  ({seconds * 1000 / n:6.2f} ms/image)"


def timed(label: str, n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    s = time.perf_counter() - t
    print(f"{label:58} {rate(n, s)}")
    return n / s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int, default=600, help="images to use (default 600)")
    args = ap.parse_args()

    corpus = (args.dir / "feed").is_dir() and (args.dir / "works").is_dir()
    files, _ = collect_files([args.dir / "feed" if corpus else args.dir])
    files = files[: args.limit]
    blobs = [f.read_bytes() for f in files]  # also warms the page cache for every contender
    n, cores = len(files), default_workers()
    sizes = [Image.open(io.BytesIO(b)).size for b in blobs]
    print(f"{n} images from {args.dir}, median size {int(np.median([w for w, _ in sizes]))}x"
          f"{int(np.median([h for _, h in sizes]))}, {cores} cores, Python {sys.version.split()[0]}\n")

    pdq_rate = timed("baseline: decode + PDQ (pdqhash), 1 core", n, lambda: [baseline_pdq(b) for b in blobs])
    timed("baseline: decode + pHash (imagehash), 1 core", n, lambda: [baseline_phash(b) for b in blobs])
    one = timed("provenance fingerprint (all signals incl. ORB), 1 core", n,
                lambda: [fingerprint(b, variants=True) for b in blobs])
    both = timed(f"provenance fingerprint, {cores} processes", n,
                 lambda: list(imap(full_fingerprint, files, cores)))

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.create(Path(tmp) / "ledger.db")
        account = Account.from_key("0x" + "11" * 32)
        reg_files = collect_files([args.dir / "works"])[0] if corpus else files[: max(1, n // 10)]
        t = time.perf_counter()
        batch = provenance.register(ledger, reg_files, account, artist="bench")
        failed = sum(bool(r.error) for r in batch.results)
        s = time.perf_counter() - t
        print(f"{'provenance register (fingerprint+sign+append), ' + str(cores) + ' processes':58} "
              f"{rate(len(reg_files), s)}  [{len(reg_files) - failed} works]")
        scan_rate = timed(f"provenance scan vs {len(ledger.works())} works, {cores} processes", n,
                          lambda: list(provenance.scan(ledger, files).results))
        ledger.close()

    print(f"\nfull fingerprinting / decode+PDQ:  {one / pdq_rate:.2f}x on 1 core, {both / pdq_rate:.2f}x with"
          f" {cores} processes (target >= 2x)")
    print(f"scan / decode+PDQ:                 {scan_rate / pdq_rate:.2f}x")


if __name__ == "__main__":
    main()
