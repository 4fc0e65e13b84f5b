"""Scan images for copies of registered works."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._parallel import imap
from .errors import ImageError
from .fingerprints import ORB, fingerprint_decoded
from .imaging import decode, read_bytes
from .index import Index, open_index
from .ledger import Ledger
from .matching import Match, find_matches
from .registration import Batch
from .sources import collect_files, display


@dataclass(frozen=True)
class ScanResult:
    """One scanned item: its matches (possibly none), or the error that kept it from being checked."""

    item: str
    sha256: str | None = None
    matches: list[Match] = field(default_factory=list)
    error: str | None = None


_index: Index | None = None  # per worker process, set by _init (workers are forked: the mapped files are shared)


def _init(index: Index) -> None:
    global _index
    _index = index


def _scan_file(path: Path) -> ScanResult:
    try:
        data = read_bytes(path)
        decoded = decode(data)
        fps = fingerprint_decoded(data, decoded, variants=True, local_features=False)
        return ScanResult(display(path), fps.sha256, find_matches(fps, _index, decoded.image))
    except ImageError as e:
        return ScanResult(display(path), error=e.message)
    except Exception as e:  # never let one file end the batch
        return ScanResult(display(path), error=f"unexpected error: {type(e).__name__}: {e}")


def scan(ledger: Ledger, paths: list[str | Path], *, workers: int | None = None) -> Batch:
    """Check every image under `paths` against every registered work. Results come in input order."""
    files, source_errors = collect_files(paths)
    index = open_index(ledger)
    index.local_blobs = ledger.local_features(ORB)

    def run():
        for e in source_errors:
            yield ScanResult(e.item, error=e.error)
        yield from imap(_scan_file, files, workers, initializer=_init, initargs=(index,))

    return Batch(len(files) + len(source_errors), run())
