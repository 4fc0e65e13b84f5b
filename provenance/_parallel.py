"""Run a per-file function over both cores, results in input order, with an in-process path for small jobs."""
from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def imap(func: Callable[[T], R], items: Iterable[T], workers: int | None = None,
         initializer: Callable | None = None, initargs: tuple = (), count: int | None = None) -> Iterator[R]:
    """`map(func, items)` on `workers` processes (default: every usable core).

    Jobs too small to pay for starting processes run here. `func` must catch its own errors: one bad item
    must come back as a result, never end the batch. With `count` (the number of items), `items` may be a lazy
    iterator (e.g. downloads in progress): it is consumed as the workers take jobs, after they have started.
    """
    if count is None:
        items = list(items)
        count = len(items)
    workers = workers or default_workers()
    if workers <= 1 or count < 4 * workers:
        if initializer:
            initializer(*initargs)
        yield from map(func, items)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer, initargs) as pool:
        yield from pool.imap(func, items, chunksize=2)
