"""Feed scanning throughput over real HTTP: a local RSS feed of N images, first scan and incremental re-scan.

    python benchmarks/feeds.py [--images 1000] [--per-host-interval 0]

Serves a generated feed (copies of the example works under several edits, and unrelated procedural images) from
a threaded HTTP server on 127.0.0.1, registers examples/works, and times `provenance.scan` on the feed URL: the
first scan fetches and checks every image; the re-scan fetches the feed again and skips every image it has seen;
then the same files are scanned from disk, to show what fetching costs.
Politeness is a parameter: the default per-host interval (0.5 s between requests to one host) would make any
single-host feed of 1,000 images take 500 s, so the benchmark measures the machinery with it set to 0.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import io
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402

import provenance  # noqa: E402
from provenance.fetch import FetchPolicy  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402

EDITS = {
    "flip": ImageOps.mirror,
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
    "small": lambda im: im.resize((im.width // 2, im.height // 2)),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
}


def procedural(r: random.Random) -> Image.Image:
    im = Image.new("RGB", (480, 360), tuple(r.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(r.randrange(4, 14)):
        box = sorted(r.randrange(480) for _ in range(2)), sorted(r.randrange(360) for _ in range(2))
        xy = (box[0][0], box[1][0], box[0][1], box[1][1])
        fill = tuple(r.randrange(256) for _ in range(3))
        (d.ellipse if r.random() < 0.5 else d.rectangle)(xy, fill=fill)
    return im


def build_feed(folder: Path, n: int) -> int:
    """N images (one in ten a copy of an example work) and rss.xml listing them. Returns the number of copies."""
    r = random.Random(7)
    works = sorted((ROOT / "examples" / "works").iterdir())
    copies, items = 0, []
    for i in range(n):
        if i % 10 == 0:
            with Image.open(works[(i // 10) % len(works)]) as im:
                edit = list(EDITS)[(i // 10) % len(EDITS)]
                im = EDITS[edit](im.convert("RGB"))
            copies += 1
        else:
            im = procedural(r)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        (folder / f"img{i:04d}.jpg").write_bytes(buf.getvalue())
        items.append(f"<item><title>post {i}</title><link>http://feed.test/p/{i}</link>"
                     f"<enclosure url=\"img{i:04d}.jpg\" type=\"image/jpeg\" length=\"{len(buf.getvalue())}\"/></item>")
    (folder / "rss.xml").write_text("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>bench</title>"
                                    "<link>http://feed.test/</link>" + "".join(items) + "</channel></rss>")
    return copies


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--per-host-interval", type=float, default=0.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = tmp / "site"
        site.mkdir()
        copies = build_feed(site, args.images)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(QuietHandler, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/rss.xml"
        ledger = Ledger.create(tmp / "ledger.db")
        list(provenance.register(ledger, [ROOT / "examples" / "works"], Account.from_key("0x" + "11" * 32),
                                 artist="bench").results)
        policy = FetchPolicy(allow_private=True, per_host_interval=args.per_host_interval, respect_robots=True)
        print(f"feed of {args.images} images ({copies} copies of {len(ledger.works())} registered works) at {url}")
        for label in ("first scan", "re-scan (incremental)"):
            t = time.perf_counter()
            results = list(provenance.scan(ledger, [url], policy=policy).results)
            s = time.perf_counter() - t
            by = {k: sum(r.status == k for r in results) for k in ("matched", "clean", "failed", "skipped")}
            print(f"{label:24} {len(results) / s:8.1f} items/s  {s:6.2f} s   " +
                  "  ".join(f"{k} {v}" for k, v in by.items()))
        t = time.perf_counter()
        n = sum(1 for _ in provenance.scan(ledger, [site / f"img{i:04d}.jpg" for i in range(args.images)]).results)
        s = time.perf_counter() - t
        print(f"{'same images, from disk':24} {n / s:8.1f} items/s  {s:6.2f} s   (decode + match only: the"
              " difference is fetching)")
        server.shutdown()
        ledger.close()


if __name__ == "__main__":
    main()
