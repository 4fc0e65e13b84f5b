"""Where Numba keeps the kernels' machine code (`_mih_kernel`, `_words_kernel`: `cache=True`, compiled once).

Numba keeps it beside the source (`__pycache__`) or in the user's cache folder (`~/.cache/numba`). A read-only
install run by a user with no writable home - a worker in a container with a read-only root file system, a
service account - has neither, and Numba then refuses `cache=True` when the kernel module is imported. There the
cache goes to this user's folder in the temporary directory instead (Numba's setting: for every cached function
this process compiles after). $NUMBA_CACHE_DIR, when set, is left alone."""
import functools
import os
import tempfile

import numba
from numba.core import config


@functools.cache  # each kernel module calls it; the probe runs once per process
def ensure_cache() -> None:
    """Point Numba's cache at the temporary directory if neither of its usual places can be written."""
    if config.CACHE_DIR:
        return
    try:
        numba.njit(cache=True)(_probe)  # Numba looks for a cache folder for this file when it is decorated
    except RuntimeError:
        config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"provenance-numba-{os.getuid()}")


def _probe():
    return 0
