"""Small pictures of registered works, for the scan report and the evidence packet.

The signed ledger holds no image of a work, only its fingerprints. A preview (a JPEG, long side PREVIEW_SIDE, made
from the working image that registration already decoded) is kept beside it in the table

  previews   (work_id, mime, data): created on first use, so ledgers made before previews open unchanged

It is NOT part of any ledger entry and `ledger verify` does not check it: it is a convenience for people looking
at a report, never evidence (the evidence packet carries the found copy's bytes and the work's certificate, and a
preview only helps a person see what was matched). A private registration (`register --private`) stores none
until `reveal`, which would otherwise leak the image before the details are published. Works registered before
previews existed get a grey sketch from the thumbnail inside their `orb/3` (or `orb/2`) features (`picture`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import local
from .ledger import Ledger

#: Long side of a stored preview, in pixels.
PREVIEW_SIDE = 320
_TABLE = "CREATE TABLE IF NOT EXISTS previews (work_id INTEGER PRIMARY KEY, mime TEXT, data BLOB)"


@dataclass(frozen=True)
class Picture:
    """An image to show for a work: a stored preview, a grey sketch from its features, or nothing known."""

    mime: str
    data: bytes
    kind: str  # "preview" or "sketch"


def make_preview(image: Image.Image, side: int = PREVIEW_SIDE) -> bytes:
    """A JPEG of the (RGB) working image with its long side at most `side`."""
    im = image.copy()
    im.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=82)
    return out.getvalue()


def _ensure_table(ledger: Ledger) -> None:
    if not ledger.conn.has_table("previews"):
        with ledger.transaction() as c:
            c.create([_TABLE])


def store_preview(ledger: Ledger, work_id: int, data: bytes, mime: str = "image/jpeg") -> None:
    """Keep `data` as the preview of `work_id`, unless it has one already (a re-registration changes nothing)."""
    _ensure_table(ledger)
    with ledger.transaction() as c:
        c.execute("INSERT INTO previews (work_id, mime, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                  (work_id, mime, data))


def preview(ledger: Ledger, work_id: int) -> Picture | None:
    """The stored preview of `work_id`, if any."""
    if not ledger.conn.has_table("previews"):
        return None
    row = ledger.conn.execute("SELECT mime, data FROM previews WHERE work_id = ?", (work_id,)).fetchone()
    return Picture(row[0], row[1], "preview") if row else None


def picture(ledger: Ledger, work_id: int) -> Picture | None:
    """The preview of `work_id`; else a grey sketch from its feature thumbnail; else None (show a placeholder)."""
    found = preview(ledger, work_id)
    if found is not None:
        return found
    blob = ledger.local_features(*local.READABLE).get(work_id)
    if blob is None:
        return None
    try:
        features = local.decode(blob)
    except ValueError:
        return None
    h, w = features.size
    scale = 160 / max(h, w, 1)
    sketch = Image.fromarray(np.ascontiguousarray(features.thumb)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    sketch.save(out, format="JPEG", quality=80)
    return Picture("image/jpeg", out.getvalue(), "sketch")
