#!/usr/bin/env python3
"""Generate the example artworks, a sample feed of reposts, and golden test images.

Everything is synthesised here from fixed seeds with Pillow + numpy only, so the
outputs are reproducible (for a given Pillow/libjpeg/libwebp build) and free of
third-party rights.  All outputs are released under CC0-1.0.

Usage::

    python examples/make_examples.py            # works, feed, truth.json, golden
    python examples/make_examples.py --no-golden

Outputs (paths relative to the repository root):

    examples/works/      six original "artworks"
    examples/feed/       reposted copies of the works plus unrelated distractors
    examples/truth.json  {feed file: {"work": works file or null, "attack": name}}
    provenance/golden/   gradient.png, photo.jpg, palette.gif (fingerprint tests)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKS_DIR = HERE / "works"
FEED_DIR = HERE / "feed"
TRUTH_PATH = HERE / "truth.json"
GOLDEN_DIR = REPO / "provenance" / "golden"

JPEG_QUALITY = 90


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font (Aileron), so no system fonts are needed."""
    return ImageFont.load_default(size=size)


def fbm(h: int, w: int, rng: np.random.Generator, octaves: int = 6,
        base: int = 3, persistence: float = 0.55) -> np.ndarray:
    """Fractal (value) noise in [0, 1], shape (h, w)."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2 ** o + 1
        grid = rng.random((n, n), dtype=np.float32)
        layer = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
        out += amp * np.asarray(layer, np.float32)
        total += amp
        amp *= persistence
    out /= total
    out -= out.min()
    out /= max(out.max(), 1e-6)
    return out


def fbm1d(n: int, rng: np.random.Generator, octaves: int = 5, base: int = 4,
          persistence: float = 0.5) -> np.ndarray:
    """1-D fractal noise in [-1, 1], length n."""
    x = np.linspace(0, 1, n)
    out = np.zeros(n)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        k = base * 2 ** o + 1
        pts = rng.uniform(-1, 1, k)
        out += amp * np.interp(x, np.linspace(0, 1, k), pts)
        total += amp
        amp *= persistence
    return out / total


def lerp_colors(t: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Map t in [0,1] (any shape) through colour stops -> float RGB array."""
    pos = np.array([p for p, _ in stops])
    cols = np.array([c for _, c in stops], np.float32)
    return np.stack([np.interp(t, pos, cols[:, i]) for i in range(3)], axis=-1)


def to_img(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        img.convert("RGB").save(path, "JPEG", quality=kw.get("quality", JPEG_QUALITY),
                                optimize=True)
    elif ext == ".png":
        img.save(path, "PNG", optimize=True)
    elif ext == ".webp":
        img.convert("RGB").save(path, "WEBP", quality=kw.get("quality", 80), method=4)
    elif ext == ".gif":
        img.save(path, "GIF", **kw)
    else:
        raise ValueError(path)


# --------------------------------------------------------------------------
# the six works
# --------------------------------------------------------------------------

def sunset_hills(seed: int = 101) -> Image.Image:
    """Plasma-noise sky, glowing sun and layered rolling hills (1200x800)."""
    rng = np.random.default_rng(seed)
    w, h = 1200, 800
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = 0.62 * h
    t = np.clip(yy / horizon, 0, 1)
    sky = lerp_colors(t, [(0.0, (38, 22, 74)), (0.35, (118, 48, 112)),
                          (0.7, (232, 110, 84)), (1.0, (255, 196, 120))])
    # streaky clouds: stretched fractal noise
    clouds = fbm(h // 4, w // 16, rng, octaves=5, base=2)
    clouds = np.asarray(Image.fromarray(clouds, "F").resize((w, h), Image.BICUBIC))
    cmask = np.clip((clouds - 0.5) * 3.0, 0, 1)[..., None] * (1 - t[..., None]) ** 0.5
    sky = sky * (1 - 0.45 * cmask) + np.array([255, 170, 150]) * 0.45 * cmask
    # sun + glow
    sx, sy, sr = 0.68 * w, 0.5 * h, 70
    d = np.hypot(xx - sx, yy - sy)
    glow = np.exp(-(d / 260.0) ** 2)[..., None]
    sky = sky + glow * np.array([90, 60, 20])
    sun = np.clip((sr - d) / 2.0, 0, 1)[..., None]
    sky = sky * (1 - sun) + np.array([255, 236, 180]) * sun
    img = sky

    # hills, back to front
    layers = [
        (0.58, 40, (150, 74, 112), 0.55),
        (0.66, 60, (110, 52, 96), 0.35),
        (0.75, 70, (70, 36, 74), 0.18),
        (0.86, 60, (34, 22, 44), 0.0),
    ]
    for base, amp, col, haze in layers:
        ridge = base * h + amp * fbm1d(w, rng, octaves=6, base=3)
        mask = np.clip(yy - ridge[None, :], 0, 1)[..., None]
        tex = fbm(h, w, rng, octaves=5, base=8)[..., None]
        shade = np.array(col, np.float32) * (0.85 + 0.3 * tex)
        shade = shade * (1 - haze) + np.array([240, 150, 120]) * haze
        # darker towards the bottom of each hill
        depth = np.clip((yy - ridge[None, :]) / (h - base * h + 1), 0, 1)[..., None]
        shade = shade * (1 - 0.35 * depth)
        img = img * (1 - mask) + shade * mask

    # fine film grain
    img = img + rng.normal(0, 3.0, img.shape)
    return to_img(img)


def _bristle_stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator,
                    p0, p1, p2, width: float, color, alpha: int) -> None:
    ts = np.linspace(0, 1, 40)[:, None]
    p0, p1, p2 = map(np.array, (p0, p1, p2))
    pts = (1 - ts) ** 2 * p0 + 2 * (1 - ts) * ts * p1 + ts ** 2 * p2
    tang = np.gradient(pts, axis=0)
    norm = np.stack([-tang[:, 1], tang[:, 0]], 1)
    norm /= np.linalg.norm(norm, axis=1, keepdims=True) + 1e-9
    taper = np.sin(np.linspace(0.15, math.pi - 0.15, len(ts)))
    n_bristles = max(6, int(width / 3))
    for _ in range(n_bristles):
        off = rng.uniform(-0.5, 0.5) * width
        jit = rng.integers(-18, 19, 3)
        c = tuple(int(np.clip(color[i] + jit[i], 0, 255)) for i in range(3))
        a = int(np.clip(alpha * rng.uniform(0.4, 1.0), 0, 255))
        start = rng.integers(0, 6)
        stop = len(ts) - rng.integers(0, 8)
        line = pts + norm * (off * taper)[:, None]
        seg = [tuple(map(float, q)) for q in line[start:stop]]
        draw.line(seg, fill=c + (a,), width=max(2, int(width / n_bristles * 2.2)),
                  joint="curve")


def brush_abstract(seed: int = 202) -> Image.Image:
    """Layers of translucent bristle brush strokes on primed canvas (880x1100)."""
    rng = np.random.default_rng(seed)
    w, h = 880, 1100
    ground = lerp_colors(fbm(h, w, rng, octaves=6, base=4),
                         [(0, (226, 214, 192)), (1, (246, 238, 220))])
    canvas = to_img(ground).convert("RGBA")
    palette = [(22, 96, 110), (206, 150, 52), (176, 40, 48), (30, 40, 78),
               (236, 226, 200), (92, 140, 96), (214, 112, 74)]
    # three passes: big washes, mid strokes, small accents
    for n, wmin, wmax, amin, amax in [(14, 140, 260, 70, 120),
                                      (40, 50, 130, 110, 190),
                                      (45, 10, 34, 150, 230)]:
        for _ in range(n):
            layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
            d = ImageDraw.Draw(layer)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            ang = rng.normal(-0.5, 0.6)
            length = rng.uniform(150, 650)
            dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
            bend = rng.normal(0, length * 0.25, 2)
            p0, p2 = (cx - dx, cy - dy), (cx + dx, cy + dy)
            p1 = (cx + bend[0], cy + bend[1])
            col = palette[rng.integers(len(palette))]
            _bristle_stroke(d, rng, p0, p1, p2, rng.uniform(wmin, wmax), col,
                            int(rng.uniform(amin, amax)))
            canvas = Image.alpha_composite(canvas, layer)
    img = canvas.convert("RGB").filter(ImageFilter.GaussianBlur(0.9))
    arr = np.asarray(img, np.float32)
    weave = (np.sin(np.arange(w) * 2.1)[None, :] * np.sin(np.arange(h) * 1.9)[:, None])
    arr = arr + 3.0 * weave[..., None]
    return to_img(arr)


def geometric_poster(seed: int = 303) -> Image.Image:
    """Bauhaus-style poster: bold flat shapes and a title word (700x1000)."""
    rng = np.random.default_rng(seed)
    w, h = 700, 1000
    s = 2  # supersample for smooth edges
    img = Image.new("RGB", (w * s, h * s), (241, 232, 212))
    d = ImageDraw.Draw(img)
    red, blue, yellow, black = (214, 64, 44), (32, 70, 150), (238, 186, 40), (24, 24, 28)
    S = lambda *v: [int(x * s) for x in v]  # noqa: E731
    d.rectangle(S(60, 70, 330, 640), fill=black)
    d.ellipse(S(230, 160, 640, 570), fill=red)
    d.polygon(S(60, 640, 420, 640, 60, 300), fill=blue)
    d.rectangle(S(430, 600, 640, 660), fill=yellow)
    for i in range(7):  # stripe band
        d.rectangle(S(380, 80 + i * 18, 640, 88 + i * 18), fill=black)
    for i in range(3):  # dot grid
        for j in range(5):
            r = 6 + int(rng.integers(0, 5))
            cx, cy = 90 + j * 40, 290 + i * 40
            d.ellipse(S(cx - r, cy - r, cx + r, cy + r), fill=yellow)
    d.arc(S(380, 300, 700, 620), 200, 330, fill=yellow, width=22 * s)
    d.line(S(60, 690, 640, 690), fill=black, width=6 * s)
    f_title = font(150 * s)
    d.text((w * s // 2, 835 * s), "KINETIC", font=f_title, fill=black, anchor="mm",
           stroke_width=4 * s, stroke_fill=black)
    f_sub = font(28 * s)
    d.text((62 * s, 930 * s), "FORM  \u00b7  COLOUR  \u00b7  MOTION", font=f_sub, fill=red)
    d.text((640 * s, 930 * s), "1968", font=f_sub, fill=black, anchor="ra")
    return img.resize((w, h), Image.LANCZOS)


def figure_portrait(seed: int = 404) -> Image.Image:
    """Portrait-like bust silhouette with rim light on plaster texture (768x1024)."""
    rng = np.random.default_rng(seed)
    w, h = 768, 1024
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tex = fbm(h, w, rng, octaves=7, base=3)
    bg = lerp_colors(tex, [(0, (96, 120, 112)), (0.5, (150, 160, 132)), (1, (208, 196, 160))])
    # warm halo behind the head
    halo = np.exp(-((np.hypot(xx - 384, yy - 360)) / 260.0) ** 2)[..., None]
    bg = bg * (1 - 0.5 * halo) + np.array([238, 206, 150]) * 0.5 * halo
    vign = 1 - 0.55 * (np.hypot((xx - w / 2) / w, (yy - h / 2) / h) ** 2)[..., None]
    bg = bg * vign

    # silhouette mask at 2x
    s = 2
    m = Image.new("L", (w * s, h * s), 0)
    d = ImageDraw.Draw(m)
    S = lambda pts: [(x * s, y * s) for x, y in pts]  # noqa: E731
    d.ellipse([(300 * s, 230 * s), (470 * s, 450 * s)], fill=255)          # head
    d.ellipse([(290 * s, 200 * s), (470 * s, 360 * s)], fill=255)          # hair
    d.ellipse([(400 * s, 160 * s), (480 * s, 240 * s)], fill=255)          # bun
    d.polygon(S([(342, 400), (426, 400), (438, 520), (334, 520)]), fill=255)  # neck
    # shoulders: a control polygon smoothed with Chaikin corner cutting
    half = [(0, 480), (50, 486), (120, 506), (200, 530), (255, 560), (290, 610),
            (305, 700), (312, 1040)]
    for _ in range(4):
        sm = [half[0]]
        for (x0, y0), (x1, y1) in zip(half, half[1:]):
            sm += [(0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1),
                   (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1)]
        half = sm + [half[-1]]
    body = [(386 - x, y) for x, y in half] + [(386 + x, y) for x, y in half[::-1]]
    d.polygon(S(body), fill=255)
    d.ellipse([(455 * s, 330 * s), (482 * s, 370 * s)], fill=255)          # nose tip
    mask = np.asarray(m.resize((w, h), Image.LANCZOS), np.float32)[..., None] / 255
    # rim light: mask minus shifted mask
    shifted = np.roll(mask, (6, -9), axis=(0, 1))
    rim = np.clip(mask - shifted, 0, 1)
    rim = np.asarray(Image.fromarray((rim[..., 0] * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(2.5)), np.float32)[..., None] / 255
    fig_tex = fbm(h, w, rng, octaves=5, base=10)[..., None]
    fig = np.array([40, 34, 44], np.float32) * (0.8 + 0.4 * fig_tex)
    img = bg * (1 - mask) + fig * mask
    img = img + rim * mask * np.array([200, 150, 90]) * 1.2
    # painterly hatch texture over everything
    hatch = np.sin((xx + yy) * 0.9 + 3 * tex) * 3
    img = img + hatch[..., None] + rng.normal(0, 2.5, img.shape)
    return to_img(img)


def flow_field(seed: int = 505) -> Image.Image:
    """Pen-plotter style lines following a noise flow field (1000x700)."""
    rng = np.random.default_rng(seed)
    w, h, s = 1000, 700, 2
    field = fbm(h // 10 + 1, w // 10 + 1, rng, octaves=4, base=2) * 4 * math.pi
    img = Image.new("RGB", (w * s, h * s), (244, 238, 226))
    d = ImageDraw.Draw(img)
    inks = [(30, 42, 84), (30, 42, 84), (30, 42, 84), (196, 70, 50), (40, 120, 120)]
    for i in range(900):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        col = inks[rng.integers(len(inks))]
        pts = [(x * s, y * s)]
        for _ in range(int(rng.integers(30, 120))):
            a = field[int(y) // 10, int(x) // 10]
            x += 2.5 * math.cos(a)
            y += 2.5 * math.sin(a)
            if not (0 <= x < w and 0 <= y < h):
                break
            pts.append((x * s, y * s))
        if len(pts) > 2:
            d.line(pts, fill=col, width=2 if col != inks[0] else 3, joint="curve")
    # a few big ink circles as "stamps"
    for _ in range(3):
        cx, cy, r = rng.uniform(100, w - 100), rng.uniform(100, h - 100), rng.uniform(30, 70)
        d.ellipse([((cx - r) * s, (cy - r) * s), ((cx + r) * s, (cy + r) * s)],
                  outline=(196, 70, 50), width=5 * s)
    img = img.resize((w, h), Image.LANCZOS)
    # ink drawing: a 48-colour palette keeps the PNG small without visible banding
    return img.quantize(48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def tiled_mandala(seed: int = 606) -> Image.Image:
    """A 12-fold mandala over a tiled quatrefoil lattice (840x840)."""
    rng = np.random.default_rng(seed)
    n, s = 840, 2
    N = n * s
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32) / s
    pal = np.array([(18, 44, 74), (234, 220, 190), (198, 92, 46), (36, 120, 118),
                    (232, 176, 64), (126, 34, 56), (246, 240, 226)], np.uint8)
    # background tiles: quatrefoils on a 70 px grid
    tile = 70.0
    u = (xx % tile) / tile - 0.5
    v = (yy % tile) / tile - 0.5
    ru = np.hypot(u, v)
    th = np.arctan2(v, u)
    quat = ru < 0.28 + 0.1 * np.cos(4 * th)
    idx = np.where(quat, 3, 0)
    idx = np.where(ru < 0.08, 4, idx)
    idx = np.where(np.abs(np.abs(u) - np.abs(v)) < 0.02, 1, idx)
    # mandala
    cx = cy = n / 2
    r = np.hypot(xx - cx, yy - cy)
    th = np.arctan2(yy - cy, xx - cx)
    k = 12
    rings = [
        (360, 6, None), (340, 2, lambda t: np.cos(k * t) > 0.2),
        (300, 1, None), (280, 5, lambda t: np.abs(np.cos(k * t / 2)) > 0.5),
        (230, 4, None), (210, 3, lambda t: np.cos(2 * k * t) > -0.3),
        (160, 1, None), (140, 2, lambda t: np.cos(k * t) > 0.0),
        (90, 5, None), (70, 4, lambda t: np.cos(k * t / 2) ** 2 > 0.3),
        (40, 0, None), (18, 4, None),
    ]
    for rad, c, pat in rings:
        wob = rad + (6 * np.cos(k * th) if pat is None else 0)
        inside = r < wob
        if pat is not None:
            inside &= pat(th + rng.uniform(0, 0.01))
        idx = np.where(inside, c, idx)
    # petals
    for rad, width, c in [(250, 0.18, 6), (120, 0.22, 4)]:
        ang = (th * k / (2 * math.pi)) % 1 - 0.5
        petal = (np.abs(ang) < width * (1 - r / rad)) & (r < rad) & (r > rad * 0.55)
        idx = np.where(petal, c, idx)
    img = Image.fromarray(pal[idx], "RGB").resize((n, n), Image.LANCZOS)
    return img.quantize(64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


WORKS = {
    "sunset-hills.jpg": sunset_hills,
    "brush-abstract.jpg": brush_abstract,
    "geometric-poster.png": geometric_poster,
    "figure-portrait.jpg": figure_portrait,
    "flow-field.png": flow_field,
    "tiled-mandala.png": tiled_mandala,
}


# --------------------------------------------------------------------------
# distractors (unrelated images for the feed)
# --------------------------------------------------------------------------

def d_voronoi(seed: int = 901) -> Image.Image:
    """Stained-glass Voronoi cells (900x600)."""
    rng = np.random.default_rng(seed)
    w, h = 900, 600
    pts = rng.uniform(0, 1, (60, 2)) * [w, h]
    cols = rng.integers(40, 240, (60, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2
    order = np.argsort(d, axis=-1)
    near = order[..., 0]
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    edge = (np.sqrt(d2) - np.sqrt(d1)) < 3
    arr = cols[near].astype(np.float32)
    arr[edge] = 20
    return to_img(arr)


def d_bokeh(seed: int = 902) -> Image.Image:
    """Night bokeh: soft out-of-focus light discs (800x800)."""
    rng = np.random.default_rng(seed)
    n = 800
    img = Image.new("RGB", (n, n), (8, 10, 24))
    for _ in range(70):
        layer = Image.new("RGB", (n, n), (0, 0, 0))
        d = ImageDraw.Draw(layer)
        x, y, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(15, 80)
        c = tuple(int(v) for v in rng.choice([[255, 190, 90], [120, 200, 255],
                                              [255, 120, 160]]) * rng.uniform(0.2, 0.5))
        d.ellipse([x - r, y - r, x + r, y + r], fill=c)
        img = Image.fromarray(np.minimum(np.asarray(img, np.uint16) + np.asarray(layer),
                                         255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(3))


def d_chart(seed: int = 903) -> Image.Image:
    """A plain bar chart screenshot (720x540)."""
    rng = np.random.default_rng(seed)
    w, h = 720, 540
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((40, 20), "Quarterly results", font=font(30), fill=(30, 30, 30))
    d.line([(60, 480), (690, 480)], fill=(90, 90, 90), width=2)
    d.line([(60, 80), (60, 480)], fill=(90, 90, 90), width=2)
    for i in range(5):
        y = 480 - i * 90
        d.line([(60, y), (690, y)], fill=(225, 225, 225))
        d.text((20, y - 8), str(i * 25), font=font(14), fill=(90, 90, 90))
    vals = rng.uniform(60, 380, 8)
    for i, v in enumerate(vals):
        x = 90 + i * 75
        d.rectangle([x, 480 - v, x + 45, 480], fill=(66, 133, 244) if i % 2 else (244, 160, 0))
        d.text((x + 22, 495), f"Q{i % 4 + 1}", font=font(14), fill=(60, 60, 60), anchor="ma")
    return img


def d_tartan(seed: int = 904) -> Image.Image:
    """Woven tartan plaid (600x800)."""
    rng = np.random.default_rng(seed)
    w, h = 600, 800
    sett = rng.integers(0, 4, 24).repeat(12)
    cols = np.array([(20, 60, 40), (150, 20, 30), (20, 30, 80), (220, 200, 120)], np.float32)
    xs = sett[np.arange(w) % len(sett)]
    ys = sett[np.arange(h) % len(sett)]
    yy, xx = np.mgrid[0:h, 0:w]
    twill = ((xx + yy) // 2) % 2 == 0
    arr = np.where(twill[..., None], cols[xs][None, :, :], cols[ys][:, None, :])
    arr = arr * (0.9 + 0.1 * ((xx + yy) % 4 == 0))[..., None]
    return to_img(arr)


# --------------------------------------------------------------------------
# repost "attacks"
# --------------------------------------------------------------------------

def a_hflip(im):
    return ImageOps.mirror(im)


def a_rot90(im):
    return im.transpose(Image.ROTATE_90)


def a_rescale40(im):
    return im.resize((round(im.width * 0.4), round(im.height * 0.4)), Image.LANCZOS)


def a_center_crop10(im):
    # remove 10% of each dimension (5% per side), keep the central 90%
    dx, dy = round(im.width * 0.05), round(im.height * 0.05)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


def a_caption(im):
    band = max(60, im.height // 9)
    out = Image.new("RGB", (im.width, im.height + band), "black")
    out.paste(im.convert("RGB"), (0, band))
    d = ImageDraw.Draw(out)
    d.text((im.width // 2, band // 2), "so true", font=font(int(band * 0.55)),
           fill="white", anchor="mm")
    return out


def a_watermark(im):
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    size = base.width // 10
    d.text((base.width - 30, base.height - 30), "@reposter", font=font(size),
           fill=(255, 255, 255, 140), anchor="rd", stroke_width=2,
           stroke_fill=(0, 0, 0, 90))
    return Image.alpha_composite(base, layer).convert("RGB")


def a_grayscale(im):
    return ImageOps.grayscale(im).convert("RGB")


def a_brightness_contrast(im):
    im = ImageEnhance.Brightness(im.convert("RGB")).enhance(1.25)
    return ImageEnhance.Contrast(im).enhance(1.3)


def a_letterbox(im):
    # pad to a 16:9 frame with black bars (pillar/letter box as needed)
    tw = max(im.width, round(im.height * 16 / 9))
    th = max(im.height, round(tw * 9 / 16))
    out = Image.new("RGB", (tw, th), "black")
    out.paste(im.convert("RGB"), ((tw - im.width) // 2, (th - im.height) // 2))
    return out


def a_identity(im):
    return im.convert("RGB")


# (opaque feed name, work or distractor key, attack name, transform, JPEG quality)
# transform None with attack "exact_copy" means a byte-for-byte copy.
FEED = [
    ("post_01.jpg", "figure-portrait.jpg", "rescale_40pct_jpeg_q35", a_rescale40, 35),
    ("post_02.jpg", "sunset-hills.jpg", "exact_copy", None, None),
    ("post_03.jpg", "voronoi", "distractor", None, 85),
    ("post_04.jpg", "brush-abstract.jpg", "hflip", a_hflip, 85),
    ("post_05.jpg", "tiled-mandala.png", "caption_bar", a_caption, 85),
    ("post_06.jpg", "geometric-poster.png", "rotate_90", a_rot90, 85),
    ("post_07.jpg", "bokeh", "distractor", None, 85),
    ("post_08.jpg", "sunset-hills.jpg", "watermark_text", a_watermark, 85),
    ("post_09.jpg", "flow-field.png", "center_crop_10pct", a_center_crop10, 85),
    ("post_10.jpg", "brush-abstract.jpg", "grayscale", a_grayscale, 85),
    ("post_11.png", "chart", "distractor", None, None),
    ("post_12.jpg", "geometric-poster.png", "brightness_contrast", a_brightness_contrast, 85),
    ("post_13.jpg", "figure-portrait.jpg", "letterbox", a_letterbox, 85),
    ("post_14.webp", "flow-field.png", "webp_reencode", a_identity, None),
    ("post_15.jpg", "tartan", "distractor", None, 80),
    ("post_16.jpg", "tiled-mandala.png", "rescale_40pct_jpeg_q35", a_rescale40, 35),
    ("post_17.jpg", "sunset-hills.jpg", "center_crop_10pct", a_center_crop10, 85),
]

DISTRACTORS = {"voronoi": d_voronoi, "bokeh": d_bokeh, "chart": d_chart, "tartan": d_tartan}


# --------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------

def make_works() -> None:
    WORKS_DIR.mkdir(parents=True, exist_ok=True)
    for name, fn in WORKS.items():
        save(fn(), WORKS_DIR / name)


def make_feed() -> None:
    # start from an empty feed folder so stale files (or stray notes) never linger
    if FEED_DIR.exists():
        shutil.rmtree(FEED_DIR)
    FEED_DIR.mkdir(parents=True)
    truth = {}
    for fname, src, attack, fn, q in FEED:
        out = FEED_DIR / fname
        if src in DISTRACTORS:
            img = DISTRACTORS[src]()
            truth[fname] = {"work": None, "attack": attack}
        else:
            truth[fname] = {"work": src, "attack": attack}
            if fn is None:
                assert Path(src).suffix == out.suffix
                shutil.copyfile(WORKS_DIR / src, out)
                continue
            with Image.open(WORKS_DIR / src) as im:
                img = fn(im.convert("RGB"))
        save(img, out, **({"quality": q} if q else {}))
    TRUTH_PATH.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")


def make_golden(out_dir: Path = GOLDEN_DIR) -> None:
    """Small reference images for golden-vector fingerprint tests."""
    out_dir.mkdir(parents=True, exist_ok=True)

    # gradient.png: 256x256 RGB smooth two-axis gradient with a few circles
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    arr = np.stack([xx, yy, 255 - (xx + yy) / 2], axis=-1)
    img = to_img(arr)
    d = ImageDraw.Draw(img)
    for (cx, cy, r), col in [((70, 80, 36), (255, 255, 255)), ((180, 70, 24), (20, 20, 20)),
                             ((150, 180, 50), (230, 40, 40)), ((50, 200, 16), (30, 200, 90))]:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    img.save(out_dir / "gradient.png", "PNG", optimize=True)

    # photo.jpg: 320x240 JPEG q85, centre 4:3 crop of sunset-hills downscaled
    src = WORKS_DIR / "sunset-hills.jpg"
    with Image.open(src) as im:
        im = im.convert("RGB")
        cw = im.height * 4 // 3
        x0 = (im.width - cw) // 2
        photo = im.crop((x0, 0, x0 + cw, im.height)).resize((320, 240), Image.LANCZOS)
    photo.save(out_dir / "photo.jpg", "JPEG", quality=85)

    # palette.gif: 200x150 P-mode GIF, index 0 transparent
    pal = [0, 0, 0,  220, 50, 40,  40, 90, 200,  250, 200, 40,  30, 160, 90,  255, 255, 255]
    pal += [0] * (768 - len(pal))
    g = Image.new("P", (200, 150), 0)
    g.putpalette(pal)
    d = ImageDraw.Draw(g)
    d.rectangle([10, 10, 110, 90], fill=1)
    d.ellipse([80, 40, 190, 140], fill=2)
    d.polygon([(20, 140), (70, 60), (120, 140)], fill=3)
    for i in range(0, 200, 20):
        d.line([(i, 0), (i + 30, 30)], fill=4, width=3)
    d.rectangle([150, 8, 190, 30], fill=5)
    g.save(out_dir / "palette.gif", "GIF", transparency=0, optimize=False)

    # exif-rotated.jpg: 1200x800 pixels stored sideways with EXIF orientation 6 (exercises draft decode + rotate)
    with Image.open(WORKS_DIR / "sunset-hills.jpg") as im:
        sideways = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(out_dir / "exif-rotated.jpg", "JPEG", quality=60, exif=exif)

    # gray16.png: 16-bit greyscale (I;16) gradient with a dark disc
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    a16 = (xx * 400 + yy * 150).astype(np.uint16)
    a16[(xx - 80) ** 2 + (yy - 40) ** 2 < 400] = 3000
    Image.fromarray(a16).save(out_dir / "gray16.png")

    # cmyk.jpg: the gradient image as a CMYK JPEG
    Image.open(out_dir / "gradient.png").convert("CMYK").resize((160, 160)).save(out_dir / "cmyk.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-golden", action="store_true", help="skip provenance/golden/")
    args = ap.parse_args()
    make_works()
    make_feed()
    if not args.no_golden:
        make_golden()
    for p in sorted([*WORKS_DIR.iterdir(), *FEED_DIR.iterdir(), TRUTH_PATH]
                    + ([] if args.no_golden else sorted(GOLDEN_DIR.iterdir()))):
        print(f"{p.stat().st_size:>9,d}  {p.relative_to(REPO)}")


if __name__ == "__main__":
    main()
