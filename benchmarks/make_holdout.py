"""Build a held-out corpus: the dev corpus's works and distractors under changes the matcher was NOT tuned on.

    python benchmarks/make_holdout.py DEV_CORPUS OUT [--strengths 2]

Writes OUT/works, OUT/feed, OUT/truth.json in the layout benchmarks/detection.py reads. The attacks are heavier
or different in kind from the dev corpus's: 30 % crops, 8-12° rotations, stretched aspect ratios, the work inside
a mock app screenshot (non-uniform chrome), blur, and combinations (crop + caption + recompression, mirror + crop,
rotation + recolour, screenshot + JPEG).

`--strengths 2` writes a second held-out set: the same twelve kinds of change at other strengths, positions and
seeds (ATTACKS_2), for checking anything tuned on the first one.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps


def jpeg(im: Image.Image, q: int) -> Image.Image:
    b = io.BytesIO()
    im.convert("RGB").save(b, "JPEG", quality=q)
    b.seek(0)
    return Image.open(b).convert("RGB")


def crop(im, l, t, r, b):
    w, h = im.size
    return im.crop((int(w * l), int(h * t), int(w * (1 - r)), int(h * (1 - b))))


def caption(im, text="when the art hits different"):
    im = im.copy()
    d = ImageDraw.Draw(im)
    w, h = im.size
    size = max(12, h // 14)
    d.text((w * 0.05, h * 0.82), text, font=ImageFont.load_default(size), fill="white", stroke_width=max(1, size // 12),
           stroke_fill="black")
    return im


def screenshot(im, rng: random.Random):
    """The work inside a mock social-app screen: coloured header with text, avatar, side rail, like bar."""
    w, h = im.size
    sw = int(w * 1.25)
    sh = int(h * 1.6)
    canvas = Image.new("RGB", (sw, sh), (245, 246, 250))
    d = ImageDraw.Draw(canvas)
    header = int(sh * 0.12)
    d.rectangle([0, 0, sw, header], fill=(rng.randrange(40, 90), rng.randrange(60, 120), rng.randrange(150, 220)))
    d.text((sw * 0.15, header * 0.3), "artfeed  @someone_else", font=ImageFont.load_default(max(10, header // 3)),
           fill="white")
    d.ellipse([sw * 0.02, header * 0.15, sw * 0.02 + header * 0.7, header * 0.85], fill=(230, 180, 90))
    rail = int(sw * 0.1)
    d.rectangle([0, header, rail, sh], fill=(225, 228, 235))
    for y in range(header + 20, sh, 60):
        d.rectangle([rail * 0.25, y, rail * 0.75, y + 30], fill=(180, 185, 200))
    x0, y0 = rail + (sw - rail - w) // 2, header + int(sh * 0.04)
    canvas.paste(im, (x0, y0))
    d.text((x0, y0 + h + 10), "♥ 1,024   ↻ 312   liked by many", font=ImageFont.load_default(max(10, h // 25)),
           fill=(60, 60, 60))
    return canvas


ATTACKS = {
    "crop_30": lambda im, r: crop(im, .15, .15, .15, .15) if r.random() < .5 else crop(im, .3, 0, 0, .3),
    "crop_one_side_35": lambda im, r: crop(im, *[(.35 if i == r.randrange(4) else 0) for i in range(4)]),
    "rotate_8": lambda im, r: im.rotate(8 * r.choice([-1, 1]), expand=True, fillcolor=(255, 255, 255),
                                        resample=Image.BICUBIC),
    "rotate_12_crop": lambda im, r: crop(im.rotate(12, resample=Image.BICUBIC), .1, .1, .1, .1),
    "stretch_h": lambda im, r: im.resize((int(im.width * 1.3), im.height), Image.BILINEAR),
    "squash_v": lambda im, r: im.resize((im.width, int(im.height * 0.75)), Image.BILINEAR),
    "screenshot": lambda im, r: screenshot(im, r),
    "screenshot_jpeg": lambda im, r: jpeg(screenshot(im.resize((im.width // 2, im.height // 2)), r), 40),
    "blur_2": lambda im, r: im.filter(ImageFilter.GaussianBlur(2)),
    "crop_caption_jpeg": lambda im, r: jpeg(caption(crop(im, .1, .05, .1, .05)), 35),
    "mirror_crop": lambda im, r: crop(ImageOps.mirror(im), .2, .1, 0, .1),
    "rotate_recolour": lambda im, r: ImageEnhance.Color(im.rotate(-6, expand=True, fillcolor=(0, 0, 0))).enhance(0.2),
}

ATTACKS_2 = {
    "crop_28": lambda im, r: crop(im, .12, .2, .12, .08) if r.random() < .5 else crop(im, 0, .3, .28, 0),
    "crop_one_side_30": lambda im, r: crop(im, *[(.3 if i == r.randrange(4) else 0) for i in range(4)]),
    "rotate_10": lambda im, r: im.rotate(10 * r.choice([-1, 1]), expand=True, fillcolor=(0, 0, 0),
                                        resample=Image.BICUBIC),
    "rotate_9_crop": lambda im, r: crop(im.rotate(-9, resample=Image.BICUBIC), .12, .08, .08, .12),
    "stretch_v": lambda im, r: im.resize((im.width, int(im.height * 1.25)), Image.BILINEAR),
    "squash_h": lambda im, r: im.resize((int(im.width * 0.8), im.height), Image.BILINEAR),
    "screenshot_small": lambda im, r: screenshot(im.resize((im.width * 3 // 4, im.height * 3 // 4)), r),
    "screenshot_third_jpeg": lambda im, r: jpeg(screenshot(im.resize((im.width // 3, im.height // 3)), r), 50),
    "blur_1_5": lambda im, r: im.filter(ImageFilter.GaussianBlur(1.5)),
    "crop_caption_jpeg_2": lambda im, r: jpeg(caption(crop(im, .05, .1, .05, .1), "me after seeing this"), 40),
    "mirror_crop_2": lambda im, r: crop(ImageOps.mirror(im), 0, .1, .15, .15),
    "rotate_recolour_2": lambda im, r: ImageEnhance.Color(im.rotate(7, expand=True, fillcolor=(255, 255, 255))
                                                        ).enhance(0.4),
}


def main() -> None:
    second = "--strengths" in sys.argv and sys.argv[sys.argv.index("--strengths") + 1] == "2"
    attacks = ATTACKS_2 if second else ATTACKS
    dev, out = (Path(a) for a in [a for a in sys.argv[1:] if not a.startswith("--") and a != "2"][:2])
    truth_in = json.loads((dev / "truth.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    (out / "feed").mkdir(parents=True)
    shutil.copytree(dev / "works", out / "works")
    rng, truth = random.Random(12 if second else 11), {}

    def emit(im: Image.Image, work: str | None, attack: str) -> None:
        name = hashlib.sha256(f"holdout{2 if second else ''}|{work}|{attack}|{len(truth)}".encode()).hexdigest()[:16]
        ext = rng.choice([".jpg", ".png", ".webp"])
        im.convert("RGB").save(out / "feed" / (name + ext), **({} if ext == ".png" else {"quality": 80}))
        truth[name + ext] = {"work": work, "attack": attack}

    for i, work in enumerate(sorted(p.name for p in (out / "works").iterdir())):
        im = Image.open(out / "works" / work).convert("RGB")
        for attack, fn in attacks.items():
            emit(fn(im, random.Random(f"{i}{attack}{2 if second else ''}")), work, attack)
    for name, t in sorted(truth_in.items()):
        if t["work"] is None:
            emit(Image.open(dev / "feed" / name).convert("RGB"), None, "distractor")
    (out / "truth.json").write_text(json.dumps(truth, indent=0, sort_keys=True))
    print(f"{len(truth)} feed images ({len(attacks)} attacks) -> {out}")


if __name__ == "__main__":
    main()
