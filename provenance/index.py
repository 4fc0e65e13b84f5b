"""Candidate lookup over registered works, and the index file that keeps it beside the ledger.

Global hashes (PDQ, pHash, equalised PDQ): exact Hamming radius search. Up to SCAN_MAX works a NumPy popcount
scan is fast enough (< 1 ms at the thousand works one artist has). Above it, multi-index hashing tables
(`mih`) make a search sub-linear and still exact: every work within the radius is found, with the same best
distance and variant as a scan. Rows added since the tables were built (at most DELTA_MAX) are scanned.
Measured at 1 M works, 2 shared cores (benchmarks/scale.py): faiss IndexBinaryFlat range search costs ~8 ms per
PDQ code and IndexBinaryMultiHash is not exact at radius 40 with 1 flip and slower than these tables with 2, so
neither meets 5 ms for the 16+ codes one image asks for; these tables answer 8 PDQ variants in a few ms.

The tables are exact only up to SEARCH_RADIUS: PDQ's agreement radius (72 of 256 bits) is too wide for any
index, so matching asks for PDQ <= 40 and pHash <= 10 through the tables and computes the PDQ distance of the few
pHash hits directly (`among`). A wider search without `among` falls back to a scan: never a wrong answer.

The index file (`ledger.db.index/`, see `open_index`) records the ledger entry it covers (seq and hash), is
extended with only the works registered since, and is rebuilt from the ledger when it is missing, unreadable,
fails its checksums, or no longer matches the ledger. Local features (`attach_local`): up to
localindex.EXACT_MAX_WORKS works with blobs, a faiss binary index over every work's descriptors (local.LocalIndex),
built in memory on first use; above it, the bounded visual-word index of `localindex`, kept on disk in the `local/`
folder of this one (its own manifest, the same staleness rules), which reads only its shortlisted works' blobs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import learned, local, mih
from .fingerprints import PDQ, PDQEQ, PHASH

ALGORITHMS = (PDQ, PHASH, PDQEQ)
_BYTES = {PDQ: 32, PHASH: 8, PDQEQ: 32}
_QUALITY = (PDQ, PDQEQ)
#: Largest distance the tables answer exactly, per signal (matching's THRESHOLDS and pHash's AGREEMENT radius).
SEARCH_RADIUS = {PDQ: 40, PHASH: 10, PDQEQ: 40}
#: Below this many works a scan is about as fast as the tables and needs none (8 PDQ + 8 pHash codes, 2 loaded
#: cores: 0.6 / 1.1 ms at 1k, 1.8 / 2.2 ms at 5k, 5.0 / 3.0 ms at 10k; a whole image at 10k: 9.1 / 2.8 ms p50).
#: Tables are first built once more than DELTA_MAX rows are unsealed, so in effect from 8,193 works.
SCAN_MAX = 5_000
#: Works added since the tables were built are scanned; past this many the tables are rebuilt (~1 s per million
#: works per signal), so a registration costs no rebuild and a query scans at most this many rows.
DELTA_MAX = 8_192
#: Matching consults equalised PDQ only for works whose plain PDQ is weak and whose equalised PDQ is not (both
#: measured against matching.PDQ_MIN_QUALITY, the same number): the pdqeq/1 tables hold only those rows (~2 % of
#: the works in benchmarks/scale.py), so that search costs a fiftieth. A search over other rows is a scan.
MIN_QUALITY = 50
FORMAT = "provenance-index/4"  # /3: tables keep their codes in bucket order; /4: only mih.KEPT_BITS of them


@dataclass(frozen=True)
class Nearest:
    """Per work: the smallest distance over the query's variants, and which variant gave it."""

    work_ids: np.ndarray  # (k,)
    distances: np.ndarray  # (k,)
    variants: np.ndarray  # (k,) index into fingerprints.DIHEDRAL


@dataclass(frozen=True)
class Columns:
    """What the index holds per work, one array per field (row i is the i-th work in id order)."""

    ids: np.ndarray  # (n,) int64
    sha256: np.ndarray  # (n, 32) uint8
    codes: dict  # algorithm -> (n, bytes) uint8; zeros where a work has no such hash
    quality: dict  # PDQ, PDQEQ -> (n,) int16; 0 where missing

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "Columns":
        """From Ledger.fingerprint_rows(ALGORITHMS): (id, sha256, then value, quality per algorithm)."""
        n = len(rows)
        cols = list(zip(*rows)) if rows else [()] * (2 + 2 * len(ALGORITHMS))

        def unhex(values, nbytes):
            joined = "".join(v if v is not None else "00" * nbytes for v in values)
            return np.frombuffer(bytes.fromhex(joined), np.uint8).reshape(n, nbytes).copy()

        codes = {alg: unhex(cols[2 + 2 * i], _BYTES[alg]) for i, alg in enumerate(ALGORITHMS)}
        quality = {alg: np.array([q or 0 for q in cols[3 + 2 * ALGORITHMS.index(alg)]], np.int16).reshape(n)
                   for alg in _QUALITY}
        return cls(np.array(cols[0], np.int64).reshape(n), unhex(cols[1], 32), codes, quality)

    @classmethod
    def from_works(cls, works) -> "Columns":
        rows = []
        for w in works:
            row = [w.id, w.sha256]
            for alg in ALGORITHMS:
                f = w.fingerprints.get(alg)
                row += [f.value, f.quality] if f else [None, None]
            rows.append(tuple(row))
        return cls.from_rows(rows)

    def fields(self) -> dict[str, np.ndarray]:
        """Name -> array, the index file's row files."""
        return {"ids": self.ids, "sha256": self.sha256, **{_name(a): self.codes[a] for a in ALGORITHMS},
                **{_name(a) + ".quality": self.quality[a] for a in _QUALITY}}

    @classmethod
    def from_fields(cls, f: dict[str, np.ndarray]) -> "Columns":
        return cls(f["ids"], f["sha256"], {a: f[_name(a)] for a in ALGORITHMS},
                   {a: f[_name(a) + ".quality"] for a in _QUALITY})


def _name(algorithm: str) -> str:
    return algorithm.replace("/", "")


def _table_rows(algorithm: str, cols: Columns, n: int, mask: bool = False) -> np.ndarray | None:
    """The rows of [0, n) that `algorithm`'s tables hold (positions, or a boolean per row); None for all rows."""
    if algorithm != PDQEQ:
        return None
    keep = (np.asarray(cols.quality[PDQ][:n]) < MIN_QUALITY) & (np.asarray(cols.quality[PDQEQ][:n]) >= MIN_QUALITY)
    return keep if mask else np.flatnonzero(keep).astype(np.int32)


_EMPTY_ROWS = Columns.from_rows([])
#: The in-memory local stage verifies the work nearest the copy's learned vectors whatever its keypoints' votes
#: (as vectorindex does): the copy as it is and mirrored (ORB finds rotated copies; 8 views cost 4x the time).
PREFER_VIEWS = 2


class Index:
    """Hamming index over works' global hashes; `Index(works)` builds one in memory, `open_index` from a file."""

    def __init__(self, works=(), local_blobs: dict[int, bytes] | None = None):
        self.local_blobs = dict(local_blobs or {})
        self.local_vectors: dict[int, str] = {}  # learned/1 of the works with blobs, where they have one
        self.bounded = None  # a localindex.Shortlisted, when the local stage is a bounded one
        self._local: tuple[local.LocalIndex, list[int]] | None = None
        self._local_vectors: tuple[np.ndarray, np.ndarray] | None = None  # (positions in _local, unit vectors)
        self._set(_EMPTY_ROWS, {}, 0)
        self.add(list(works))

    def _set(self, cols: Columns, tables: dict, sealed: int) -> None:
        self.columns, self.tables, self.sealed = cols, tables, sealed  # tables cover rows [0, sealed)
        self.work_ids, self.codes, self.quality = cols.ids, cols.codes, cols.quality
        self._codes64 = {a: np.ascontiguousarray(c).view(np.uint64) for a, c in cols.codes.items()}
        # Per algorithm whose tables hold only some rows of [0, sealed): which ones (a boolean per row).
        self._covered = {a: _table_rows(a, cols, sealed, mask=True) for a in ALGORITHMS if a in tables}
        self._masks, self._cover = {}, {}  # per-work masks matching asks for on every image, computed once

    def _tables_cover(self, algorithm: str, eligible: np.ndarray | None) -> bool:
        covered = self._covered.get(algorithm)
        if covered is None:
            return True
        if eligible is None:
            return False
        key = (algorithm, id(eligible))
        if key not in self._cover or self._cover[key][0] is not eligible:
            self._cover[key] = eligible, not np.any(eligible[:self.sealed] > covered)
        return self._cover[key][1]

    def detailed(self, algorithm: str, min_quality: int) -> np.ndarray:
        """A boolean per work: its `algorithm` hash has at least `min_quality` (computed once per index)."""
        key = (algorithm, min_quality)
        if key not in self._masks:
            self._masks[key] = np.asarray(self.quality[algorithm]) >= min_quality
        return self._masks[key]

    def only_detailed(self, weak: str, strong: str, min_quality: int) -> np.ndarray:
        """A boolean per work: its `weak` hash is below `min_quality` and its `strong` hash is not."""
        key = (weak, strong, min_quality)
        if key not in self._masks:
            self._masks[key] = ~self.detailed(weak, min_quality) & self.detailed(strong, min_quality)
        return self._masks[key]

    def __len__(self) -> int:
        return len(self.work_ids)

    @property
    def nbytes(self) -> int:
        """Bytes of the rows and tables (memory-mapped when opened from a file)."""
        return sum(a.nbytes for a in self.columns.fields().values()) + \
            sum(t.nbytes if isinstance(t, mih.Tables) else sum(x.nbytes for x in t) for t in self.tables.values())

    def add(self, works) -> None:
        if works:
            self.add_columns(Columns.from_works(works))

    def add_columns(self, new: Columns) -> None:
        if not len(new):
            return
        both = {k: np.concatenate([v, new.fields()[k]]) for k, v in self.columns.fields().items()}
        self._set(Columns.from_fields(both), self.tables, self.sealed)
        if self.needs_tables():
            self.build_tables()

    def needs_tables(self) -> bool:
        return len(self) >= SCAN_MAX and len(self) - self.sealed > DELTA_MAX

    def build_tables(self) -> None:
        """Multi-index tables over every row, and the SHA-256 lookup (sorted 64-bit prefixes)."""
        n = len(self)
        tables = {}
        for a in ALGORITHMS:
            rows = _table_rows(a, self.columns, n)
            count = n if rows is None else len(rows)
            tables[a] = mih.build(self.codes[a], mih.plan(_BYTES[a] * 8, SEARCH_RADIUS[a], max(count, 1)), rows)
        prefix = self.columns.sha256[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        order = np.argsort(prefix, kind="stable").astype(np.int32)
        tables["sha256"] = (prefix[order], order)
        self._set(self.columns, tables, n)

    @property
    def by_sha256(self) -> "_Sha256Lookup":
        return _Sha256Lookup(self)

    def local(self) -> tuple[local.LocalIndex, list[int]]:
        """The local-feature index and the work id of each of its positions (built once, on first use)."""
        if self._local is None:
            ids = sorted(self.local_blobs)
            self._local = local.LocalIndex([local.decode(self.local_blobs[i]) for i in ids]), ids
            have = [k for k, i in enumerate(ids) if i in self.local_vectors]
            vectors = [learned.from_hex(self.local_vectors[ids[k]]) for k in have]
            self._local_vectors = (np.array(have, np.int64), np.stack(vectors)) if vectors else None
        return self._local

    @property
    def has_local(self) -> bool:
        """Whether the local-feature stage has any work to look for."""
        return bool(self.local_blobs) or (self.bounded is not None and len(self.bounded) > 0)

    def local_matches(self, image) -> list[tuple[int, local.LocalMatch]]:
        """The local stage's accepted matches for an RGB image, as (work id, match), most inliers first."""
        if self.bounded is not None:
            return self.bounded.query(image)
        if not self.local_blobs:
            return []
        local_index, work_ids = self.local()
        q = local.Query(image)
        prefer = ()
        if self._local_vectors is not None:  # the work nearest the copy's learned vectors is verified in any case
            positions, vectors = self._local_vectors
            views = learned.embed(q.image, PREFER_VIEWS)
            prefer = (int(positions[int(np.argmax((views @ vectors.T).max(0)))]),)
        return [(work_ids[m.position], m) for m in local_index.match(q, prefer)]

    def nearest(self, algorithm: str, variants: tuple[str, ...] | list[str], max_distance: int,
                eligible: np.ndarray | None = None, among: np.ndarray | None = None) -> Nearest:
        """Works within `max_distance` of any query variant, with the best variant for each (the first one on a
        tie), in id order: exactly what a scan finds.

        `eligible` (a boolean per work, in index order) restricts the search, e.g. to works whose hashes of this
        kind are informative; `among` (work ids) to a few works, whose distances are computed directly.
        """
        empty = np.zeros(0, dtype=np.int64)
        if not len(self) or not variants:
            return Nearest(empty, empty, empty)
        q = np.frombuffer(b"".join(bytes.fromhex(v) for v in variants), dtype=np.uint8).reshape(len(variants), -1)
        q64 = q.view(np.uint64)
        codes64 = self._codes64[algorithm]
        tables = self.tables.get(algorithm)
        if among is not None:
            at = np.searchsorted(self.work_ids, np.asarray(among, np.int64))
            at = np.unique(at[(at < len(self)) & (self.work_ids[np.minimum(at, len(self) - 1)] == among)])
            pos, d, var = self._scan(codes64, q64, at)
        elif tables is not None and max_distance <= SEARCH_RADIUS[algorithm] and \
                self._tables_cover(algorithm, eligible):
            pos, d, var = mih.search(tables, self.codes[algorithm], q, max_distance)
            if self.sealed < len(self):  # the works registered since the tables were sealed
                rest = self._scan(codes64, q64, np.arange(self.sealed, len(self)))
                pos, d, var = (np.concatenate([a, b]) for a, b in zip((pos, d, var), rest))
        else:
            pos, d, var = self._scan(codes64, q64, np.arange(len(self)))
        keep = d <= max_distance
        if eligible is not None:
            keep &= eligible[pos]
        pos, d, var = pos[keep], d[keep], var[keep]
        order = np.lexsort((var, d, pos))  # per work: smallest distance, then first variant
        pos, d, var = pos[order], d[order], var[order]
        first = np.ones(len(pos), bool)
        first[1:] = pos[1:] != pos[:-1]
        return Nearest(self.work_ids[pos[first]], d[first], var[first])

    @staticmethod
    def _scan(codes64: np.ndarray, q64: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every (position, best distance, best variant) among `positions`, by brute force."""
        rows = codes64[positions[0]:positions[-1] + 1] if len(positions) and \
            positions[-1] - positions[0] + 1 == len(positions) else np.take(codes64, positions, axis=0)
        # (variants, works) distance matrix, summed word by word: a reduction along the 4-long last axis is ~8x
        # slower than these column sums.
        x = np.bitwise_count(q64[:, None, :] ^ rows[None, :, :])
        d = x[:, :, 0].astype(np.int64)
        for k in range(1, x.shape[2]):
            d += x[:, :, k]
        best = d.argmin(axis=0)
        return positions.astype(np.int64), d[best, np.arange(d.shape[1])], best


class _Sha256Lookup:
    """`index.by_sha256.get(hex)`: the work ids registered with exactly these bytes, in id order."""

    def __init__(self, index: Index):
        self.index = index

    def get(self, sha256: str, default=()) -> list[int]:
        ix, key = self.index, np.frombuffer(bytes.fromhex(sha256), np.uint8)
        hits = np.flatnonzero((ix.columns.sha256[ix.sealed:] == key).all(axis=1)) + ix.sealed
        if ix.sealed:
            prefix, order = ix.tables["sha256"]
            p = np.uint64(int.from_bytes(key[:8].tobytes(), "big"))
            same = order[np.searchsorted(prefix, p, "left"):np.searchsorted(prefix, p, "right")]
            hits = np.concatenate([same[(ix.columns.sha256[same] == key).all(axis=1)], hits])
        return [int(i) for i in ix.work_ids[np.sort(hits)]] or list(default)


# -- the index file ----------------------------------------------------------------------------------------------
def index_folder(ledger_path: Path | str) -> Path:
    return Path(f"{ledger_path}.index")


def clear_folder(folder: Path) -> None:
    """Remove an index's files from `folder`, but its lock and the folders in it (local/ and vectors/: other indexes,
    with their own manifests). Unlinked, not truncated: a reader keeps the files it mapped."""
    for path in folder.iterdir():
        if path.name != "lock" and not path.is_dir():
            path.unlink()


def open_index(ledger, folder: Path | str | None = None) -> Index:
    """The ledger's global-hash index, brought up to date: read from `folder` (default `ledger.index_folder()`),
    extended with the works registered since it was written, or rebuilt from the ledger if it is missing,
    corrupt or stale. Where the folder cannot be written, an index is built in memory (never saved)."""
    folder = ledger.index_folder() if folder is None else Path(folder)
    try:
        folder.mkdir(exist_ok=True)
        return _sync(folder, ledger)
    except OSError:  # a read-only place, a full disk: the file is only a cache
        index = Index()
        index.add_columns(Columns.from_rows(ledger.fingerprint_rows(ALGORITHMS)[0]))
        return index


def _sync(folder: Path, ledger) -> Index:
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time; readers keep their mapped files
        manifest = _valid_manifest(folder, ledger)
        index = _load(folder, manifest) if manifest else Index()
        rows, seq, digest, count = ledger.fingerprint_rows(ALGORITHMS, int(index.work_ids[-1]) if len(index) else 0)
        if manifest is None or len(index) + len(rows) != count:  # missing, corrupt, stale, or works rows edited
            clear_folder(folder)
            manifest = {"rows": 0, "sealed": 0, "plans": {}, "table_rows": {}}
            rows, seq, digest, count = ledger.fingerprint_rows(ALGORITHMS)
        if rows or manifest.get("covered_seq") != seq:
            _append(folder, manifest["rows"], Columns.from_rows(rows))
            manifest["rows"] += len(rows)
            index = _load(folder, manifest)
            if index.needs_tables():
                index.build_tables()
                _write_tables(folder, index)
                manifest["sealed"] = index.sealed
                manifest["plans"] = {a: [[c.start, c.bits, c.radius] for c in index.tables[a].chunks]
                                     for a in ALGORITHMS}
                manifest["table_rows"] = {a: index.tables[a].rows for a in ALGORITHMS}
            manifest.update(format=FORMAT, ledger_id=ledger.ledger_id, covered_seq=seq, covered_hash=digest,
                            radius=SEARCH_RADIUS, files=_digests(folder, manifest))
            _write_json(folder / "manifest.json", manifest)
            index = _load(folder, manifest)
    return index


def _row_files(rows: int) -> dict[str, tuple[np.dtype, tuple]]:
    shapes = {"ids": (np.int64, ()), "sha256": (np.uint8, (32,))}
    shapes |= {_name(a): (np.uint8, (_BYTES[a],)) for a in ALGORITHMS}
    shapes |= {_name(a) + ".quality": (np.int16, ()) for a in _QUALITY}
    return {name: (np.dtype(dt), (rows, *shape)) for name, (dt, shape) in shapes.items()}


def _table_files(manifest: dict) -> dict[str, tuple[np.dtype, tuple]]:
    sealed, out = manifest["sealed"], {}
    if not sealed:
        return out
    for a, chunks in manifest["plans"].items():
        out[f"{_name(a)}.order"] = (np.dtype(np.int32), (len(chunks), manifest["table_rows"][a]))
        out[f"{_name(a)}.offsets"] = (np.dtype(np.int32), (sum((1 << b) + 1 for _, b, _ in chunks),))
        out[f"{_name(a)}.codes"] = (np.dtype(np.uint64),
                                    (len(chunks), manifest["table_rows"][a], mih.kept_count(_BYTES[a] // 8)))
    out["sha256.prefix"] = (np.dtype(np.uint64), (sealed,))
    out["sha256.order"] = (np.dtype(np.int32), (sealed,))
    return out


def _map(path: Path, dtype: np.dtype, shape: tuple, populate: bool = True) -> np.ndarray:
    if not int(np.prod(shape)):
        return np.zeros(shape, dtype)
    # A plain ndarray over the map (numpy's memmap subclass costs ~15 us on every slice of it). The tables' page
    # tables are filled up front (MAP_POPULATE): a search touches their pages at random, and a first touch of each
    # cost ~1 us. The row files are not: a query reads a few of their rows (a hit's id and SHA-256, the full code of
    # a candidate, the rows past the tables), so most of their pages never need to be in memory.
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), dtype.itemsize * int(np.prod(shape)),
                      flags=mmap.MAP_SHARED | (_POPULATE if populate else 0), prot=mmap.PROT_READ)
    return np.frombuffer(m, dtype=dtype).reshape(shape)


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux


def _load(folder: Path, manifest: dict) -> Index:
    fields = {n: _map(folder / n, dt, sh, populate=False) for n, (dt, sh) in _row_files(manifest["rows"]).items()}
    t = {n: _map(folder / n, dt, sh) for n, (dt, sh) in _table_files(manifest).items()}
    tables = {}
    if manifest["sealed"]:
        for a, chunks in manifest["plans"].items():
            plan = tuple(mih.Chunk(*c) for c in chunks)
            tables[a] = mih.Tables(plan, manifest["table_rows"][a], t[f"{_name(a)}.order"], t[f"{_name(a)}.offsets"],
                                   t[f"{_name(a)}.codes"], _BYTES[a] // 8)
        tables["sha256"] = (t["sha256.prefix"], t["sha256.order"])
    index = Index()
    index._set(Columns.from_fields(fields), tables, manifest["sealed"])
    return index


def _append(folder: Path, rows: int, new: Columns) -> None:
    """Add rows at the end of each row file, cutting off whatever an interrupted writer left past `rows`."""
    for name, arr in new.fields().items():
        with open(folder / name, "ab") as f:
            f.truncate(rows * arr.dtype.itemsize * int(np.prod(arr.shape[1:])))
            f.write(np.ascontiguousarray(arr).tobytes())
            f.flush()
            os.fsync(f.fileno())


def _write_tables(folder: Path, index: Index) -> None:
    arrays = {f"{_name(a)}.order": index.tables[a].order for a in ALGORITHMS}
    arrays |= {f"{_name(a)}.offsets": index.tables[a].offsets for a in ALGORITHMS}
    arrays |= {f"{_name(a)}.codes": index.tables[a].codes for a in ALGORITHMS}
    arrays |= {"sha256.prefix": index.tables["sha256"][0], "sha256.order": index.tables["sha256"][1]}
    for name, arr in arrays.items():
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(np.ascontiguousarray(arr).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)  # a reader that mapped the old file keeps it


def _digests(folder: Path, manifest: dict, names=None) -> dict[str, str]:
    out = {}
    for name, (dt, shape) in {**_row_files(manifest["rows"]), **_table_files(manifest)}.items():
        if names is not None and name not in names:
            continue
        size = dt.itemsize * int(np.prod(shape))
        out[name] = sha256_of(folder / name, size) if size else hashlib.sha256().hexdigest()  # empty: no file
    return out


def sha256_of(path: Path, size: int) -> str:
    """SHA-256 of the first `size` bytes of `path` (an index file: a writer may have left more behind them)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while size > 0:
            block = f.read(min(size, 1 << 24))
            if not block:
                raise OSError(f"{path} is shorter than the index says")
            h.update(block)
            size -= len(block)
    return h.hexdigest()


def _valid_manifest(folder: Path, ledger) -> dict | None:
    return valid_manifest(folder, ledger, {"format": FORMAT, "radius": SEARCH_RADIUS}, _digests)


def valid_manifest(folder: Path, ledger, expected: dict, digests) -> dict | None:
    """The manifest in `folder` (of this index or of the local ones beside it) if it has the `expected` values, is
    this ledger's, covers a prefix of its entries and its files are intact (`digests(folder, m, names)`: their
    SHA-256); else None (rebuild)."""
    try:
        m = json.loads((folder / "manifest.json").read_text())
        if any(m.get(k) != v for k, v in expected.items()) or m.get("ledger_id") != ledger.ledger_id:
            return None
        if ledger.entry_hash_at(m["covered_seq"]) != m["covered_hash"]:
            return None  # the ledger was replaced or rewritten since
        return m if intact(folder, m, lambda names: digests(folder, m, names)) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: Index folders whose checksums this process has verified, with the stamp they had then (`_stamp`). Checking
#: 683 MiB of SHA-256 costs ~0.8 s at 1 M works, and a worker opens the index for every job: for the large files
#: once per process is enough while none has been written since (a write changes the size, the mtime or, on
#: replace, the inode). Files up to _RECHECK_MAX bytes are checked on every open: a write within one clock tick
#: of the last need not change the mtime, and checking them costs nothing.
_VERIFIED: dict[str, tuple] = {}
_RECHECK_MAX = 1 << 20


def intact(folder: Path, manifest: dict, digests) -> bool:
    """Whether the SHA-256 of every file in `manifest["files"]` is the one it records; `digests(names)` computes
    them for a set of file names. Large files this process has checked and nobody has written since are trusted."""
    stamp = _stamp(folder, manifest)
    names = sorted(manifest["files"])
    if _VERIFIED.get(str(folder)) == stamp:
        names = [name for name, (_, size, _) in zip(names, stamp[1:]) if size <= _RECHECK_MAX]
    found = digests(set(names))
    if any(found.get(name) != manifest["files"][name] for name in names):
        return False
    _VERIFIED[str(folder)] = stamp
    return True


def _stamp(folder: Path, manifest: dict) -> tuple:
    stats = [(folder / name).stat() for name in sorted(manifest["files"])]
    return (json.dumps(manifest, sort_keys=True), *((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats))


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
