"""The learned shortlist: the bounded local stage finds the few works a copy may be of by the works' `learned/1`
vectors (see `learned`), instead of by visual words (`localindex.WordIndex`).

A copy is embedded in VIEWS views (as it is, mirrored, and turned by 90, 180 and 270 degrees: the network, unlike
ORB, is not rotation-invariant), and the SHORTLIST works nearest any view by cosine are verified by
local.LocalIndex, exactly as the words' shortlist is: the vectors rank, the keypoints and the pixel check decide.
Finding them costs about the same at any registry size that fits: one faiss search of VIEWS vectors (the
turned views with a smaller beam, EF_TURNED). The works' centres (`centre/1`, the network's vector of a work's
middle) add the CENTRED works nearest them: a crop keeps a work's middle.

Most copies are found at a first look (`first_look`): the FIRST works nearest the copy as it is, and the work whose
centre lies nearest it, verified by their plain keypoints. Only when that finds nothing are the other views searched
and the whole shortlist verified: a copy's cost is then that of the few works it is likely of, whatever the size of
the registry; an image of no registered work pays for the whole shortlist, as before.

Used by `localindex.attach` when every work with local features has a vector (works registered since learned/1
shipped); a ledger holding older works keeps the visual words, which need only the ORB blobs.

Files (`ledger.db.index/vectors/`): the works' ids and vectors (signed bytes, appended as works are registered),
above GRAPH_MIN works a faiss HNSW graph (Malkov & Yashunin 2016) over the first `sealed` of them, its vectors
scalar-quantised (128 bytes a work, ~128 more for its links at M = 16), and a manifest with the ledger entry it
covers, the network's SHA-256 and every file's SHA-256. Works past `sealed` (at most DELTA_MAX) are added to the
graph in memory when it is first searched; past that they are added to the file, and the graph is built anew once
the works have grown RETRAIN times since its quantiser was trained. Missing, corrupt or stale files are rebuilt from
the ledger's fingerprint rows. The works' centres are kept the same way in `vectors/centre/` (works registered
before centre/1 have none there).

Why a graph: benchmarks/scale.py at 100k works (1,000 copies, the true work within the exact search's best 10 for
994): an IVF of 1,024 lists found 989 / 993 searching 32 / 64 lists per view (0.5 / 0.9 ms for the 8 views), and
an IVF's cost grows with the works per list; the graph found 994 at efSearch 64 (0.8 ms), its cost growing with
the logarithm of the works (docs/measurements.md, session 22; scripts/experiments/vector_ann.py).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import numpy as np

from . import learned, local
from .index import clear_folder, sha256_of, valid_manifest
from .localindex import Shortlisted, in_folder, write_manifest

FORMAT = "provenance-vectorindex/2"  # /2: an HNSW graph instead of an IVF
#: The copy's views searched: the first VIEWS of learned.embed's eight (8: every rotation by 90 degrees, mirrored
#: or not; a crop turned on its side is found, as ORB would find it).
VIEWS = 8
#: Works verified per copy. benchmarks/scale.py's copies (crops of 10 % and 25 %, a 5-degree rotation, a captioned
#: crop; up to 8 registered edits of each work) at 300k works: the exact search puts the true work within the best
#: 10 / 20 / 40 for 978 / 994 / 994 of 1,000, the graph (then: EF_SEARCH 64 / 128, EF_CONSTRUCTION 40) within 10
#: for 971 / 977, within 20 for 982 / 990 (1.4 ms for the 8 views at 128). Dev corpus at 998 works: 10 and 20 find
#: the same copies (442 / 443 of the 566 the global stage leaves), 20 costs ~3 ms more.
SHORTLIST = 20
#: The best PREFER of them are verified whatever their keypoints' votes: the verification otherwise picks the works
#: whose descriptors the copy's keypoints vote for most, and a family of similar works can outvote the right one.
PREFER = 1
GRAPH_MIN = 20_000  # works; fewer are searched exactly
GRAPH_M = 16  # links per node (twice that on the bottom layer)
#: Candidates the search keeps per upright view. benchmarks/scale.py's 1,000 copies at 1 M works, with the
#: centres (true work shortlisted, graphs built with EF_CONSTRUCTION 100): 128 / 96 / 64 1,000 each; 64 with the
#: turned views at 16 and EF_UNBANDED, EF_CENTRED at 32: 999 (scripts/experiments/shortlist_beams.py).
EF_SEARCH = 64
#: ... for the views turned by 90, 180 or 270 degrees (the first UPRIGHT views, as it is and mirrored, keep
#: EF_SEARCH). A repost is nearly always upright; one turned on its side and also cropped is rare (turned whole, the
#: global stage's dihedral hashes find it). benchmarks/scale.py's copies at 1 M works (1,000; true work
#: within the best 20): every view at 128 969 in 5.0 ms p50, turned views at 32 970 in 2.2 ms; the same copies
#: turned by 90 degrees (their view searched at 32) 942 (scripts/experiments/turned_beam.py).
EF_TURNED = 32
UPRIGHT = 2
#: A copy with flat bands over its edges (a caption bar, a letterbox, a story canvas: local.bands) is also embedded
#: without them, as it is and mirrored, and the UNBANDED works nearest those views join the shortlist (searched with
#: EF_UNBANDED). The network was trained with such bands but still places a captioned crop further from its work
#: than a plain one. benchmarks/scale.py's copies at 1 M works, true work shortlisted (exact search, best 20 / and 5
#: more without the bands): 975 / 982; captioned crops 228 / 235; the graph: 970 / 977 (the turned views at 32).
UNBANDED, EF_UNBANDED = 5, 64
#: The CENTRED works whose centres (centre/1: learned.CENTRE) lie nearest the copy's upright views, with and without
#: its bands, also join the shortlist (searched with EF_CENTRED in a graph of their own, `vectors/centre/`). A crop
#: keeps a work's middle, and a copy cropped by a quarter, or cropped and captioned, lies nearer its work's centre
#: than its whole. benchmarks/scale.py's copies at 1 M works (exact search; the centres of 100k works sampled):
#: true work within the best 20 by the whole 984 / 1,000, or the nearest by its centre 1,000; the dev
#: corpus's 1,988 copies among the same: 1,980 / 1,983 (docs/measurements.md, session 25). Works registered before
#: centre/1 have no centre and are found by their whole only.
CENTRED, EF_CENTRED = 3, 64
#: A copy's FIRST works nearest it (as it is: FIRST_VIEWS) and the work whose centre lies nearest it are verified
#: first, by their plain keypoints alone; only if that finds nothing are the rest searched for (its mirrored and
#: turned views, its views without its bands) and the whole shortlist verified as local.LocalIndex verifies
#: (`first_look`). A copy's own work is nearly always among the first, and verifying costs in proportion to the
#: works' keypoints. benchmarks/scale.py at 1 M works, one thread: 9.9 -> 5.3 ms p50 for the local stage (995 / 995
#: found either way); with every shortlisted work's blob verified, 11.1 ms for a copy against 21.7 - 29.2 for the
#: whole shortlist (scripts/experiments/first_look.py ALL=1), an unrelated image ~60 either way.
FIRST = 4
#: The first look searches the copy as it is only (FIRST_VIEWS 1), not mirrored too (2): its keypoints are matched
#: both ways round anyway, and the vectors of a mirrored crop still rank its work among the first. The 400 copies
#: of 100 works at 1 M (scripts/experiments/first_look.py, alternating, one thread): 1 view 4.0 - 4.7 ms p50, 2 views
#: 5.0 - 6.1; the same copies mirrored 4.6 / 4.8; 395 found either way.
FIRST_VIEWS = 1
#: The first look's beam (both graphs); the whole shortlist searches those views again at EF_SEARCH and EF_CENTRED,
#: so it is the same as without a first look. The 400 copies of 100 works at 1 M (one thread, each copy run under
#: both settings in turn, alternating: scripts/experiments/paired.py first_ef): 64 -> 32 saves 0.35 - 0.51 ms p50 a
#: copy, 24 0.44 - 0.52, 16 0.62 - 0.76 but names other works for 2 copies; 32 and 24 the same answers for all 500
#: queries.
#: An image the first look does not find pays one more search of each graph (+0.26 - 0.47 ms).
FIRST_EF = 32
#: When the first look finds a match, the other works found so far whose vectors lie within FAMILY_COSINE of a found
#: work's are verified too: a registered edit of the copied work is named beside it, as the whole shortlist's
#: verification would name it.
#: benchmarks/scale.py's real works: a work and its registered edit (a small shape added) 0.881 at the 1st
#: percentile, 0.814 the least; a work and the nearest real work not its edit 0.758 at the 95th, 0.858 the most.
FAMILY_COSINE = 0.85
#: The candidates each work's links are chosen from as it joins the graph. At 40 the graph lost works the exact
#: search ranks first: at 1 M works a captioned crop whose work's centre is the nearest of all (cosine 0.912, the
#: next 0.856) was not found at efSearch 128 (0.741 returned), only at 256. At 100, the true work of each of
#: scale.py's 1,000 copies is shortlisted (999 at 40), and the two graphs take 344 s each to build on 2 cores (~136).
EF_CONSTRUCTION = 100
DELTA_MAX = 16_384
RETRAIN = 4
TRAIN_SAMPLE = 100_000  # vectors the quantiser's ranges are trained on


def unit(vectors: np.ndarray) -> np.ndarray:
    """Stored signed-byte vectors as float32 unit vectors."""
    v = np.asarray(vectors, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class Vectors:
    """The works' vectors of one algorithm (learned/1 or centre/1), searched by faiss."""

    def __init__(self, folder: Path, m: dict):
        self.folder, self.manifest = folder, m
        self.ids = np.fromfile(folder / "ids", np.int32, m["rows"])
        self._index, self._index_pid = None, None

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self):
        state = dict(super().__getstate__())  # VectorIndex: Shortlisted's (without its connection)
        state["_index"], state["_index_pid"] = None, None  # a faiss index is built again in each process
        return state

    def vectors(self) -> np.ndarray:
        """The stored vectors, (works, DIM) signed bytes, memory-mapped."""
        return np.memmap(self.folder / "vectors", np.int8, "r", shape=(self.manifest["rows"], learned.DIM)) \
            if self.manifest["rows"] else np.zeros((0, learned.DIM), np.int8)

    def search_index(self):
        """The faiss index (built or read on first use in each process): exact below GRAPH_MIN works, a graph above."""
        if self._index is None or self._index_pid != os.getpid():
            import faiss

            faiss.omp_set_num_threads(1)
            m = self.manifest
            if m["sealed"]:
                index = faiss.read_index(str(self.folder / "graph"))
                rest = self.vectors()[m["sealed"]:]
            else:
                index = faiss.IndexFlatIP(learned.DIM)
                rest = self.vectors()
            for at in range(0, len(rest), 65_536):
                index.add(unit(rest[at:at + 65_536]))
            self._index, self._index_pid = index, os.getpid()
        return self._index

    def nearest(self, views: np.ndarray, k: int | None = None, ef: int | None = None) -> list[tuple[int, float]]:
        """The k (SHORTLIST) works nearest any of `views` (unit vectors), as (work id, cosine), best first. The
        graph keeps `ef` candidates per view, or (None) EF_SEARCH for the first UPRIGHT views and EF_TURNED for
        the rest."""
        k = SHORTLIST if k is None else k
        return self.best(self.hits(views, k, ef), k=k)

    def hits(self, views: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each view's k nearest rows and their cosines, flat ((views * k,) each; -1 where fewer), for `best`."""
        import faiss

        if not len(self) or not len(views):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        faiss.omp_set_num_threads(1)  # OpenMP's setting is the calling thread's
        index, views = self.search_index(), np.ascontiguousarray(views, np.float32)
        if isinstance(index, faiss.IndexHNSW):  # per call, not on the shared index: threads may search at once
            beams = ((views, ef),) if ef else ((views[:UPRIGHT], EF_SEARCH), (views[UPRIGHT:], EF_TURNED))
            parts = [index.search(part, k, params=faiss.SearchParametersHNSW(efSearch=beam))
                     for part, beam in beams if len(part)]
            sims, rows = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        else:
            sims, rows = index.search(views, k)
        return rows.ravel(), sims.ravel()

    def best(self, *hits: tuple[np.ndarray, np.ndarray], k: int | None = None) -> list[tuple[int, float]]:
        """The k best works of one or more `hits`, as (work id, cosine), best first, each work once."""
        k = SHORTLIST if k is None else k
        rows = np.concatenate([h[0] for h in hits]) if hits else np.zeros(0, np.int64)
        sims = np.concatenate([h[1] for h in hits]) if hits else np.zeros(0, np.float32)
        rows, sims = rows[rows >= 0], sims[rows >= 0]
        order = np.lexsort((rows, -sims))  # best first, ties by row
        _, first = np.unique(rows[order], return_index=True)  # each row's best view
        order = order[np.sort(first)][:k]
        return [(int(self.ids[r]), float(s)) for r, s in zip(rows[order], sims[order])]

    def vector_of(self, work_ids: list[int]) -> np.ndarray:
        """These works' stored vectors as unit vectors ((n, DIM); zeros for a work not here). The ids are in order
        (`sync` appends the ledger's rows by id). Each row is read from the file on its own: a map of the file would
        keep every page a query touched resident."""
        work_ids = np.asarray(work_ids, self.ids.dtype)
        out = np.zeros((len(work_ids), learned.DIM), np.float32)
        if not len(self.ids):
            return out
        rows = np.minimum(np.searchsorted(self.ids, work_ids), len(self.ids) - 1)
        here = np.flatnonzero(self.ids[rows] == work_ids)
        with open(self.folder / "vectors", "rb") as f:
            read = b"".join(os.pread(f.fileno(), learned.DIM, int(r) * learned.DIM) for r in rows[here])
        out[here] = unit(np.frombuffer(read, np.int8).reshape(len(here), learned.DIM))
        return out


class VectorIndex(Vectors, Shortlisted):
    """Every work's learned vector, and its centre's (`centre`), searched by faiss; the works nearest a copy are
    verified by their blobs."""

    def __init__(self, folder: Path, m: dict, target, keep=None, centre: Vectors | None = None):
        Shortlisted.__init__(self, target, keep)
        Vectors.__init__(self, folder, m)
        self.centre = centre if centre is not None and len(centre) else None
        self.without = m["without"]  # works of the ledger with local features but no vector
        self.prefer = PREFER

    @property
    def covers_all(self) -> bool:
        """Whether every work with local features has a vector here (else the visual words must shortlist)."""
        return self.without == 0

    def shortlist_of(self, q) -> list[int]:
        """The works a copy is verified against when its first look finds nothing: the SHORTLIST nearest any of its
        views, the UNBANDED nearest its views without its bands, and the CENTRED whose centres lie nearest its
        upright views with and without them."""
        return self.first_look(q)[2]()

    def first_look(self, q):
        """The FIRST works nearest the copy's first FIRST_VIEWS views (as it is) and the work whose centre lies
        nearest them; the other works found so far (the rest of the SHORTLIST and CENTRED nearest those views); and
        the whole shortlist, which searches its other views and its views without its bands too (`shortlist_of`)."""
        views, unbanded = copy_vectors(q)
        looked = self.hits(views[:FIRST_VIEWS], SHORTLIST, FIRST_EF)
        wholes = [w for w, _ in self.best(looked)]
        centred = self.centre.hits(views[:FIRST_VIEWS], CENTRED, FIRST_EF) if self.centre is not None else None
        centres = [w for w, _ in self.centre.best(centred, k=CENTRED)] if centred is not None else []

        def everything() -> list[int]:
            # The first look's views again if it searched them with a narrower beam: the same shortlist either way.
            kept, rest = ([looked], FIRST_VIEWS) if FIRST_EF == EF_SEARCH else ([], 0)
            short = [w for w, _ in self.best(*kept, self.hits(views[rest:UPRIGHT], SHORTLIST, EF_SEARCH),
                                             self.hits(views[UPRIGHT:], SHORTLIST, EF_TURNED))]
            short += [w for w, _ in self.nearest(unbanded, UNBANDED, EF_UNBANDED)]
            if self.centre is not None:
                kept, rest = ([centred], FIRST_VIEWS) if FIRST_EF == EF_CENTRED else ([], 0)
                more = np.concatenate([views[rest:UPRIGHT], unbanded])
                short += [w for w, _ in self.centre.best(*kept, self.centre.hits(more, CENTRED, EF_CENTRED),
                                                         k=CENTRED)]
            return list(dict.fromkeys(short))

        first = list(dict.fromkeys(wholes[:FIRST] + centres[:1]))
        return first, [w for w in dict.fromkeys(wholes + centres) if w not in first], everything

    def family_of(self, found: list[int], candidates: list[int]) -> list[int]:
        """The candidates whose vectors lie within FAMILY_COSINE of a found work's: its registered edits."""
        if not found or not candidates:
            return []
        both = self.vector_of(list(candidates) + list(found))  # one read of the file
        near = (both[:len(candidates)] @ both[len(candidates):].T).max(1)
        return [w for w, c in zip(candidates, near) if c >= FAMILY_COSINE]


def copy_vectors(q) -> tuple[np.ndarray, np.ndarray]:
    """The learned vectors of a copy's VIEWS views (local.Query), and of its UPRIGHT views without its flat edge
    bands ((0, DIM) if it has none), computed once."""
    if q.vectors is None:
        inner = local.unbanded(q.image, q.views[0][1])
        q.vectors = (learned.embed(q.image, VIEWS),
                     learned.embed(inner, UPRIGHT) if inner is not None else np.zeros((0, learned.DIM), np.float32))
    return q.vectors


# -- the files ---------------------------------------------------------------------------------------------------
def vector_folder(ledger) -> Path:
    return ledger.index_folder() / "vectors"


def open_vectors(ledger, folder: Path | str | None = None) -> VectorIndex:
    """The ledger's vector index, brought up to date (read, extended with the works registered since, or rebuilt
    from the ledger if missing, corrupt or stale), with its centres' (the `centre/` folder in it). An unwritable
    folder: built in a temporary one."""
    folder = vector_folder(ledger) if folder is None else Path(folder)

    def make(f: Path, keep) -> VectorIndex:
        (f / "centre").mkdir(exist_ok=True)
        centre = Vectors(f / "centre", sync(f / "centre", ledger, learned.CENTRE_ALGORITHM))
        return VectorIndex(f, sync(f, ledger), ledger.target, keep, centre)

    return in_folder(folder, "provenance-vectors-", make)


def _fresh(ledger, algorithm: str) -> dict:
    return {"format": FORMAT, "network": learned.MODEL_SHA256, "algorithm": algorithm,
            "ledger_id": ledger.ledger_id, "rows": 0, "without": 0, "last_id": 0, "sealed": 0, "trained": 0}


def sync(folder: Path, ledger, algorithm: str = learned.ALGORITHM) -> dict:
    """Bring the files in `folder` (the works' `algorithm` vectors) up to date with `ledger`; returns the
    manifest."""
    from .local import READABLE

    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time; readers keep the files they read
        m = _valid_manifest(folder, ledger, algorithm)
        if m is None:
            clear_folder(folder)
            m = _fresh(ledger, algorithm)
        rows, seq, digest, _ = ledger.fingerprint_rows((algorithm,), m["last_id"])
        if rows:
            have = [(r[0], r[2]) for r in rows if learned.readable(r[2])]
            _append(folder, m, have)
            if algorithm == learned.ALGORITHM:
                # Works the local stage can verify (they have local features) but not find here: registered before
                # learned/1. Works with neither (a ledger's first releases) are not the local stage's to find.
                blobs = ledger.local_feature_state(READABLE, int(rows[-1][0]))[3] - \
                    ledger.local_feature_state(READABLE, m["last_id"])[3]
                m["without"] += max(0, blobs - len(have))
            m["last_id"] = int(rows[-1][0])
        if m["rows"] >= GRAPH_MIN and (not m["sealed"] or m["rows"] - m["sealed"] > DELTA_MAX):
            _write_graph(folder, m)
        if rows or m.get("covered_seq") != seq or "files" not in m:
            m.update(covered_seq=seq, covered_hash=digest)
            write_manifest(folder, m, _digests)
    return m


def _append(folder: Path, m: dict, works: list[tuple[int, str]]) -> None:
    """Add (work id, stored vector) rows at the end of the files, cutting off whatever an interrupted writer left
    past the manifest. Updates `m`."""
    if not works:
        return
    new = {"ids": np.array([i for i, _ in works], np.int32).tobytes(),
           "vectors": bytes.fromhex("".join(v for _, v in works))}
    sizes = _files(m)
    for name, data in new.items():
        with open(folder / name, "ab") as f:
            f.truncate(sizes[name])
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    m["rows"] += len(works)


def _write_graph(folder: Path, m: dict) -> None:
    """The graph over every row: the works past it added, or built anew if it never was or the rows have grown
    RETRAIN times since its quantiser was trained."""
    import faiss

    vectors = np.memmap(folder / "vectors", np.int8, "r", shape=(m["rows"], learned.DIM))
    if m["trained"] and m["rows"] <= RETRAIN * m["trained"] and (folder / "graph").exists():
        index = _graph(vectors, faiss.read_index(str(folder / "graph")))
    else:
        index, m["trained"] = _graph(vectors), m["rows"]
    tmp = folder / ".graph.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "graph")
    m["sealed"], m["graph_bytes"] = m["rows"], (folder / "graph").stat().st_size


def _graph(vectors: np.ndarray, index=None):
    """An HNSW graph over `vectors` (stored signed bytes, every core building it): `index` with the rows past it
    added, or (None) a new one, its quantiser trained on a sample of them."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # a build, not a query: every core
    if index is None:
        index = faiss.IndexHNSWSQ(learned.DIM, faiss.ScalarQuantizer.QT_8bit, GRAPH_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        sample = np.sort(np.random.RandomState(0).choice(len(vectors), min(len(vectors), TRAIN_SAMPLE),
                                                         replace=False))
        index.train(unit(vectors[sample]))
    for at in range(index.ntotal, len(vectors), 65_536):
        index.add(unit(vectors[at:at + 65_536]))
    faiss.omp_set_num_threads(1)
    return index


def _files(m: dict) -> dict[str, int]:
    """File name -> bytes the manifest covers."""
    files = {"ids": 4 * m["rows"], "vectors": learned.DIM * m["rows"]}
    if m["sealed"]:
        files["graph"] = m["graph_bytes"]
    return files


def _digests(folder: Path, m: dict, names=None) -> dict[str, str]:
    return {name: sha256_of(folder / name, size) for name, size in _files(m).items()
            if names is None or name in names}


def _valid_manifest(folder: Path, ledger, algorithm: str) -> dict | None:
    return valid_manifest(folder, ledger, {"format": FORMAT, "network": learned.MODEL_SHA256, "algorithm": algorithm},
                          _digests)
