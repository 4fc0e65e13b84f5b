"""Tests for provenance.imaging: every pixel mode becomes the same RGB working image a person would see."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from provenance.fingerprints import hamming, pdq_v1
from provenance.imaging import WORK_SIDE, decode, load
from provenance.selftest import GOLDEN

WHITE = (255, 255, 255)


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def opened_mode(data: bytes) -> str:
    """The mode Pillow opens `data` in, so each test proves it exercises the path it is named for."""
    with Image.open(io.BytesIO(data)) as im:
        return im.mode


def near(pixel, expected, tol: int = 2) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


# --- transparency is flattened on white ------------------------------------------------------------------------

def test_golden_palette_gif_transparent_index_becomes_white_and_opaque_colours_stay():
    data = (GOLDEN / "palette.gif").read_bytes()
    with Image.open(io.BytesIO(data)) as src:
        assert src.mode == "P" and src.info["transparency"] == 0
        assert src.getpixel((195, 145)) == 0  # a background pixel: transparent index 0 ...
        assert src.getpalette()[:3] == [0, 0, 0]  # ... whose palette colour is black
        assert src.getpixel((30, 45)) == 1  # inside the red rectangle
    d = decode(data)
    assert d.image.mode == "RGB"
    assert d.image.getpixel((195, 145)) == WHITE
    assert d.image.getpixel((30, 45)) == (220, 50, 40)
    assert (d.format, d.width, d.height) == ("GIF", 200, 150)


def test_palette_png_with_per_index_alpha_is_composited_on_white():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (768 - 9))
    p.putpixel((1, 1), 1)
    p.putpixel((2, 2), 2)
    data = encode(p, "PNG", transparency=bytes([0, 128, 255]))  # index 0 clear, 1 half, 2 opaque
    assert opened_mode(data) == "P"
    im = decode(data).image
    assert im.getpixel((0, 0)) == WHITE
    assert near(im.getpixel((1, 1)), (255, 127, 127))
    assert im.getpixel((2, 2)) == (0, 0, 255)


def test_rgba_transparent_white_half_transparent_blended_opaque_kept():
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    im.putpixel((1, 1), (0, 0, 255, 255))
    im.putpixel((2, 2), (0, 0, 0, 128))
    out = decode(encode(im, "PNG")).image
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 1)) == (0, 0, 255)
    assert near(out.getpixel((2, 2)), (127, 127, 127))


def test_la_grey_with_alpha_flattened_on_white():
    im = Image.new("LA", (10, 10), (0, 0))  # transparent black
    im.putpixel((1, 1), (50, 255))
    data = encode(im, "PNG")
    assert opened_mode(data) == "LA"
    out = decode(data).image
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 1)) == (50, 50, 50)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_colour_key_transparency_is_flattened_like_alpha(mode):
    # PNG optimisers (oxipng, optipng) rewrite an RGBA image whose alpha is all-or-nothing as RGB or grey plus a
    # tRNS colour key. Both files show the same picture, so they must give the same working image.
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    for xy in [(3, 3), (4, 3), (8, 10)]:
        rgba.putpixel(xy, (200, 200, 200, 255))
    keyed = rgba.convert("RGB").convert(mode)
    keyed_data = encode(keyed, "PNG", transparency=(0, 0, 0) if mode == "RGB" else 0)
    assert opened_mode(keyed_data) == mode
    assert decode(keyed_data).image.getpixel((0, 0)) == WHITE
    assert np.array_equal(np.asarray(decode(keyed_data).image), np.asarray(decode(encode(rgba, "PNG")).image))


# --- other modes --------------------------------------------------------------------------------------------------

def test_cmyk_jpeg_converted_to_rgb():
    pure_red = decode(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert near(pure_red.image.getpixel((8, 8)), (255, 0, 0), tol=3)

    cmyk_data = (GOLDEN / "cmyk.jpg").read_bytes()
    assert opened_mode(cmyk_data) == "CMYK"
    cmyk = decode(cmyk_data)
    assert (cmyk.image.mode, cmyk.format, cmyk.width, cmyk.height) == ("RGB", "JPEG", 160, 160)
    # cmyk.jpg is gradient.png converted to CMYK: decoded back to RGB it must look the same.
    rgb = decode((GOLDEN / "gradient.png").read_bytes())
    assert hamming(pdq_v1(cmyk.image)[0], pdq_v1(rgb.image)[0]) <= 16


def test_16_bit_grey_scaled_to_8_bit():
    a = np.zeros((10, 40), np.uint16)
    a[:, 0:10], a[:, 10:20], a[:, 20:30] = 65535, 32768, 1000
    data = encode(Image.fromarray(a), "PNG")
    assert opened_mode(data) == "I;16"
    row = np.asarray(decode(data).image)[0]
    assert tuple(row[0]) == (255, 255, 255)
    assert all(abs(int(v) - 128) <= 1 for v in row[10])
    assert all(abs(int(v) - 4) <= 1 for v in row[20])  # 1000 / 257
    assert tuple(row[30]) == (0, 0, 0)


def test_golden_16_bit_png_decodes_with_its_dark_disc():
    data = (GOLDEN / "gray16.png").read_bytes()
    assert opened_mode(data) == "I;16"
    im = np.asarray(decode(data).image)
    # make_golden: value = 400 x + 150 y, with a disc of 3000 around (80, 40).
    assert abs(int(im[95, 127, 0]) - round((400 * 127 + 150 * 95) / 257)) <= 1
    assert abs(int(im[40, 80, 0]) - round(3000 / 257)) <= 1


def test_16_bit_scale_depends_on_bit_depth_not_on_content():
    dark = np.full((8, 8), 200, np.uint16)
    with_highlight = dark.copy()
    with_highlight[0, 0] = 65535
    a = np.asarray(decode(encode(Image.fromarray(dark), "PNG")).image)[4, 4]
    b = np.asarray(decode(encode(Image.fromarray(with_highlight), "PNG")).image)[4, 4]
    assert int(b[0]) <= 1  # 200 / 257
    assert tuple(a) == tuple(b)


def test_32_bit_integer_image_scaled():
    a = np.zeros((10, 40), np.int32)
    a[:, 0:10], a[:, 10:20], a[:, 30:40] = 65535, 32768, -5
    data = encode(Image.fromarray(a), "TIFF")
    assert opened_mode(data) == "I"
    row = np.asarray(decode(data).image)[0]
    assert tuple(row[0]) == WHITE
    assert abs(int(row[10][0]) - 128) <= 1
    assert tuple(row[20]) == (0, 0, 0)
    assert tuple(row[30]) == (0, 0, 0)  # negative values clip to black

    wide = np.zeros((10, 20), np.int32)
    wide[:, :10] = 1_000_000
    wide[:, 10:] = 500_000
    row = np.asarray(decode(encode(Image.fromarray(wide), "TIFF")).image)[0]
    assert tuple(row[0]) == WHITE  # beyond 16 bits: scaled to the image's own maximum
    assert abs(int(row[10][0]) - 128) <= 1


def test_bilevel_image():
    im = Image.new("1", (10, 10), 0)
    im.putpixel((1, 1), 1)
    data = encode(im, "PNG")
    assert opened_mode(data) == "1"
    out = decode(data).image
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 1)) == WHITE


@pytest.mark.parametrize("fmt, params", [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animation_uses_first_frame(fmt, params):
    frames = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    with Image.open(io.BytesIO(data)) as src:
        assert src.n_frames == 2
        src.seek(1)
        assert src.convert("RGB").getpixel((5, 5)) == (0, 0, 255)
    d = decode(data)
    assert (d.format, d.width, d.height) == (fmt, 40, 30)
    assert d.image.getpixel((5, 5)) == (255, 0, 0)


# --- EXIF orientation ---------------------------------------------------------------------------------------------

# Where the stored image's top-left (red) and top-right (blue) corners must be seen, from the EXIF 2.3 definition
# of each orientation value (e.g. 6: "the 0th row is the visual right side, the 0th column is the visual top").
ORIENTATIONS = {
    1: ("tl", "tr"), 2: ("tr", "tl"), 3: ("br", "bl"), 4: ("bl", "br"),
    5: ("tl", "bl"), 6: ("tr", "br"), 7: ("br", "tr"), 8: ("bl", "tl"),
}


def _corners(im: Image.Image) -> dict[str, tuple]:
    a = np.asarray(im)
    return {"tl": a[3, 3], "tr": a[3, -4], "bl": a[-4, 3], "br": a[-4, -4]}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_applied(orientation):
    stored = Image.new("RGB", (60, 40), WHITE)
    stored.paste((255, 0, 0), (0, 0, 12, 12))
    stored.paste((0, 0, 255), (48, 0, 60, 12))
    exif = Image.Exif()
    exif[0x0112] = orientation
    d = decode(encode(stored, "JPEG", quality=95, exif=exif))

    expected_size = (40, 60) if orientation >= 5 else (60, 40)
    assert (d.width, d.height) == expected_size
    assert d.image.size == expected_size
    red_at, blue_at = ORIENTATIONS[orientation]
    corners = _corners(d.image)
    assert near(corners[red_at], (255, 0, 0), tol=40)
    assert near(corners[blue_at], (0, 0, 255), tol=40)
    for name in {"tl", "tr", "bl", "br"} - {red_at, blue_at}:
        assert near(corners[name], WHITE, tol=40)


def test_golden_exif_rotated_jpeg_reports_display_size_and_looks_like_the_work(works_dir):
    data = (GOLDEN / "exif-rotated.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as src:
        assert src.size == (800, 1200) and src.getexif()[0x0112] == 6
    d = decode(data)
    assert (d.width, d.height) == (1200, 800)
    work = load(works_dir / "sunset-hills.jpg")  # the golden image is this work stored sideways
    assert d.image.size == work.image.size
    assert hamming(pdq_v1(d.image)[0], pdq_v1(work.image)[0]) <= 16


# --- the bounded working image ------------------------------------------------------------------------------------

WORK_SIZES = {  # examples/README.md
    "sunset-hills.jpg": (1200, 800), "brush-abstract.jpg": (880, 1100), "geometric-poster.png": (700, 1000),
    "figure-portrait.jpg": (768, 1024), "flow-field.png": (1000, 700), "tiled-mandala.png": (840, 840),
}


@pytest.mark.parametrize("name", sorted(WORK_SIZES))
def test_working_image_bounded_with_aspect_preserved_and_original_size_reported(works_dir, name):
    d = load(works_dir / name)
    w, h = WORK_SIZES[name]
    assert (d.width, d.height) == (w, h)
    assert d.format == ("JPEG" if name.endswith(".jpg") else "PNG")
    assert d.image.mode == "RGB"
    ww, wh = d.image.size
    assert max(ww, wh) == WORK_SIDE
    scale = WORK_SIDE / max(w, h)
    assert abs(ww - w * scale) <= 1 and abs(wh - h * scale) <= 1


def test_small_image_is_not_enlarged_and_work_side_is_honoured():
    data = (GOLDEN / "photo.jpg").read_bytes()
    assert decode(data).image.size == (320, 240)
    small = decode(data, work_side=100)
    assert small.image.size == (100, 75)
    assert (small.width, small.height) == (320, 240)


def test_jpeg_draft_decode_matches_full_decode(works_dir, monkeypatch):
    with Image.open(works_dir / "sunset-hills.jpg") as src:
        big = src.convert("RGB").resize((4800, 3200), Image.Resampling.BICUBIC)
    data = encode(big, "JPEG", quality=90)

    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    d = decode(data)
    monkeypatch.undo()

    # libjpeg really decoded at reduced scale (1/8 here), and still no smaller than the working size.
    assert drafted and drafted[0] == (600, 400)
    assert (d.width, d.height) == (4800, 3200)
    assert d.image.size == (512, 341)

    with Image.open(io.BytesIO(data)) as full:
        reference = full.convert("RGB")  # no draft: every pixel decoded at full size
    reference.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    assert reference.size == d.image.size
    assert hamming(pdq_v1(d.image)[0], pdq_v1(reference)[0]) <= 16
