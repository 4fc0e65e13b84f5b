"""What to read: the files under the paths a user names, recursively, recognised later by content."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def display(path: str | Path) -> str:
    """A path as printable UTF-8 text. Linux file names may be any bytes; undecodable ones become U+FFFD."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class SourceError:
    item: str
    error: str


def collect_files(paths: list[str | Path]) -> tuple[list[Path], list[SourceError]]:
    """Every regular file under `paths` in a stable order, and one error per path or folder that can't be read.

    Hidden files and folders (".name") are skipped: they are tool state (.DS_Store, .git), not posts.
    Extensions are ignored on purpose: reposted images often carry the wrong one, or none.
    """
    files: list[Path] = []
    errors: list[SourceError] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            def onerror(e: OSError) -> None:
                errors.append(SourceError(display(e.filename), f"cannot list folder: {e.strerror}"))

            for root, dirs, names in os.walk(p, onerror=onerror):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(n for n in names if not n.startswith(".")):
                    f = Path(root) / name
                    if f.is_file():  # a FIFO or device would block the batch on read
                        files.append(f)
                    else:
                        errors.append(SourceError(display(f), "not a regular file"))
        elif not p.exists():
            errors.append(SourceError(display(p), "no such file or folder"))
        else:
            errors.append(SourceError(display(p), "not a regular file or folder"))
    return files, errors
