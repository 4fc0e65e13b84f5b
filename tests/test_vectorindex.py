"""The learned shortlist (vectorindex): crops, rotations and mirrors found among many registered works while only the
shortlisted works' blobs are read; growth by appending; the IVF index answering as the exact search does; a rebuild
whenever the files could disagree with the ledger; the visual words kept for ledgers with older works. Real images,
real ledger files; the bounded local stage is forced (PROVENANCE_LOCAL_INDEX=bounded) at this size.
"""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

import provenance
from provenance import learned, local, localindex, vectorindex
from provenance.index import Index
from provenance.ledger import Ledger
from provenance.vectorindex import VectorIndex, open_vectors, vector_folder
from test_localindex import _many  # noqa: F401 (the module's ledger: the examples and procedural works)
from test_localindex import BRUSH, FIGURE, FLOW, POSTER, crop, ids_of, picture, register, work


@pytest.fixture
def many(_many, tmp_path, monkeypatch):
    monkeypatch.setenv(localindex.ENV, "bounded")
    shutil.copyfile(_many, tmp_path / "ledger.db")
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


def register_pictures(ledger, folder, seeds, account) -> None:
    """Register the procedural pictures of these seeds from `folder` (made here)."""
    folder.mkdir()
    for seed in seeds:
        picture(seed).save(folder / f"picture_{seed}.jpg", quality=90)
    register(ledger, folder, account)


def copies(works_dir) -> dict[str, tuple[Image.Image, str]]:
    """Crops of four example works: plain, rotated 5 degrees, mirrored, and turned on their side."""
    out = {}
    for name in (BRUSH, FIGURE, FLOW, POSTER):
        im = work(works_dir, name)
        out[f"crop-{name}.jpg"] = (crop(im, (0.15, 0.1, 0.85, 0.8)), name)
        out[f"rot-{name}.jpg"] = (crop(im.rotate(5, resample=Image.BICUBIC), (0.1, 0.1, 0.9, 0.9)), name)
        out[f"mirror-{name}.jpg"] = (ImageOps.mirror(crop(im, (0.1, 0.15, 0.9, 0.85))), name)
        out[f"side-{name}.jpg"] = (crop(im, (0.1, 0.1, 0.9, 0.9)).rotate(90, expand=True), name)
    return out


def test_copies_are_found_reading_only_the_shortlisted_works_blobs(many, works_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(vectorindex, "SHORTLIST", 3)  # of 36 works: the vectors must put the right one near the top
    monkeypatch.setattr(vectorindex, "UNBANDED", 1)  # and one more for a copy with bands over its edges
    monkeypatch.setattr(vectorindex, "CENTRED", 1)  # and one more by the works' centres
    open_vectors(many)  # built from the ledger's fingerprint rows (once: the scan only reads the files)
    monkeypatch.setattr(Ledger, "local_features", lambda *a: pytest.fail("the scan read every blob"))
    asked = []
    real = Ledger.local_features_of
    monkeypatch.setattr(Ledger, "local_features_of", lambda self, ids, *alg: asked.append(list(ids)) or
                        real(self, ids, *alg))
    feed = tmp_path / "feed"
    feed.mkdir()
    truth = {}
    for file, (im, name) in copies(works_dir).items():
        im.save(feed / file, quality=88)
        truth[file] = name
    results = list(provenance.scan(many, [feed], workers=1).results)
    ids = ids_of(many)
    for r in results:
        assert [m.work_id for m in r.matches] == [ids[truth[r.item.rsplit("/", 1)[-1]]]], (r.item, r.matches)
    assert sum(m.signal == local.ALGORITHM for r in results for m in r.matches) >= 8  # the local stage's own
    assert asked and all(len(a) <= 5 for a in asked)  # only shortlisted works' blobs, never all 36


def test_a_scan_through_worker_processes_gives_the_same_answers(many, works_dir, tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    for file, (im, _) in list(copies(works_dir).items())[:6]:
        im.save(feed / file, quality=88)
    one = [(r.item, [m.work_id for m in r.matches]) for r in provenance.scan(many, [feed], workers=1).results]
    two = [(r.item, [m.work_id for m in r.matches]) for r in provenance.scan(many, [feed], workers=2).results]
    assert sorted(one) == sorted(two) and all(found for _, found in one)


def test_the_shortlist_is_the_works_nearest_any_view(many, works_dir):
    index = open_vectors(many)
    stored = vectorindex.unit(index.vectors())
    assert sorted(index.ids.tolist()) == sorted(ids_of(many).values())
    im = crop(work(works_dir, FLOW), (0.1, 0.1, 0.9, 0.9)).rotate(270, expand=True)
    views = learned.embed(im, vectorindex.VIEWS)
    best = (views @ stored.T).max(0)
    expected = [int(index.ids[r]) for r in np.argsort(-best, kind="stable")[:5]]
    assert [w for w, _ in index.nearest(views, 5)] == expected
    assert expected[0] == ids_of(many)[FLOW]
    assert [s for _, s in index.nearest(views, 5)] == pytest.approx(sorted(best, reverse=True)[:5], abs=1e-5)


def captioned(im: Image.Image, fraction: float = 0.25) -> Image.Image:
    """`im` with a white caption bar of black text over its bottom `fraction`, as a meme repost has."""
    from PIL import ImageDraw, ImageFont

    out = im.convert("RGB")
    d = ImageDraw.Draw(out)
    top = round(out.height * (1 - fraction))
    d.rectangle((0, top, out.width, out.height), fill=(255, 255, 255))
    d.text((10, top + 6), "when the art is too good not to share", fill=(0, 0, 0),
           font=ImageFont.load_default(size=max(10, out.height // 20)))
    return out


def test_a_copy_is_also_searched_without_the_bands_over_its_edges(many, works_dir):
    """A captioned crop is embedded a second time without its caption bar (local.unbanded, as it is and mirrored),
    and the works nearest those views join the shortlist after the SHORTLIST nearest the copy's own views."""
    index = open_vectors(many)
    plain = crop(work(works_dir, FLOW), (0.1, 0.1, 0.9, 0.9))  # no flat edges of its own (the poster has)
    copy = captioned(plain)
    inner = local.unbanded(copy, local.Query(copy).views[0][1])
    assert inner is not None and inner.width == copy.width and abs(inner.height - plain.height * 0.75) <= 2
    assert np.abs(np.asarray(inner, np.int16) - np.asarray(plain, np.int16)[:inner.height]).mean() < 1
    assert local.unbanded(plain, local.Query(plain).views[0][1]) is None  # no bands: no second search
    q = local.Query(copy)
    views, unbanded = vectorindex.copy_vectors(q)
    assert views.shape == (vectorindex.VIEWS, learned.DIM) and unbanded.shape == (vectorindex.UPRIGHT, learned.DIM)
    assert np.allclose(unbanded, learned.embed(inner, vectorindex.UPRIGHT), atol=1e-5)
    first = [w for w, _ in index.nearest(views)]
    extra = [w for w, _ in index.nearest(unbanded, vectorindex.UNBANDED)]
    assert index.shortlist_of(q) == unique(first + extra + centred(index, views, unbanded))
    assert len(first) == vectorindex.SHORTLIST
    assert ids_of(many)[FLOW] == index.nearest(unbanded, 1)[0][0]  # without its caption, its work is nearest
    plain_q = local.Query(plain)
    views, unbanded = vectorindex.copy_vectors(plain_q)
    assert unbanded.shape == (0, learned.DIM)
    assert index.shortlist_of(plain_q) == unique([w for w, _ in index.nearest(views)] + centred(index, views, unbanded))


def unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def centred(index, views, unbanded) -> list[int]:
    """The works whose centres lie nearest a copy's upright views, with and without its bands."""
    upright = np.concatenate([views[:vectorindex.UPRIGHT], unbanded])
    return [w for w, _ in index.centre.nearest(upright, vectorindex.CENTRED, vectorindex.EF_CENTRED)]


def test_the_works_centres_are_searched_too(many, works_dir, monkeypatch):
    """Each work's centre/1 vector (the network's, of its middle learned.CENTRE) is kept in vectors/centre/, and the
    CENTRED works whose centres lie nearest a copy join its shortlist: a copy cropped to its work's middle is found
    that way even when the wholes' search answers nothing."""
    index = open_vectors(many)
    ids = ids_of(many)
    assert sorted(index.centre.ids.tolist()) == sorted(ids.values())
    assert (vector_folder(many) / "centre" / "manifest.json").exists()
    row = index.centre.ids.tolist().index(ids[FLOW])
    registered = learned.embed(learned.centre(work(works_dir, FLOW)))[0]
    assert vectorindex.unit(index.centre.vectors()[row:row + 1])[0] @ registered > 0.99
    assert learned.centre(Image.new("RGB", (100, 50))).size == (80, 40)
    for name in (BRUSH, FIGURE, FLOW, POSTER):
        q = local.Query(crop(work(works_dir, name), (0.2, 0.2, 0.8, 0.8)))
        views, unbanded = vectorindex.copy_vectors(q)
        assert centred(index, views, unbanded)[0] == ids[name], name
        nothing = np.zeros(0, np.int64), np.zeros(0, np.float32)
        monkeypatch.setattr(index, "hits", lambda *a, **k: nothing)  # the wholes' search finds nothing
        assert index.shortlist_of(q) == centred(index, views, unbanded)
        monkeypatch.undo()


def test_works_registered_before_centres_are_found_by_their_wholes(tmp_path, works_dir, account, monkeypatch):
    """tests/assets/ledgers/learned1-before-centre.db: three example works registered by the release before centre/1
    (6687167), with learned/1 vectors and no centres. Works registered since have both: the centres' graph holds
    only those, and crops of old and new works are found."""
    with older_ledger("learned1-before-centre.db", (FIGURE, "sunset-hills.jpg"), tmp_path, works_dir, account,
                      monkeypatch) as (led, ids, new):
        index = open_vectors(led)
        assert index.covers_all and len(index) == 5
        assert sorted(index.centre.ids.tolist()) == sorted(ids[n] for n in new)
        crops_are_found(led, ids, (FLOW, FIGURE), works_dir, tmp_path)  # one old work, one new


@contextmanager
def older_ledger(asset: str, new: tuple[str, ...], tmp_path, works_dir, account, monkeypatch):
    """tests/assets/ledgers/`asset` (works registered by an earlier release), with the example works `new`
    registered by this one, the bounded local stage forced: yields (ledger, ids by file name, new)."""
    path = tmp_path / "ledger.db"
    shutil.copy(localindex.Path(__file__).parent / "assets" / "ledgers" / asset, path)
    monkeypatch.setenv(localindex.ENV, "bounded")
    folder = tmp_path / "new"
    folder.mkdir()
    for name in new:
        shutil.copy(works_dir / name, folder / name)
    with Ledger.open(path) as led:
        register(led, folder, account)
        yield led, ids_of(led), new


def crops_are_found(led, ids, names, works_dir, tmp_path) -> None:
    """A scan of crops of the works `names` finds each one's work, and only it."""
    feed = tmp_path / "feed"
    feed.mkdir()
    for name in names:
        crop(work(works_dir, name), (0.12, 0.1, 0.88, 0.86)).save(feed / f"crop-{name}.jpg", quality=88)
    found = {r.item.rsplit("/", 1)[-1]: [m.work_id for m in r.matches]
             for r in provenance.scan(led, [feed], workers=1).results}
    assert found == {f"crop-{name}.jpg": [ids[name]] for name in names}


def test_new_works_are_appended_not_rebuilt(many, account, tmp_path):
    first = open_vectors(many)
    before = (vector_folder(many) / "vectors").read_bytes()
    register_pictures(many, tmp_path / "more", range(100, 103), account)
    index = open_vectors(many)
    assert len(index) == len(first) + 3 and index.ids[:len(first)].tolist() == first.ids.tolist()
    assert (vector_folder(many) / "vectors").read_bytes()[:len(before)] == before
    added = index.ids[-3:].tolist()
    # The new work is its own nearest.
    q = learned.embed(crop(picture(101), (0.1, 0.1, 0.9, 0.9)), vectorindex.VIEWS)
    assert index.nearest(q, 1)[0][0] == added[1]


@pytest.fixture(params=["truncated", "flipped byte", "other network", "rewritten ledger"])
def damage(request, many):
    open_vectors(many)
    folder = vector_folder(many)
    m = json.loads((folder / "manifest.json").read_text())
    if request.param == "truncated":
        with open(folder / "vectors", "r+b") as f:
            f.truncate(100)
    elif request.param == "flipped byte":
        data = bytearray((folder / "ids").read_bytes())
        data[4] ^= 1
        (folder / "ids").write_bytes(bytes(data))
    elif request.param == "other network":
        (folder / "manifest.json").write_text(json.dumps(dict(m, network="0" * 64)))
    else:
        (folder / "manifest.json").write_text(json.dumps(dict(m, covered_hash="0" * 64)))
    return many


def test_damaged_or_stale_files_are_rebuilt_from_the_ledger(damage):
    index = open_vectors(damage)
    assert index.ids.tolist() == sorted(ids_of(damage).values())
    rows = {r[0]: r[2] for r in damage.fingerprint_rows((learned.ALGORITHM,))[0]}
    assert [learned.to_hex(v) for v in vectorindex.unit(index.vectors())] == [rows[i] for i in index.ids.tolist()]


def test_above_graph_min_a_graph_answers_as_the_exact_search(many, works_dir, account, tmp_path, monkeypatch):
    exact = open_vectors(many)
    queries = [learned.embed(im, vectorindex.VIEWS) for im, _ in copies(works_dir).values()]
    want = [exact.nearest(q, 3) for q in queries]
    shutil.rmtree(vector_folder(many))
    monkeypatch.setattr(vectorindex, "GRAPH_MIN", 30)
    graph = open_vectors(many)
    assert graph.manifest["sealed"] == 36 and graph.manifest["trained"] == 36
    assert type(graph.search_index()).__name__ == "IndexHNSWSQ"
    for q, expected in zip(queries, want):
        got = graph.nearest(q, 3)
        assert got[0][0] == expected[0][0] and {w for w, _ in got} == {w for w, _ in expected}
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=0.02)  # 8-bit codes
    # Works registered since are added in memory up to DELTA_MAX, then to the file; built anew past RETRAIN x.
    register_pictures(many, tmp_path / "more", range(200, 204), account)
    grown = open_vectors(many)
    assert len(grown) == 40 and grown.manifest["sealed"] == 36 and grown.search_index().ntotal == 40
    monkeypatch.setattr(vectorindex, "DELTA_MAX", 0)
    resealed = open_vectors(many)
    assert resealed.manifest["sealed"] == 40 and resealed.manifest["trained"] == 36
    monkeypatch.setattr(vectorindex, "RETRAIN", 1.05)
    register_pictures(many, tmp_path / "one", [300], account)
    rebuilt = open_vectors(many)
    assert rebuilt.manifest["sealed"] == 41 and rebuilt.manifest["trained"] == 41
    q = learned.embed(crop(picture(300), (0.1, 0.1, 0.9, 0.9)), vectorindex.VIEWS)
    assert rebuilt.nearest(q, 1)[0][0] == rebuilt.ids[-1]


def test_threads_searching_one_graph_at_once_get_the_answers_of_one_at_a_time(many, works_dir, monkeypatch):
    """The graph's beams (EF_SEARCH upright, EF_TURNED turned, EF_UNBANDED) are given per search, never set on the
    index the threads share: concurrent searches answer as sequential ones, and the index keeps its own setting."""
    from concurrent.futures import ThreadPoolExecutor

    import faiss

    monkeypatch.setattr(vectorindex, "GRAPH_MIN", 30)
    graph = open_vectors(many)
    index = graph.search_index()
    assert isinstance(index, faiss.IndexHNSW)
    before = index.hnsw.efSearch
    queries = [learned.embed(im, vectorindex.VIEWS) for im, _ in copies(works_dir).values()]
    queries += [q[:vectorindex.UPRIGHT] for q in queries]
    want = [graph.nearest(q, 5) for q in queries] + [graph.nearest(q, 3, vectorindex.EF_UNBANDED) for q in queries]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda q: graph.nearest(q, 5), queries)) + \
                list(pool.map(lambda q: graph.nearest(q, 3, vectorindex.EF_UNBANDED), queries))
            assert got == want
    assert index.hnsw.efSearch == before


def test_a_ledger_with_works_registered_before_learned_vectors_keeps_the_visual_words(tmp_path, works_dir, account,
                                                                                       monkeypatch):
    """tests/assets/ledgers/orb5-before-learned.db: three example works registered by the release before learned/1
    (2a20465), with ORB blobs and no vectors. Works registered since have both; the words must find all of them."""
    with older_ledger("orb5-before-learned.db", (FIGURE, "sunset-hills.jpg", "tiled-mandala.png"), tmp_path,
                      works_dir, account, monkeypatch) as (led, ids, new):
        assert len(ids) == 6
        vectors = open_vectors(led)
        assert vectors.without == 3 and sorted(vectors.ids.tolist()) == sorted(ids[n] for n in new)
        index = Index()
        localindex.attach(index, led)
        assert isinstance(index.bounded, localindex.WordIndex) and len(index.bounded) == 6
        crops_are_found(led, ids, (FLOW, FIGURE), works_dir, tmp_path)  # one old work, one new


def test_the_nearest_work_is_verified_even_where_the_keypoints_vote_for_others(many, works_dir, monkeypatch):
    """The keypoints' votes choose which shortlisted works are verified; a family of similar works can outvote the
    right one. The vectors' best (PREFER) is verified anyway: with no voted candidate verified at all, the copies
    are still found."""
    monkeypatch.setattr(local, "TOP_K", 0)
    monkeypatch.setattr(local.LocalIndex, "_templates", lambda *a: [])
    index = open_vectors(many)
    ids = ids_of(many)
    for name in (BRUSH, FLOW, POSTER):
        copy = crop(work(works_dir, name), (0.1, 0.12, 0.88, 0.9))
        assert [w for w, _ in index.query(copy)] == [ids[name]]
    index.prefer = 0
    assert index.query(crop(work(works_dir, FLOW), (0.1, 0.12, 0.88, 0.9))) == []


def test_the_vector_index_is_built_from_either_backend_and_finds_a_crop(registered_ledger, works_dir):
    led = registered_ledger  # SQLite and PostgreSQL (the folder is then in the data directory)
    rows = {r[0]: r[2] for r in led.fingerprint_rows((learned.ALGORITHM,))[0]}
    index = open_vectors(led)
    assert index.covers_all and sorted(index.ids.tolist()) == sorted(rows) and len(rows) == 6
    assert [learned.to_hex(v) for v in vectorindex.unit(index.vectors())] == [rows[i] for i in index.ids.tolist()]
    found = index.query(crop(work(works_dir, POSTER), (0.1, 0.15, 0.85, 0.9)))
    assert [w for w, _ in found] == [w.id for w in led.works() if w.title == "Geometric Poster"]


def test_the_in_memory_local_stage_verifies_the_nearest_work_too(many, works_dir, monkeypatch):
    """Below EXACT_MAX_WORKS every blob is in memory and every work's keypoints vote; the work nearest the copy's
    learned vectors (itself and mirrored: index.PREFER_VIEWS) is verified as well, whatever the votes."""
    monkeypatch.setenv(localindex.ENV, "exact")
    monkeypatch.setattr(local, "TOP_K", 0)
    monkeypatch.setattr(local.LocalIndex, "_templates", lambda *a: [])
    index = Index()
    localindex.attach(index, many)
    ids = ids_of(many)
    assert index.bounded is None and len(index.local_vectors) == len(index.local_blobs) == 36
    for name in (BRUSH, POSTER):
        copy = ImageOps.mirror(crop(work(works_dir, name), (0.1, 0.12, 0.88, 0.9)))
        assert [w for w, _ in index.local_matches(copy)] == [ids[name]]
    bare = Index()
    bare.local_blobs = index.local_blobs  # a ledger whose works have no vectors: the votes alone
    assert bare.local_matches(crop(work(works_dir, BRUSH), (0.1, 0.12, 0.88, 0.9))) == []


def test_a_stale_global_index_is_rebuilt_beside_the_vector_folder(many):
    from provenance.index import open_index

    open_vectors(many)
    folder = many.index_folder()
    (folder / "manifest.json").write_text("{not json")  # the global index's: its files must be written anew
    vectors_manifest = (vector_folder(many) / "manifest.json").read_bytes()
    index = open_index(many)
    assert len(index) == len(ids_of(many))
    assert json.loads((folder / "manifest.json").read_text())["rows"] == len(index)  # saved, not held in memory only
    assert (vector_folder(many) / "manifest.json").read_bytes() == vectors_manifest  # the vectors' own files kept


def test_a_tampered_vector_row_leaves_its_work_to_the_visual_words(many, works_dir):
    import sqlite3

    target = ids_of(many)[FLOW]
    with sqlite3.connect(many.path) as conn:  # what `ledger verify` reports; the scan must still open and find
        conn.execute("UPDATE fingerprints SET value = 'zz' || substr(value, 3) WHERE work_id = ? AND algorithm = ?",
                     (target, learned.ALGORITHM))
    index = open_vectors(many)
    assert target not in index.ids.tolist() and len(index) == len(ids_of(many)) - 1
    assert not index.covers_all
    copy = crop(work(works_dir, FLOW), (0.15, 0.1, 0.85, 0.8))
    scanner = Index()
    localindex.attach(scanner, many)
    assert isinstance(scanner.bounded, localindex.WordIndex)
    assert target in [w for w, _ in scanner.bounded.query(copy)]
    exact = Index()  # the in-memory stage: the work has no vector to prefer it by; its keypoints still find it
    localindex.attach(exact, many, "exact")
    assert target not in exact.local_vectors and len(exact.local_vectors) == len(ids_of(many)) - 1
    assert target in [w for w, _ in exact.local_matches(copy)]


def test_a_copy_of_a_work_the_vectors_rank_first_is_answered_by_the_first_look(many, works_dir, monkeypatch):
    """The FIRST works nearest a copy's upright views (and the nearest centre) are verified first, by their plain
    keypoints; when that finds the copy's work, its turned views and its views without its bands are never
    searched, and the answer is the one the whole shortlist's verification gives."""
    index = open_vectors(many)
    ids = ids_of(many)
    searched = []
    hits = index.hits
    monkeypatch.setattr(index, "hits", lambda views, k, ef=None: searched.append(len(views)) or hits(views, k, ef))
    for name in (BRUSH, FIGURE, FLOW, POSTER):
        q = local.Query(crop(work(works_dir, name), (0.12, 0.1, 0.9, 0.85)))
        searched.clear()
        got = index.match(q)
        assert [w for w, _ in got] == [ids[name]], name
        assert searched == [vectorindex.FIRST_VIEWS]  # the copy as it is (the centres are searched apart)
        assert ids[name] in index.last_shortlist and len(index.last_shortlist) <= vectorindex.FIRST + 1
        whole = index._matches_among(q, index.shortlist_of(q))
        assert [(w, m.inliers, m.geometry) for w, m in got] == [(w, m.inliers, m.geometry) for w, m in whole]


def test_the_whole_shortlist_searches_the_first_looks_views_again_at_the_wider_beams(many, works_dir, monkeypatch):
    """The first look searches the copy as it is with the narrower FIRST_EF; the whole shortlist searches that view
    again at EF_SEARCH (wholes) and EF_CENTRED (centres), so it is the shortlist a first look at those beams gives."""
    monkeypatch.setattr(vectorindex, "GRAPH_MIN", 30)
    index = open_vectors(many)
    assert type(index.search_index()).__name__ == "IndexHNSWSQ"
    searched = []
    for name, graph in (("whole", index), ("centre", index.centre)):
        monkeypatch.setattr(graph, "hits", lambda views, k, ef=None, name=name, hits=graph.hits:
                            searched.append((name, len(views), ef)) or hits(views, k, ef))
    assert vectorindex.FIRST_EF < min(vectorindex.EF_SEARCH, vectorindex.EF_CENTRED)
    shortlists = []
    for im, _ in copies(works_dir).values():
        q = local.Query(im)
        searched.clear()
        first, known, everything = index.first_look(q)
        assert searched == [("whole", 1, vectorindex.FIRST_EF), ("centre", 1, vectorindex.FIRST_EF)]
        shortlists.append(everything())
        assert ("whole", vectorindex.UPRIGHT, vectorindex.EF_SEARCH) in searched[2:]
        assert searched[-1][0] == "centre" and searched[-1][1:] == (vectorindex.UPRIGHT + len(q.vectors[1]),
                                                                    vectorindex.EF_CENTRED)
    monkeypatch.setattr(vectorindex, "FIRST_EF", vectorindex.EF_SEARCH)
    assert [index.first_look(local.Query(im))[2]() for im, _ in copies(works_dir).values()] == shortlists


def test_the_first_look_verifies_on_the_calling_thread_and_the_whole_shortlist_on_the_pools(many, works_dir,
                                                                                            monkeypatch):
    """With a core to spare, the first look's few works are searched and verified on the calling thread (handing
    such small tasks to the pool cost more than it saved), the whole shortlist's on the pool's threads; the answers
    are those of one thread."""
    import threading

    from provenance import _hamming_kernel, _parallel

    index = open_vectors(many)
    ids = ids_of(many)
    ran_on = []
    verify, nearest_each = local.LocalIndex._verify, _hamming_kernel.nearest_each
    monkeypatch.setattr(local.LocalIndex, "_verify", staticmethod(
        lambda *a: ran_on.append(threading.current_thread().name) or verify(*a)))
    monkeypatch.setattr(_hamming_kernel, "nearest_each",
                        lambda *a: ran_on.append(threading.current_thread().name) or nearest_each(*a))
    look = index.first_look
    crops = [crop(work(works_dir, name), (0.12, 0.1, 0.9, 0.85)) for name in (BRUSH, FLOW, POSTER)]

    def answers(whole: bool):
        monkeypatch.setattr(index, "first_look", (lambda q: ([], [], look(q)[2])) if whole else look)
        return [[(w, m.inliers, m.geometry) for w, m in index.match(local.Query(c))] for c in crops]

    monkeypatch.setattr(_parallel, "threads", lambda: 1)
    alone = [answers(False), answers(True)]
    assert [[w for w, _, _ in a] for a in alone[0]] == [[ids[n]] for n in (BRUSH, FLOW, POSTER)]
    monkeypatch.setattr(_parallel, "threads", lambda: 2)
    ran_on.clear()
    assert answers(False) == alone[0]
    assert ran_on and set(ran_on) == {threading.current_thread().name}
    ran_on.clear()
    assert answers(True) == alone[1]
    assert any(n.startswith("provenance-pool") for n in ran_on)


def test_when_the_first_look_finds_nothing_the_whole_shortlist_is_verified(many, works_dir, monkeypatch):
    """A first look at works the copy is not of verifies nothing; then the whole shortlist is verified (all passes:
    plain keypoints, equalised ones, templates) and finds the copy's work."""
    index = open_vectors(many)
    ids = ids_of(many)
    copy = crop(work(works_dir, FLOW), (0.1, 0.12, 0.88, 0.9))
    others = [ids[n] for n in (BRUSH, FIGURE, POSTER)]
    whole, look = [], index.first_look

    def first_look(q):
        def everything():
            whole.append(True)
            return look(q)[2]()  # the whole shortlist
        return others, [], everything

    monkeypatch.setattr(index, "first_look", first_look)
    assert [w for w, _ in index.query(copy)] == [ids[FLOW]]
    assert whole == [True] and index.last_shortlist == look(local.Query(copy))[2]()
    monkeypatch.setattr(index, "first_look", lambda q: ([ids[FLOW]], [], lambda: whole.append(False) or []))
    assert [w for w, _ in index.query(copy)] == [ids[FLOW]] and whole == [True]  # found at first: no more


def test_a_registered_edit_of_the_found_work_is_named_beside_it(many, works_dir, account, tmp_path, monkeypatch):
    """When the first look finds a work, the other works shortlisted so far whose vectors lie within FAMILY_COSINE
    of its vector (a registered edit: a small shape added) are verified too and named beside it; works further
    away are not verified."""
    flow = work(works_dir, FLOW)
    edit = flow.copy()
    ImageDraw.Draw(edit).ellipse((20, 20, 60, 60), fill=(250, 40, 40))
    (tmp_path / "edit").mkdir()
    edit.save(tmp_path / "edit" / "flow-edit.png")
    register(many, tmp_path / "edit", account)
    index = open_vectors(many)
    ids = ids_of(many)
    flow_id, edit_id = ids[FLOW], ids["flow-edit.png"]
    near = float(index.vector_of([flow_id])[0] @ index.vector_of([edit_id])[0])
    assert near >= vectorindex.FAMILY_COSINE
    others = [ids[n] for n in (BRUSH, FIGURE, POSTER)]
    assert index.family_of([flow_id], others + [edit_id]) == [edit_id]
    copy = crop(flow, (0.3, 0.3, 0.95, 0.95))  # clear of the shape: the copy fits both versions
    monkeypatch.setattr(index, "first_look", lambda q: ([flow_id], others + [edit_id], lambda: []))
    assert sorted(w for w, _ in index.query(copy)) == sorted([flow_id, edit_id])
    assert index.last_shortlist == [flow_id, edit_id]
    monkeypatch.setattr(vectorindex, "FAMILY_COSINE", near + 0.01)
    assert [w for w, _ in index.query(copy)] == [flow_id] and index.last_shortlist == [flow_id]
