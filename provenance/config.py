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


def keys_dir() -> Path:
    return data_dir() / "keys"
