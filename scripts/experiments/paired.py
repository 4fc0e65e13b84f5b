"""Two settings of the bounded local stage compared query by query at N works (docs/measurements.md, session 29):
each of first_look.py's queries (SOURCES works' copies, as many unrelated images; fingerprints computed beforehand)
is run under both settings in turn, the order alternating, with what the copy's query keeps (`Query.kept`, the
shrunk views) cleared before each run. The machine's speed drifts by up to 2x within an hour here; a paired
difference does not.

    paired.py OUT N SETTING     (OUT, N: as first_look.py; env SOURCES, ALL as there; ROUNDS (default 3))
    SETTING: first_ef    the first look's beam: EF_SEARCH (64) against vectorindex.FIRST_EF (env EF, default 32)
             threads     one thread against two (a core to spare)
             in_place    two threads: the first look on the pool's threads against on the calling one"""
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

SETTING = sys.argv.pop(3)
os.environ["REPS"] = "0"  # first_look.py prepares its queries and stops
first_look_py = Path(__file__).with_name("first_look.py")
exec(compile(first_look_py.read_text(), str(first_look_py), "exec"))  # noqa: S102 (its index, queries, helpers)
from provenance import _parallel, local, localindex  # noqa: E402

real_in_place, first_ef = localindex.in_place, V.FIRST_EF  # noqa: F821 (V: first_look.py's vectorindex)


def setting(ef=first_ef, pool=True, place=True):
    def apply():
        V.FIRST_EF = ef  # noqa: F821
        _parallel._in_pool = pool
        localindex.in_place = real_in_place if place else contextlib.nullcontext
    return apply


SETTINGS = {
    "first_ef": {f"ef {V.EF_SEARCH}": setting(ef=V.EF_SEARCH),  # noqa: F821
                 f"ef {os.environ.get('EF', 32)}": setting(ef=int(os.environ.get("EF", 32)))},
    "threads": {"one thread": setting(), "two threads": setting(pool=False)},
    "in_place": {"two, first look threaded": setting(pool=False, place=False),
                 "two, first look in place": setting(pool=False)},
}[SETTING]
names = list(SETTINGS)
copies = len(queries) - SOURCES  # noqa: F821


def run(k: int, q, name: str):
    SETTINGS[name]()
    if ALL:  # noqa: F821
        index.first_look = lambda q, k=k: first_looked(q, k)  # noqa: F821
        index._features.clear()  # noqa: F821
    q._kept = {}
    local._per_thread.kept = None
    t = time.perf_counter()
    found = index.match(q)  # noqa: F821
    return 1000 * (time.perf_counter() - t), [w for w, _ in found]


for k, q in enumerate(prepared):  # noqa: F821 (warm: blobs cached as scale.py's runs cache them)
    run(k, q, names[0])
for r in range(int(os.environ.get("ROUNDS", "3"))):
    ms, differ = {n: [] for n in names}, 0
    for k, q in enumerate(prepared):  # noqa: F821
        out = {n: run(k, q, n) for n in (names if (k + r) % 2 == 0 else names[::-1])}
        for n in names:
            ms[n].append(out[n][0])
        differ += out[names[0]][1] != out[names[1]][1]
    for part, rows in (("copies", slice(0, copies)), ("unrelated", slice(copies, None))):
        a, b = np.array(ms[names[0]][rows]), np.array(ms[names[1]][rows])
        print(f"round {r} {part}: {names[0]} {np.median(a):.2f} / {names[1]} {np.median(b):.2f} ms p50, means"
              f" {a.mean():.2f} / {b.mean():.2f}, paired difference p50 {np.median(b - a):+.3f}", flush=True)
    print(f"  answers differ for {differ} of {len(prepared)}", flush=True)  # noqa: F821
