"""Where provenance keeps its files: one data directory (XDG), overridable per call or by environment."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """$PROVENANCE_HOME, else $XDG_DATA_HOME/provenance, else ~/.local/share/provenance."""
    if os.environ.get("PROVENANCE_HOME"):
        return Path(os.environ["PROVENANCE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "provenance"


def ledger_path(explicit: str | os.PathLike | None = None) -> Path:
    """The ledger file: the explicit path, else $PROVENANCE_LEDGER, else DATA_DIR/ledger.db."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("PROVENANCE_LEDGER"):
        return Path(os.environ["PROVENANCE_LEDGER"]).expanduser()
    return data_dir() / "ledger.db"


def ledger_target(db: str | None = None, ledger: str | os.PathLike | None = None) -> Path | str:
    """Where the ledger lives: --db (a postgresql:// URL, or a file), else --ledger, else $PROVENANCE_DB, else
    $PROVENANCE_LEDGER, else DATA_DIR/ledger.db. A URL is returned as it is, a path expanded."""
    from .storage import is_url

    chosen = db or ledger or os.environ.get("PROVENANCE_DB") or None
    if chosen and is_url(str(chosen)):
        return str(chosen)
    return ledger_path(chosen)


def keys_dir() -> Path:
    return data_dir() / "keys"
