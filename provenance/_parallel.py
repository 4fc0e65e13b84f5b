"""Run a per-file function over both cores, results in input order, with an in-process path for small jobs; and the
threads one query may use beside it."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_in_pool = False  # set in imap's worker processes: the batch already keeps every core busy
_executors: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, threads): a forked child has no parent threads
_POOL_THREAD = "provenance-pool"  # the executors' thread names start with it: thread_map runs in place there
_here = threading.local()  # .depth: how many `in_place` blocks this thread is in


def threads() -> int:
    """Threads one task may use: every usable core, except in imap's worker processes (one each)."""
    return 1 if _in_pool else default_workers()


def executor(count: int) -> ThreadPoolExecutor:
    """A pool of `count` threads of this process, kept for its lifetime."""
    key = (os.getpid(), count)
    if key not in _executors:
        _executors[key] = ThreadPoolExecutor(count, thread_name_prefix=_POOL_THREAD)
    return _executors[key]


def thread_map(func: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`list(map(func, items))`, on one thread per item up to `threads()`: for calls into compiled code that
    releases the GIL (OpenCV, faiss, the Numba kernels). Called from one of those threads, it runs here: a pool
    thread waiting for the pool's other threads could wait for ever."""
    items = list(items)
    count = min(len(items), threads())
    if count <= 1 or getattr(_here, "depth", 0) or threading.current_thread().name.startswith(_POOL_THREAD):
        return [func(x) for x in items]
    return list(executor(count).map(func, items))


@contextlib.contextmanager
def in_place():
    """Within this block, `thread_map` runs its items on the calling thread: for work too small to pay for handing
    it to the pool's threads and back."""
    _here.depth = getattr(_here, "depth", 0) + 1
    try:
        yield
    finally:
        _here.depth -= 1


def _worker(initializer: Callable | None, initargs: tuple) -> None:
    global _in_pool
    _in_pool = True
    if initializer:
        initializer(*initargs)


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
    with multiprocessing.get_context("fork").Pool(workers, _worker, (initializer, initargs)) as pool:
        yield from pool.imap(func, items, chunksize=2)
