"""Golden-vector check: every fingerprint algorithm must reproduce the values stored in golden/vectors.json.

A dependency upgrade (Pillow's resampling, libjpeg's IDCT, pdqhash) can silently change hashes and make new
scans miss old registrations; this catches it. Regenerate, only for a deliberate new algorithm version, with
`python -m provenance.selftest --regenerate`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from . import learned
from .errors import ProvenanceError, SelftestError
from .fingerprints import ALGORITHMS, fingerprint

GOLDEN = Path(__file__).parent / "golden"
VECTORS = GOLDEN / "vectors.json"
#: learned/1 and centre/1 are checked by the cosine of the stored and computed vectors, not byte for byte: the same network on
#: another machine differs by ~1e-7 before rounding to bytes (cosine > 0.9999), a changed one by far more.
LEARNED_MIN_COSINE = 0.999


@dataclass(frozen=True)
class Check:
    image: str
    algorithm: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        if self.algorithm in (learned.ALGORITHM, learned.CENTRE_ALGORITHM) and self.expected and self.actual:
            # A network's output is floating point: another CPU's vector units may round a byte the other way.
            return float(learned.from_hex(self.expected) @ learned.from_hex(self.actual)) >= LEARNED_MIN_COSINE
        return self.expected == self.actual


def _compute(path: Path) -> dict[str, str]:
    fps = fingerprint(path.read_bytes())
    out = {f.algorithm: f.value for f in fps.fingerprints}
    out["size"] = f"{fps.width}x{fps.height}"
    out["pdq/1:quality"] = str(fps.pdq.quality)
    return out


def run() -> list[Check]:
    """Every (image, algorithm) check. Raises SelftestError if any value differs or an algorithm is untested."""
    vectors = json.loads(VECTORS.read_text())
    checks = []
    for name, expected in sorted(vectors.items()):
        try:
            actual = _compute(GOLDEN / name)
        except (OSError, ProvenanceError) as e:
            reason = e.message if isinstance(e, ProvenanceError) else (e.strerror or str(e))
            raise SelftestError(f"golden image {name} cannot be read: {reason}",
                                hint="the installation is damaged; reinstall provenance") from None
        checks += [Check(name, alg, value, actual.get(alg, "")) for alg, value in sorted(expected.items())]
    untested = set(ALGORITHMS) - {c.algorithm for c in checks}
    if untested:
        raise SelftestError(f"no golden vectors for {', '.join(sorted(untested))}")
    bad = [c for c in checks if not c.ok]
    if bad:
        lines = "; ".join(f"{c.image} {c.algorithm}: expected {c.expected}, got {c.actual}" for c in bad)
        raise SelftestError(f"{len(bad)} of {len(checks)} golden vectors differ: {lines}",
                            hint="a dependency changed its output; pin it back or version the algorithm")
    return checks


def regenerate() -> None:
    vectors = {p.name: _compute(p) for p in sorted(GOLDEN.iterdir()) if p.suffix != ".json"}
    VECTORS.write_text(json.dumps(vectors, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate"]:
        regenerate()
    print(f"{len(run())} golden vectors OK")
