"""Safe, fast decoding of untrusted image bytes into a bounded RGB working image.

Everything perceptual is computed on the working image (longest side at most WORK_SIDE), as Meta's PDQ
reference does: hashing a 4000 px original costs 25x more and gives the same bits.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

#: Images with more pixels than this are refused before any pixel is decoded (decompression bombs).
MAX_PIXELS = 150_000_000
#: Files larger than this are refused before they are read.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Longest side of the working image every perceptual signal is computed from.
WORK_SIDE = 512

# Without this a truncated JPEG decodes "successfully" into grey; we want the error.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own bomb limit (~89 Mpx) would refuse legitimate large scans below ours; ours is checked first anyway.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class Decoded:
    """The working image plus what we know of the original."""

    image: Image.Image  # RGB, longest side <= WORK_SIDE, EXIF orientation applied, alpha flattened on white
    width: int  # original size, after orientation
    height: int
    format: str  # "JPEG", "PNG", ... as detected from the bytes


def read_bytes(path: str | Path) -> bytes:
    """Read a file with the size cap, turning OS errors into one-line ImageErrors."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,} byte limit")
        return p.read_bytes()
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None


def decode(data: bytes, work_side: int = WORK_SIDE) -> Decoded:
    """Decode image bytes (any format Pillow reads, recognised by content) into a Decoded working image.

    Raises ImageError with a short reason for empty, unrecognised, truncated, corrupt or oversized input.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > MAX_PIXELS or width <= 0 or height <= 0:
                raise ImageError(
                    f"image is {width}x{height} = {width * height:,} pixels, over the {MAX_PIXELS:,} pixel limit"
                    " (possible decompression bomb)")
            fmt = im.format or "unknown"
            orientation = im.getexif().get(0x0112, 1)
            if fmt == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: most of the speed-up of the whole pipeline.
                # draft() keeps both sides >= the request, so ask for the working size in this aspect ratio.
                scale = work_side / max(width, height)
                im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised content)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"over Pillow's decompression-bomb limit") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = "truncated or incomplete image data"
        raise ImageError(f"corrupt image: {reason}") from None
    except Exception as e:  # a decoder plug-in bug must not end the batch
        raise ImageError(f"cannot decode: {type(e).__name__}: {e}") from None

    if orientation in (5, 6, 7, 8):
        width, height = height, width
    im = ImageOps.exif_transpose(im) if orientation != 1 else im
    im = to_rgb(im)
    if max(im.size) > work_side:
        im.thumbnail((work_side, work_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Decoded(image=im, width=width, height=height, format=fmt)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency flattened on white, 16/32-bit and float scaled, CMYK converted."""
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        im = im.convert("RGBA")  # palette transparency and PNG colour keys alike
    if im.mode.startswith("I;16"):
        a = np.asarray(im, dtype=np.float64) * (255.0 / 65535.0)  # by bit depth, never by content
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif im.mode in ("I", "F"):
        # 32-bit int and float images carry no declared range: 16-bit data in "I", 0..1 or 0..255 in "F".
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 0
        if hi > 65535:
            scale = 255.0 / hi
        else:
            scale = 255.0 / 65535.0 if hi > 255 else 255.0 if im.mode == "F" and hi <= 1.0 else 1.0
        im = Image.fromarray(np.clip(a * scale, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def load(path: str | Path, work_side: int = WORK_SIDE) -> Decoded:
    """read_bytes + decode."""
    return decode(read_bytes(path), work_side)


def trim_borders(image: Image.Image, tolerance: int = 14, min_fraction: float = 0.02
                 ) -> tuple[Image.Image, tuple[float, float, float, float]] | None:
    """Remove a uniform frame (letterbox bars, a story canvas, a passe-partout) around the picture.

    The frame colour is the median of the four corners; a row or column belongs to the picture once more than
    `min_fraction` of its pixels differ from it by more than `tolerance` grey levels. Returns the inner image and
    its box as fractions of the image (x0, y0, x1, y1), or None when there is no frame worth removing.
    """
    g = np.asarray(image.convert("L"), dtype=np.int16)
    h, w = g.shape
    frame = np.median([g[0, 0], g[0, -1], g[-1, 0], g[-1, -1]])
    differs = np.abs(g - frame) > tolerance
    rows = np.flatnonzero(differs.mean(axis=1) > min_fraction)
    cols = np.flatnonzero(differs.mean(axis=0) > min_fraction)
    if not len(rows) or not len(cols):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (y1 - y0) * (x1 - x0) > 0.92 * h * w or y1 - y0 < 16 or x1 - x0 < 16:
        return None  # no frame, or too little left to be a picture
    return image.crop((x0, y0, x1, y1)), (x0 / w, y0 / h, x1 / w, y1 / h)
