"""Versioned, pure fingerprint functions.

Every stored value carries its algorithm id and version ("pdq/1"), so a ledger row written today stays
comparable after an upgrade: a new version gets a new id, and the old one is still computed for old rows.
The golden vectors in provenance/golden/ pin each version's output (see `selftest`).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageOps

from . import learned, local
from .imaging import Decoded, decode, trim_borders

#: The eight dihedral transforms, in the order pdqhash.compute_dihedral returns them. Each name says what was
#: done to the ORIGINAL to get a copy whose k-th variant matches it: variant k undoes transform k.
DIHEDRAL = (
    "none",
    "rotated 90° clockwise",
    "rotated 180°",
    "rotated 90° counter-clockwise",
    "flipped vertically",
    "flipped horizontally",
    "transposed (mirrored across the main diagonal)",
    "mirrored across the anti-diagonal",
)
# The Pillow transpose that maps a copy made by DIHEDRAL[k] back to the original (used for pHash variants).
_UNDO = (
    None,
    Image.Transpose.ROTATE_90,  # Pillow's ROTATE_90 is counter-clockwise
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)

SHA256 = "sha256/1"
PDQ = "pdq/1"  # pdqhash (Meta's reference C++) on the working image, longest side 512
PHASH = "phash/1"  # imagehash.phash (8x8 DCT of a 32x32 grey Lanczos thumbnail of the working image)
DHASH = "dhash/1"  # imagehash.dhash (horizontal gradient, 9x8 grey thumbnail of the working image)
PDQEQ = "pdqeq/1"  # PDQ of the histogram-equalised grey image (long side 256); quality 0 for blank images
ORB = local.ALGORITHM  # ORB keypoints + thumbnail of the working image; stored as a blob, its SHA-256 as value
#: The learned descriptor of the working image (`learned`): 128 signed bytes as hex. Stored at registration only: a
#: copy's vectors (in several views) are computed by the local stage when it searches by them.
LEARNED = learned.ALGORITHM
#: The same network's vector of the work's centre (learned.CENTRE), stored beside it: the local stage also shortlists
#: the works whose centres lie nearest a copy.
CENTRE = learned.CENTRE_ALGORITHM
ALGORITHMS = (SHA256, PDQ, PHASH, DHASH, PDQEQ, ORB, LEARNED, CENTRE)
BITS = {PDQ: 256, PHASH: 64, DHASH: 64, SHA256: 256, PDQEQ: 256}
#: Below this grey-level standard deviation an image is blank: equalising it would only amplify noise.
BLANK_STD = 3.0


@dataclass(frozen=True)
class Fingerprint:
    """One signal value. `algorithm` is "name/version"; `value` is lowercase hex."""

    algorithm: str
    value: str
    quality: int | None = None  # PDQ's 0-100 quality; hashes of flat images (quality < 50) are unreliable


@dataclass(frozen=True)
class InnerView:
    """The picture inside a uniform frame (letterbox, story canvas), hashed on its own for matching."""

    box: tuple[float, float, float, float]  # where it sits in the image, fractions (x0, y0, x1, y1)
    quality: int
    pdq_variants: tuple[str, ...]
    phash_variants: tuple[str, ...]


@dataclass(frozen=True)
class FingerprintSet:
    """All fingerprints of one image, plus the dihedral variants used on the query side of matching."""

    sha256: str
    width: int
    height: int
    format: str
    fingerprints: tuple[Fingerprint, ...]
    # Query-side only (not stored): 8 variants per signal, index k matches a copy made by DIHEDRAL[k].
    pdq_variants: tuple[str, ...] = field(default=(), repr=False)
    phash_variants: tuple[str, ...] = field(default=(), repr=False)
    pdqeq_variants: tuple[str, ...] = field(default=(), repr=False)
    inner: InnerView | None = field(default=None, repr=False)
    # Registration only: the encoded local features (orb/3); the ORB fingerprint's value is their SHA-256.
    local_features: bytes | None = field(default=None, repr=False)

    def get(self, algorithm: str) -> Fingerprint | None:
        return next((f for f in self.fingerprints if f.algorithm == algorithm), None)

    @property
    def pdq(self) -> Fingerprint:
        return self.get(PDQ)

    def stored(self) -> list[dict]:
        """The fingerprints as stored in the ledger: algorithm id, value, quality."""
        return [asdict(f) for f in self.fingerprints]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bits_to_hex(bits: np.ndarray) -> str:
    """A 0/1 array (most significant bit first) to hex; the encoding every stored hash uses."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def hex_to_bits(value: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8))


def hamming(a: str, b: str) -> int:
    """Hamming distance between two equal-length hex hashes."""
    return int.bit_count(int(a, 16) ^ int(b, 16))


def pdq_v1(image: Image.Image) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.asarray(image))
    return bits_to_hex(bits), int(quality)


def pdq_dihedral_v1(image: Image.Image) -> tuple[tuple[str, ...], int]:
    hashes, quality = pdqhash.compute_dihedral(np.asarray(image))
    return tuple(bits_to_hex(h) for h in hashes), int(quality)


def _grey32(image: Image.Image) -> Image.Image:
    # The exact thumbnail imagehash.phash builds, made once so the 8 variants cost 8 tiny DCTs.
    return image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)


def phash_v1(image: Image.Image) -> str:
    return str(imagehash.phash(_grey32(image)))


def phash_dihedral_v1(image: Image.Image) -> tuple[str, ...]:
    g = _grey32(image)
    return tuple(str(imagehash.phash(g if t is None else g.transpose(t))) for t in _UNDO)


def _equalised(image: Image.Image) -> np.ndarray | None:
    """The histogram-equalised grey image (long side 256, as RGB for pdqhash); None for a blank image."""
    grey = image.convert("L")
    if max(grey.size) > 256:
        grey = grey.resize((max(1, grey.width * 256 // max(grey.size)), max(1, grey.height * 256 // max(grey.size))),
                           Image.Resampling.BILINEAR)
    if np.asarray(grey, dtype=np.float32).std() < BLANK_STD:
        return None
    return np.asarray(ImageOps.equalize(grey).convert("RGB"))


def pdqeq_v1(image: Image.Image) -> tuple[str, int]:
    """PDQ of the histogram-equalised grey image: dark or low-contrast art gets hashes as informative as any.

    Blank images have nothing to equalise but noise, so their quality is 0 by definition (never matched).
    """
    equalised = _equalised(image)
    if equalised is None:
        return bits_to_hex(np.zeros(256)), 0
    bits, quality = pdqhash.compute(equalised)
    return bits_to_hex(bits), int(quality)


def pdqeq_dihedral_v1(image: Image.Image) -> tuple[tuple[str, ...], int]:
    """`pdqeq_v1` of the image in its 8 dihedral variants (the query side)."""
    equalised = _equalised(image)
    if equalised is None:
        return (bits_to_hex(np.zeros(256)),) * 8, 0
    hashes, quality = pdqhash.compute_dihedral(equalised)
    return tuple(bits_to_hex(h) for h in hashes), int(quality)


def dhash_v1(image: Image.Image) -> str:
    return str(imagehash.dhash(image))


def fingerprint_decoded(data: bytes, decoded: Decoded, *, variants: bool = False,
                        local_features: bool = True) -> FingerprintSet:
    """Fingerprints of already-decoded bytes, local features included.

    With `variants` (the query side), also the dihedral variants, and those of the picture inside a uniform
    frame when there is one. `local_features=False` skips the ORB blob and the learned vector, which only
    registration stores (the matcher computes its own when it needs them, from the image and its mirror).
    """
    im = decoded.image
    inner = None
    if variants and (trimmed := trim_borders(im)) is not None:
        inner_image, box = trimmed
        inner_pdq, inner_quality = pdq_dihedral_v1(inner_image)
        inner = InnerView(box, inner_quality, inner_pdq, phash_dihedral_v1(inner_image))
    if variants:
        pdq_vars, quality = pdq_dihedral_v1(im)
        pdq_value, ph_vars = pdq_vars[0], phash_dihedral_v1(im)
        ph_value = ph_vars[0]
        eq_vars, eq_quality = pdqeq_dihedral_v1(im)
        eq_value = eq_vars[0]
    else:
        (pdq_value, quality), ph_value, (eq_value, eq_quality) = pdq_v1(im), phash_v1(im), pdqeq_v1(im)
        pdq_vars, ph_vars, eq_vars = (), (), ()
    digest = sha256_bytes(data)
    blob = local.encode(local.extract(im)) if local_features else None
    vectors = [learned.to_hex(v) for v in learned.embed_work(im)] if local_features else None
    return FingerprintSet(
        sha256=digest,
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        fingerprints=(
            Fingerprint(SHA256, digest),
            Fingerprint(PDQ, pdq_value, quality),
            Fingerprint(PHASH, ph_value),
            Fingerprint(DHASH, dhash_v1(im)),
            Fingerprint(PDQEQ, eq_value, eq_quality),
            *((Fingerprint(ORB, sha256_bytes(blob)),) if blob is not None else ()),
            *((Fingerprint(LEARNED, vectors[0]), Fingerprint(CENTRE, vectors[1])) if vectors is not None else ()),
        ),
        pdq_variants=pdq_vars,
        phash_variants=ph_vars,
        pdqeq_variants=eq_vars,
        inner=inner,
        local_features=blob,
    )


def fingerprint(data: bytes, *, variants: bool = False) -> FingerprintSet:
    """Decode image bytes and compute every fingerprint. Raises ImageError for unusable input."""
    return fingerprint_decoded(data, decode(data), variants=variants)
