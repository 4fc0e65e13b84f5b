"""A learned descriptor: 128 numbers per picture that crops, captions, frames, small rotations, colour changes and
recompression move little (`learned/1`), so that the few works a copy can be of are found among a million by a
vector search instead of by visual words.

It ranks; it does not decide. Two unrelated pictures of the same kind (two dark wallpapers) can lie as close as a
work and its cropped copy, so a shortlist found this way is verified by the local stage's keypoints and pixel check,
exactly as the visual words' shortlist is.

The network is small (eight 3x3 convolutions, GeM pooling, a linear head: 0.69 M parameters, 96x96 input) and was
trained on this project's machine (scripts/experiments/learned/: InfoNCE with SSCD's KoLeo term, on 5,927 pictures
from Debian art packages the dev corpus does not use, under the family of changes a repost makes). It ships as ONNX
(`data/descriptor-1.onnx`, pinned by its SHA-256) and runs in OpenCV's DNN module, which the library already has:
~2.5 ms a picture on one core (1.7 of them the network). A new network is a new version (`learned/2`), never a
changed file.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import ProvenanceError

ALGORITHM = "learned/1"
#: The same network's vector of the work's centre: the middle CENTRE of its width and height. A crop keeps the middle
#: of a picture more often than its edges, and a copy cropped by a quarter, or cropped and captioned, lies nearer its
#: work's centre than its whole (benchmarks/scale.py's copies at 1 M works: the true work within the exact search's
#: best 20 by the whole 978 / 1,000, by the centre 1,000; docs/measurements.md, session 25).
CENTRE_ALGORITHM = "centre/1"  # learned/1's network; a new network, a new version
CENTRE = 0.8
MODEL_FILE = Path(__file__).resolve().parent / "data" / "descriptor-1.onnx"
MODEL_SHA256 = "468d27563e1aceda396ef2ae7aed3ef454dc552cb39fa30516a8012d838ca0da"
DIM = 128
#: The picture as the network was trained on it: squashed to 128x128, then 96x96 (bilinear, antialiased: Pillow's,
#: as torch's `antialias=True` is). Training squashed a 256-pixel Lanczos thumbnail of the file; squashing the
#: working image directly gives the same vectors (cosine >= 0.9998 on 80 dev corpus pictures) in a third of the time.
SOURCE_SIDE, SIDE = 128, 96
#: Stored as signed bytes: each coordinate of the unit vector times 127, rounded. Cosines of stored vectors differ
#: from the float ones by < 0.002.
SCALE = 127

_per_thread = threading.local()  # cv2.dnn.Net keeps buffers per forward pass: one per thread


def _net() -> cv2.dnn.Net:
    net = getattr(_per_thread, "net", None)
    if net is None:
        data = MODEL_FILE.read_bytes()
        if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
            raise ProvenanceError(f"{MODEL_FILE} is not the {ALGORITHM} network (its SHA-256 differs)",
                                  hint="reinstall provenance")
        net = _per_thread.net = cv2.dnn.readNetFromONNX(str(MODEL_FILE))
    return net


def _source(image) -> Image.Image:
    im = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)[..., :3])
    return im.resize((SOURCE_SIDE, SOURCE_SIDE), Image.Resampling.BILINEAR)


def centre(image) -> Image.Image:
    """The middle CENTRE of an RGB picture's width and height (Pillow image or array), as a Pillow image."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)[..., :3])
    w, h = im.size
    dx, dy = round(w * (1 - CENTRE) / 2), round(h * (1 - CENTRE) / 2)
    return im.crop((dx, dy, w - dx, h - dy))


def _input(source: Image.Image) -> np.ndarray:
    a = np.asarray(source.resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32) / 255
    return a.transpose(2, 0, 1)


#: The eight dihedral views of a copy's square source, as numpy index operations on (channel, y, x): a copy that was
#: rotated by a multiple of 90 degrees or mirrored has one view that looks like its work.
_DIHEDRAL = (
    lambda a: a, lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, :], lambda a: a[:, ::-1, ::-1],
    lambda a: a.transpose(0, 2, 1), lambda a: a[:, :, ::-1].transpose(0, 2, 1),
    lambda a: a[:, ::-1, :].transpose(0, 2, 1), lambda a: a[:, ::-1, ::-1].transpose(0, 2, 1),
)


def embed(image, views: int = 1) -> np.ndarray:
    """Unit vectors (views, DIM) of an RGB picture (Pillow image or array): the first `views` of its dihedral views
    (1: as it is; 2: and mirrored left-right; 8: every rotation by 90 degrees and mirror)."""
    x = _input(_source(image))
    return _forward([f(x) for f in _DIHEDRAL[:views]])


def embed_work(image) -> np.ndarray:
    """A work's two unit vectors (2, DIM), in one pass of the network: as it is (ALGORITHM) and its centre
    (CENTRE_ALGORITHM)."""
    return _forward([_input(_source(image)), _input(_source(centre(image)))])


def _forward(inputs: list[np.ndarray]) -> np.ndarray:
    """The network's unit vectors (len(inputs), DIM) of network inputs (`_input`), in one pass."""
    net = _net()
    net.setInput(np.ascontiguousarray(np.stack(inputs)))
    out = net.forward().astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def quantise(v: np.ndarray) -> np.ndarray:
    """Unit vectors as signed bytes (SCALE)."""
    return np.clip(np.rint(v * SCALE), -127, 127).astype(np.int8)


def to_hex(v: np.ndarray) -> str:
    """The stored value of one unit vector: its signed bytes, as hex."""
    return quantise(v).tobytes().hex()


def readable(value: str | None) -> bool:
    """Whether a stored value is DIM bytes as hex. Only a tampered ledger holds another: the scan treats its work as
    one without a vector (as works from before learned/1), and `ledger verify` names it."""
    if value is None or len(value) != 2 * DIM:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def from_hex(value: str) -> np.ndarray:
    """A stored value back as a unit vector (float32)."""
    v = np.frombuffer(bytes.fromhex(value), np.int8).astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)
