"""The global-hash index: exact (same answers as a brute-force scan), incremental, and never out of step with the
ledger it is kept beside (missing, corrupt and stale index files are rebuilt)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provenance
from provenance import index as index_module
from provenance import mih
from provenance.fingerprints import PDQ, PDQEQ, PHASH
from provenance.index import SEARCH_RADIUS, Columns, Index, index_folder, open_index
from provenance.matching import AGREEMENT, THRESHOLDS, find_matches
from provenance.scanning import scan


def brute(codes: np.ndarray, queries: np.ndarray, radius: int) -> dict[int, tuple[int, int]]:
    """row -> (best distance, first variant reaching it), for rows within radius: the reference answer."""
    d = np.bitwise_count(queries[:, None, :] ^ codes[None]).sum(2)
    best = d.argmin(0)
    dist = d[best, np.arange(len(codes))]
    return {int(i): (int(dist[i]), int(best[i])) for i in np.flatnonzero(dist <= radius)}


def clustered(rng, n: int, nbytes: int, centres: int, spread: int) -> np.ndarray:
    """Codes around a few centres (near-duplicate clusters), `spread` random bit flips each, plus random codes."""
    c = rng.integers(0, 256, (centres, nbytes), dtype=np.uint8)
    bits = np.unpackbits(c[rng.integers(0, centres, n)], axis=1)
    flips = rng.integers(0, nbytes * 8, (n, spread))
    np.bitwise_xor.at(bits, (np.arange(n)[:, None], flips), 1)
    out = np.packbits(bits, axis=1)
    out[: n // 4] = rng.integers(0, 256, (n // 4, nbytes), dtype=np.uint8)
    return out


def columns(rng, n: int, start: int = 1) -> Columns:
    rows = []
    pdq, phash = clustered(rng, n, 32, 7, 30), clustered(rng, n, 8, 7, 6)
    for i in range(n):
        rows.append((start + i, rng.bytes(32).hex(), pdq[i].tobytes().hex(), int(rng.integers(0, 101)),
                     phash[i].tobytes().hex(), None, pdq[-1 - i].tobytes().hex(), int(rng.integers(0, 101))))
    return Columns.from_rows(rows)


def queries_near(rng, codes: np.ndarray, k: int, flips: int) -> np.ndarray:
    bits = np.unpackbits(codes[rng.integers(0, len(codes), k)], axis=1)
    np.bitwise_xor.at(bits, (np.arange(k)[:, None], rng.integers(0, bits.shape[1], (k, flips))), 1)
    return np.packbits(bits, axis=1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nbytes=st.sampled_from([8, 32]), n=st.integers(1, 3000),
       radius=st.integers(0, 48), flips=st.integers(0, 60))
def test_multi_index_search_is_exactly_a_scan(seed, nbytes, n, radius, flips):
    rng = np.random.default_rng(seed)
    codes = clustered(rng, n, nbytes, 5, min(flips, nbytes * 8))
    queries = queries_near(rng, codes, 8, flips % (nbytes * 8))
    tables = mih.build(codes, mih.plan(nbytes * 8, radius, 1_000_000))  # the chunking used at a million works
    pos, d, q = mih.search(tables, codes, queries, radius)
    got = sorted(zip(pos.tolist(), q.tolist(), d.tolist()))
    full = np.bitwise_count(queries[:, None, :] ^ codes[None]).sum(2)
    want = sorted((int(r), int(v), int(full[v, r])) for v, r in zip(*np.nonzero(full <= radius)))
    assert got == want


@pytest.mark.parametrize("n, delta", [(500, True), (30_000, True), (30_000, False)])  # a scan only, tables plus a
def test_nearest_agrees_with_brute_force_for_every_signal(n, delta, monkeypatch):  # scanned delta, tables alone
    monkeypatch.setattr(index_module, "DELTA_MAX", 4_000)
    rng = np.random.default_rng(n)
    index, first = Index(), n - min(3_000, n // 3) if delta else n
    index.add_columns(columns(rng, first))
    if delta:
        index.add_columns(columns(rng, n - first, start=first + 1))  # rows past the tables, when there are tables
    assert (index.sealed > 0) == (n > index_module.SCAN_MAX)
    assert (index.sealed == n) == (not delta)
    for alg in (PDQ, PHASH, PDQEQ):
        codes = np.asarray(index.codes[alg])
        radius = SEARCH_RADIUS[alg]
        for flips in (0, radius // 2, radius):
            q = queries_near(rng, codes, 8, flips)
            eligible = rng.random(n) < 0.7
            got = index.nearest(alg, [c.tobytes().hex() for c in q], radius, eligible)
            want = {r: v for r, v in brute(codes, q, radius).items() if eligible[r]}
            assert got.work_ids.tolist() == [int(index.work_ids[r]) for r in sorted(want)]
            assert list(zip(got.distances.tolist(), got.variants.tolist())) == [want[r] for r in sorted(want)]
    # Wider than the tables answer (PDQ's agreement radius): a scan, and `among` for a few works directly.
    codes = np.asarray(index.codes[PDQ])
    q = [c.tobytes().hex() for c in queries_near(rng, codes, 8, 50)]
    wide = index.nearest(PDQ, q, AGREEMENT[PDQ])
    want = brute(codes, np.frombuffer(bytes.fromhex("".join(q)), np.uint8).reshape(8, 32), AGREEMENT[PDQ])
    assert wide.work_ids.tolist() == [int(index.work_ids[r]) for r in sorted(want)]
    some = index.work_ids[rng.integers(0, n, 50)]
    few = index.nearest(PDQ, q, AGREEMENT[PDQ], among=some)
    assert set(few.work_ids.tolist()) == set(wide.work_ids.tolist()) & set(some.tolist())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nbytes=st.sampled_from([8, 32]), n=st.integers(1, 2000),
       radius=st.integers(0, 48), share=st.floats(0, 1))
def test_tables_over_some_rows_find_exactly_those_rows(seed, nbytes, n, radius, share):
    rng = np.random.default_rng(seed)
    codes = clustered(rng, n, nbytes, 5, 10)
    rows = np.flatnonzero(rng.random(n) < share).astype(np.int32)
    queries = queries_near(rng, codes, 8, radius // 2)
    tables = mih.build(codes, mih.plan(nbytes * 8, radius, 1_000_000), rows)
    assert tables.rows == len(rows)
    pos, d, q = mih.search(tables, codes, queries, radius)
    full = np.bitwise_count(queries[:, None, :] ^ codes[None]).sum(2)
    want = sorted((int(r), int(v), int(full[v, r])) for v, r in zip(*np.nonzero(full <= radius)) if r in set(rows))
    assert sorted(zip(pos.tolist(), q.tolist(), d.tolist())) == want


def test_query_keys_are_chunk_keys():
    rng = np.random.default_rng(3)
    for bits, radius, rows in ((256, 40, 1_000_000), (64, 10, 1_000_000), (64, 10, 5_000), (256, 40, 30_000)):
        chunks = mih.plan(bits, radius, rows)
        q = rng.integers(0, 256, (8, bits // 8), dtype=np.uint8)
        assert np.array_equal(mih.query_keys(q, chunks), mih.chunk_keys(q, chunks))


def test_equalised_pdq_tables_hold_the_low_detail_works_and_other_searches_scan(monkeypatch):
    """pdqeq/1's tables cover only works matching asks about (weak PDQ, usable equalised PDQ): asked about
    exactly those, or fewer, the tables answer; asked about others, a scan does. Both are a brute-force scan's."""
    from provenance.matching import PDQ_MIN_QUALITY

    assert index_module.MIN_QUALITY == PDQ_MIN_QUALITY
    monkeypatch.setattr(index_module, "DELTA_MAX", 4_000)
    rng = np.random.default_rng(8)
    index = Index()
    index.add_columns(columns(rng, 27_000))
    index.add_columns(columns(rng, 3_000, start=27_001))  # rows past the tables
    assert index.sealed == 27_000
    q = index.quality
    low = (q[PDQ] < PDQ_MIN_QUALITY) & (q[PDQEQ] >= PDQ_MIN_QUALITY)  # what matching._low_detail passes
    assert 0 < index.tables[PDQEQ].rows == int(low[:index.sealed].sum()) < index.sealed
    codes = np.asarray(index.codes[PDQEQ])
    scans = []
    scan = Index._scan
    monkeypatch.setattr(Index, "_scan", staticmethod(lambda c, q64, p: scans.append(len(p)) or scan(c, q64, p)))
    for eligible, scanned in ((low, False), (low & (rng.random(len(low)) < 0.5), False), (None, True),
                              (rng.random(len(low)) < 0.7, True)):
        for flips in (0, 20, 40):
            hexes = [c.tobytes().hex() for c in queries_near(rng, codes[low], 8, flips)]
            scans.clear()
            got = index.nearest(PDQEQ, hexes, 40, eligible)
            assert (max(scans) == len(index)) == scanned
            qs = np.frombuffer(bytes.fromhex("".join(hexes)), np.uint8).reshape(8, 32)
            want = {r: v for r, v in brute(codes, qs, 40).items() if eligible is None or eligible[r]}
            assert got.work_ids.tolist() == [int(index.work_ids[r]) for r in sorted(want)]
            assert list(zip(got.distances.tolist(), got.variants.tolist())) == [want[r] for r in sorted(want)]


def test_search_radii_cover_the_thresholds_matching_uses():
    assert SEARCH_RADIUS[PDQ] >= THRESHOLDS[PDQ] and SEARCH_RADIUS[PDQEQ] >= THRESHOLDS[PDQEQ]
    assert SEARCH_RADIUS[PHASH] >= max(THRESHOLDS[PHASH], AGREEMENT[PHASH])


def test_sha256_lookup_with_and_without_tables(monkeypatch):
    monkeypatch.setattr(index_module, "SCAN_MAX", 100)
    monkeypatch.setattr(index_module, "DELTA_MAX", 50)
    rng = np.random.default_rng(1)
    index = Index()
    cols = columns(rng, 300)
    index.add_columns(cols)
    assert index.sealed == 300
    extra = columns(rng, 10, start=301)
    index.add_columns(extra)
    for i in (0, 150, 299):
        assert index.by_sha256.get(cols.sha256[i].tobytes().hex(), []) == [i + 1]
    assert index.by_sha256.get(extra.sha256[3].tobytes().hex(), []) == [304]
    assert index.by_sha256.get("ab" * 32, []) == []


# -- the index file beside a ledger -----------------------------------------------------------------------------
def _matches(ledger, paths):
    return [(r.item, [(m.work_id, m.signal, m.distance, m.transform) for m in r.matches])
            for r in provenance.scan(ledger, paths, workers=1).results]


@pytest.fixture
def two_batches(ledger, works_dir, tmp_path, account):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for i, f in enumerate(sorted(works_dir.iterdir())):
        shutil.copy(f, (first if i < 3 else second) / f.name)
    list(provenance.register(ledger, [first], account, artist="A", workers=1).results)
    open_index(ledger)  # register reads the index before it appends; the next reader adds the new works
    return ledger, second


def _fresh(ledger) -> Index:
    """A brute-force index straight from the ledger's works, as the matcher had before index files."""
    return Index(ledger.works())


def test_index_file_is_extended_not_rebuilt(two_batches, account, monkeypatch):
    ledger, second = two_batches
    folder = index_folder(ledger.path)
    before = json.loads((folder / "manifest.json").read_text())
    assert before["rows"] == 3 and before["covered_seq"] == 3
    appended = []
    monkeypatch.setattr(index_module, "_append", lambda f, rows, new, append=index_module._append:
                        appended.append((rows, len(new))) or append(f, rows, new))
    list(provenance.register(ledger, [second], account, artist="A", workers=1).results)
    index = open_index(ledger)
    after = json.loads((folder / "manifest.json").read_text())
    assert after["rows"] == 6 and after["covered_seq"] == 6
    assert index.work_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert appended == [(3, 3)]  # only the three new works were added, after the three it had


def test_an_unchanged_index_is_checksummed_once_per_process_and_a_rewritten_file_again(two_batches, monkeypatch):
    ledger, _ = two_batches
    folder = index_folder(ledger.path)
    monkeypatch.setattr(index_module, "_RECHECK_MAX", 0)  # treat every file as large
    monkeypatch.setattr(index_module, "_VERIFIED", {})
    hashed = []
    monkeypatch.setattr(index_module, "_digests", lambda f, m, names=None, digests=index_module._digests:
                        hashed.append(names) or digests(f, m, names))
    open_index(ledger)
    open_index(ledger)
    assert len(hashed) == 2 and len(hashed[0]) > 5 and hashed[1] == set()  # the second open trusts the first
    data = bytearray((folder / "pdq1").read_bytes())
    data[5] ^= 0xFF
    (folder / "pdq1.tmp").write_bytes(bytes(data))
    (folder / "pdq1.tmp").replace(folder / "pdq1")  # same size; a new file
    index = open_index(ledger)
    assert np.array_equal(np.asarray(index.codes[PDQ]), _fresh(ledger).codes[PDQ])  # found and rebuilt


@pytest.mark.parametrize("damage", ["delete", "garble_codes", "truncate", "garble_manifest", "other_ledger"])
def test_a_damaged_or_stale_index_file_is_rebuilt(two_batches, account, feed_dir, damage, tmp_path):
    ledger, second = two_batches
    folder = index_folder(ledger.path)
    if damage == "delete":
        shutil.rmtree(folder)
    elif damage == "garble_codes":
        data = bytearray((folder / "pdq1").read_bytes())
        data[5] ^= 0xFF
        (folder / "pdq1").write_bytes(bytes(data))
    elif damage == "truncate":
        (folder / "ids").write_bytes((folder / "ids").read_bytes()[:-8])
    elif damage == "garble_manifest":
        (folder / "manifest.json").write_text("{not json")
    else:  # an index file left over from another ledger at the same path
        m = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**m, "ledger_id": "someone else"}))
    list(provenance.register(ledger, [second], account, artist="A", workers=1).results)
    index = open_index(ledger)
    fresh = _fresh(ledger)
    assert index.work_ids.tolist() == fresh.work_ids.tolist() == [1, 2, 3, 4, 5, 6]
    for alg in (PDQ, PHASH, PDQEQ):
        assert np.array_equal(np.asarray(index.codes[alg]), fresh.codes[alg])
    feed = sorted(feed_dir.iterdir())
    scanned = _matches(ledger, feed)
    assert scanned == [(r[0], r[1]) for r in _brute_scan(ledger, feed)]
    assert sum(bool(m) for _, m in scanned) >= 10


def _brute_scan(ledger, feed):
    from provenance.fingerprints import ORB, fingerprint_decoded
    from provenance.imaging import decode, read_bytes
    from provenance.sources import display

    index = _fresh(ledger)
    index.local_blobs = ledger.local_features(ORB)
    out = []
    for path in feed:
        data = read_bytes(path)
        decoded = decode(data)
        fps = fingerprint_decoded(data, decoded, variants=True, local_features=False)
        out.append((display(path), [(m.work_id, m.signal, m.distance, m.transform)
                                    for m in find_matches(fps, index, decoded.image)]))
    return out


def test_a_rewritten_ledger_at_the_same_path_is_not_served_from_the_old_index(two_batches, account, works_dir):
    ledger, second = two_batches
    folder = index_folder(ledger.path)
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**m, "covered_hash": "00" * 32}))
    assert open_index(ledger).work_ids.tolist() == [1, 2, 3]
    assert json.loads((folder / "manifest.json").read_text())["covered_hash"] == m["covered_hash"]


def test_scan_at_table_scale_matches_a_brute_force_scan(two_batches, account, feed_dir, monkeypatch):
    """With tables forced on at 3 works, the scan's answers are the brute-force scan's."""
    monkeypatch.setattr(index_module, "SCAN_MAX", 2)
    monkeypatch.setattr(index_module, "DELTA_MAX", 1)
    ledger, second = two_batches
    shutil.rmtree(index_folder(ledger.path))
    list(provenance.register(ledger, [second], account, artist="A", workers=1).results)
    assert open_index(ledger).sealed == 6
    feed = sorted(feed_dir.iterdir())
    assert _matches(ledger, feed) == _brute_scan(ledger, feed)


def test_an_unwritable_index_folder_falls_back_to_memory(two_batches, monkeypatch):
    ledger, _ = two_batches
    monkeypatch.setattr(index_module, "_sync", lambda folder, led: (_ for _ in ()).throw(PermissionError()))
    assert open_index(ledger).work_ids.tolist() == [1, 2, 3]
    assert list(scan(ledger, []).results) == []
