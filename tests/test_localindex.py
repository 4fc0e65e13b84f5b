"""The bounded local index (localindex): crops and rotations found among many registered works while only the
shortlisted works' blobs are read, growth by appending, and a rebuild whenever the files could disagree with the
ledger. Real images, real ledger files; the visual words' index is forced (PROVENANCE_LOCAL_INDEX=words: every work
here has a learned vector, so "bounded" would take the vector index, tests/test_vectorindex.py) at this size.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import provenance
from provenance import _parallel, local, localindex
from provenance.errors import UsageError
from provenance.imaging import decode
from provenance.index import Index
from provenance.ledger import Ledger
from provenance.localindex import local_folder, open_local
from provenance.vectorindex import VectorIndex
import dbhelp

BRUSH, FIGURE, FLOW, POSTER = "brush-abstract.jpg", "figure-portrait.jpg", "flow-field.png", "geometric-poster.png"
EXTRA = 30  # procedural works registered beside the six examples


def picture(seed: int) -> Image.Image:
    """A procedural picture with corners (shapes on a gradient), unlike the example works."""
    rng = np.random.default_rng(seed)
    w, h = 480, 360
    t = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3) + rng.uniform(0, 120, 3)
    img = Image.fromarray(np.clip(np.broadcast_to(t, (h, w, 3)), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(14):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x, y, x + int(rng.integers(15, 120)), y + int(rng.integers(15, 90)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(box, fill=colour)
    return img


def register(ledger: Ledger, folder, account):
    results = list(provenance.register(ledger, [folder], account, artist="A", workers=1).results)
    assert [r.error for r in results] == [None] * len(results)
    return results


@pytest.fixture(scope="module")
def _many(tmp_path_factory, works_dir, account):
    """A ledger file with the example works and EXTRA procedural ones registered, made once for the module."""
    root = tmp_path_factory.mktemp("bounded")
    extra = root / "extra"
    extra.mkdir()
    for i in range(EXTRA):
        picture(i).save(extra / f"extra_{i:02d}.jpg", quality=90)
    with Ledger.create(root / "ledger.db") as led:
        register(led, works_dir, account)
        register(led, extra, account)
    return root / "ledger.db"


@pytest.fixture
def many(_many, tmp_path, monkeypatch):
    monkeypatch.setenv(localindex.ENV, "words")
    shutil.copyfile(_many, tmp_path / "ledger.db")
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


def ids_of(ledger) -> dict[str, int]:
    return {w.title: w.id for w in ledger.works()}


def work(works_dir, name) -> Image.Image:
    with Image.open(works_dir / name) as im:
        return im.convert("RGB")


def crop(im: Image.Image, box) -> Image.Image:
    w, h = im.size
    return im.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def copies(works_dir) -> dict[str, str]:
    """Eight crops and rotations of four example works: file name -> the work it copies."""
    out = {}
    for name in (BRUSH, FIGURE, FLOW, POSTER):
        im = work(works_dir, name)
        out[f"crop-{name}.jpg"] = (crop(im, (0.15, 0.1, 0.85, 0.8)), name)
        out[f"rot-{name}.jpg"] = (crop(im.rotate(5, resample=Image.BICUBIC), (0.1, 0.1, 0.9, 0.9)), name)
    return out


def write_copies(folder, works_dir) -> dict[str, str]:
    folder.mkdir()
    truth = {}
    for file, (im, name) in copies(works_dir).items():
        im.save(folder / file, quality=88)
        truth[file] = name
    return truth


def on_disk(ledger) -> tuple[list[int], list[list[int]]]:
    """What the index files hold: work ids, and each work's words."""
    m = json.loads((local_folder(ledger) / "manifest.json").read_text())
    folder = local_folder(ledger)
    ids = np.fromfile(folder / "ids", np.int32, m["rows"]).tolist()
    counts = np.fromfile(folder / "counts", np.uint16, m["rows"]).astype(int)
    flat = np.fromfile(folder / "words", np.uint16, m["words"]).tolist()
    ends = np.cumsum(counts).tolist()
    return ids, [flat[e - c:e] for e, c in zip(ends, counts)]


def from_ledger(ledger) -> tuple[list[int], list[list[int]]]:
    """What they should hold, computed straight from the ledger's blobs."""
    blobs = ledger.local_features(*local.READABLE)
    ids = sorted(blobs)
    return ids, [localindex.work_words(local.decode(blobs[i])).tolist() for i in ids]


def test_crops_and_rotations_are_found_among_many_works_reading_only_shortlisted_blobs(many, works_dir, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(localindex, "SHORTLIST", 4)  # of 36 works: the words must put the right one near the top
    open_local(many)  # built from the ledger's blobs, streamed (once: the scan only reads the files)
    monkeypatch.setattr(Ledger, "local_features", lambda *a: pytest.fail("the scan read every blob"))
    asked = []
    real = Ledger.local_features_of
    monkeypatch.setattr(Ledger, "local_features_of", lambda self, ids, *alg: asked.append(list(ids)) or
                        real(self, ids, *alg))
    truth = write_copies(tmp_path / "feed", works_dir)
    results = list(provenance.scan(many, [tmp_path / "feed"], workers=1).results)
    ids = ids_of(many)
    for r in results:
        name = truth[r.item.rsplit("/", 1)[-1]]
        assert [m.work_id for m in r.matches] == [ids[name]], (r.item, r.matches)
    assert {m.signal for r in results for m in r.matches} <= {local.ALGORITHM, local.TEMPLATE, "pdq/1", "phash/1",
                                                              "pdq/1+phash/1"}
    assert any(m.signal == local.ALGORITHM for r in results for m in r.matches)
    assert asked and all(len(a) <= 4 for a in asked)  # only shortlisted works' blobs, never all 36


def test_a_scan_through_worker_processes_gives_the_same_answers(many, works_dir, tmp_path):
    write_copies(tmp_path / "feed", works_dir)
    one = [(r.item, [(m.work_id, m.signal) for m in r.matches])
           for r in provenance.scan(many, [tmp_path / "feed"], workers=1, record=False).results]
    two = [(r.item, [(m.work_id, m.signal) for m in r.matches])
           for r in provenance.scan(many, [tmp_path / "feed"], workers=2, record=False).results]
    assert one == two and all(m for _, m in one)


def test_the_two_views_of_a_copy_are_detected_and_ranked_on_two_threads_with_the_answer_of_one(many, works_dir, monkeypatch):
    bounded = open_local(many)
    ran_on, one_by_one = set(), bounded._view

    def view(*args):
        ran_on.add(threading.current_thread().name)
        return one_by_one(*args)

    monkeypatch.setattr(bounded, "_view", view)
    for im, _ in copies(works_dir).values():
        v = localindex.views(local.Query(np.asarray(im)))
        assert len(v) == 2  # the copy and its mirror
        monkeypatch.setattr(_parallel, "threads", lambda: 1)
        alone, found = bounded.shortlist(v), [(w, m.inliers) for w, m in bounded.query(np.asarray(im))]
        monkeypatch.setattr(_parallel, "threads", lambda: 2)
        assert bounded.shortlist(v) == alone and alone
        assert [(w, m.inliers) for w, m in bounded.query(np.asarray(im))] == found and found  # detected there too
        q = local.Query(np.asarray(im))
        q.plain, q.equalised  # detected beforehand (benchmarks/scale.py times the stage without them)
        assert [(w, m.inliers) for w, m in bounded.match(q)] == found
    assert threading.current_thread().name in ran_on and any(n.startswith("provenance") for n in ran_on)


def test_a_scan_worker_process_keeps_to_one_thread():
    assert _parallel.threads() == _parallel.default_workers()
    assert set(_parallel.imap(_threads_here, range(16), workers=2)) == {1}


def _threads_here(_):
    return _parallel.threads()


def test_new_works_are_appended_not_rebuilt(many, account, tmp_path, monkeypatch):
    monkeypatch.setattr(localindex, "DELTA_MAX", 10)  # 36 works: the posting lists are written
    open_local(many)
    folder = local_folder(many)
    before = {n: ((folder / n).stat().st_ino, (folder / n).read_bytes()) for n in
              ("ids", "counts", "words", "xy", "postings.low", "postings.offsets")}
    new = tmp_path / "new"
    new.mkdir()
    for i in range(3):
        picture(1000 + i).save(new / f"new_{i}.jpg", quality=90)
    added = [r.work_id for r in register(many, new, account)]
    bounded = open_local(many)
    assert bounded.ids.tolist()[-3:] == added and len(bounded) == 39
    for n, (inode, data) in before.items():
        assert (folder / n).stat().st_ino == inode, f"{n} was rewritten"
        now = (folder / n).read_bytes()
        assert now[:len(data)] == data and (len(now) > len(data)) == (n in ("ids", "counts", "words", "xy")), n
    assert json.loads((folder / "manifest.json").read_text())["sealed"] == 36  # the 3 new ones: in memory
    assert on_disk(many) == from_ledger(many)
    # A work in memory (the delta) is shortlisted like one in the written lists.
    q = local.Query(picture(1001))
    assert bounded.shortlist(localindex.views(q)[:1])[0] == added[1]
    monkeypatch.setattr(localindex, "DELTA_MAX", 2)
    open_local(many)  # now past the limit: lists rewritten over all 39
    assert json.loads((folder / "manifest.json").read_text())["sealed"] == 39
    assert open_local(many).shortlist(localindex.views(q)[:1])[0] == added[1]


def _tamper_words(ledger):
    path = local_folder(ledger) / "words"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _tamper_manifest(ledger):
    path = local_folder(ledger) / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "covered_hash": "00" * 32}))


def _drop_a_blob(ledger):
    with dbhelp.raw_connection(ledger) as c:
        c.execute("DELETE FROM local_features WHERE work_id = 7")


@pytest.mark.parametrize("damage", [_tamper_words, _tamper_manifest, _drop_a_blob,
                                    lambda led: shutil.rmtree(local_folder(led))],
                         ids=["corrupt words", "manifest of another ledger state", "ledger lost a blob", "missing"])
def test_damaged_or_stale_files_are_rebuilt_from_the_ledger(many, damage):
    open_local(many)
    damage(many)
    bounded = open_local(many)
    assert on_disk(many) == from_ledger(many)
    assert bounded.ids.tolist() == sorted(many.local_features(*local.READABLE))


def test_another_ledger_at_the_same_path_is_not_served_from_the_old_files(many, works_dir, account, tmp_path):
    open_local(many)
    path = many.path
    many.close()
    path.unlink()
    folder = local_folder(many)
    with Ledger.create(path) as other:
        register(other, works_dir / FLOW, account)
        assert open_local(other, folder).ids.tolist() == [1]
        assert on_disk(other) == from_ledger(other)


def test_the_ledger_reads_blobs_of_a_few_works_and_in_batches_on_each_backend(registered_ledger):
    led = registered_ledger
    every = led.local_features(*local.READABLE)
    assert led.local_features_of([3, 1, 99], *local.READABLE) == {1: every[1], 3: every[3]}
    assert [w for batch in led.local_feature_batches(local.READABLE, 1, 5, size=2) for w, _ in batch] == [2, 3, 4, 5]
    seq, digest, top, count = led.local_feature_state(local.READABLE, 4)
    assert (top, count) == (6, 4) and led.entry_hash_at(seq) == digest
    bounded = open_local(led)  # PostgreSQL: the folder is in the data directory
    assert bounded.ids.tolist() == sorted(every)
    assert bounded.features_of([2])[2].descriptors.tobytes() == local.decode(every[2]).descriptors.tobytes()


def test_the_mode_is_chosen_by_size_or_forced(many, monkeypatch):
    monkeypatch.delenv(localindex.ENV)
    index = Index()
    localindex.attach(index, many)  # 36 works: the exact in-memory index, as before
    assert index.bounded is None and len(index.local_blobs) == 36
    monkeypatch.setattr(localindex, "EXACT_MAX_WORKS", 35)
    index = Index()
    localindex.attach(index, many)  # every work has a learned vector: the vectors shortlist
    assert isinstance(index.bounded, VectorIndex) and len(index.bounded) == 36 and not index.local_blobs
    for mode, kind in (("words", localindex.WordIndex), ("bounded", VectorIndex), ("exact", type(None))):
        monkeypatch.setenv(localindex.ENV, mode)
        index = Index()
        localindex.attach(index, many)
        assert isinstance(index.bounded, kind) and (len(index.local_blobs) == 36) == (mode == "exact")
    monkeypatch.setenv(localindex.ENV, "fast")
    with pytest.raises(UsageError, match="PROVENANCE_LOCAL_INDEX='fast' is not a local index mode"):
        localindex.attach(Index(), many)


def test_written_lists_past_65536_works_give_every_row_its_votes(tmp_path):
    """The written lists keep 16-bit rows per block of 65,536: over three blocks (and with a small rewrite chunk),
    every row's words come back, and a vote scores each row by the words it shares with the query; each posting
    keeps its position, which the re-rank's gather reads back for the candidate rows."""
    rng = np.random.default_rng(5)
    n = 140_000
    lists = [np.unique(rng.integers(0, 300, rng.integers(1, 6))).astype(np.uint16) for _ in range(n)]
    m = {"rows": 0, "words": 0, "sealed": 0, "sealed_words": 0, "last_id": 0}
    ids = np.arange(1, n + 1, dtype=np.int32) * 3  # work ids are not rows
    positions = [np.stack([np.full(len(x), i % 251), x % 256], 1).astype(np.uint8) for i, x in enumerate(lists)]
    localindex.append(tmp_path, m, ids[:90_000], lists[:90_000], positions[:90_000])
    localindex.append(tmp_path, m, ids[90_000:], lists[90_000:], positions[90_000:])
    localindex.seal(tmp_path, m, chunk=50_000)
    index = localindex.load(tmp_path, m, None)
    assert index.blocks == 3
    from provenance._words_kernel import gather, vote

    query = np.array([7, 150, 299], np.int64)
    scores = np.zeros(n, np.float32)
    offsets, low, pxy = index._sealed
    vote(offsets, low, index.blocks, query, np.array([1, 2, 4], np.float32), scores)
    want = np.array([sum(w for q, w in zip(query, (1, 2, 4)) if q in set(x.tolist())) for x in lists], np.float32)
    assert np.array_equal(scores, want)
    rows = [r for r in (np.flatnonzero(want)[[0, -1]].tolist() + [70_001, 131_072]) if want[r] > 0][:3]
    slot = np.full(n, -1, np.int32)
    slot[rows] = np.arange(len(rows))
    first, count, at = localindex.by_word(query, np.arange(6, dtype=np.float32).reshape(3, 2))
    cw, cq = (np.zeros((len(rows), 8, 2), np.float32) for _ in range(2))
    k = np.zeros(len(rows), np.int32)
    gather(offsets, low, pxy, index.blocks, query, slot, first, count, at, 1, cw, cq, k)
    small = [np.zeros_like(x) for x in (cw, cq, k)]  # a hit buffer of 2: copied out many times, the same result
    gather(offsets, low, pxy, index.blocks, query, slot, first, count, at, 1, *small, buffer=2)
    assert all(np.array_equal(a, b) for a, b in zip((cw, cq, k), small))
    for s, r in enumerate(rows):
        shared = [w for w in query.tolist() if w in set(lists[r].tolist())]
        assert k[s] == len(shared)
        assert cw[s, :k[s]].tolist() == [[r % 251, w % 256] for w in shared]
        assert cq[s, :k[s]].tolist() == [at[first[w]].tolist() for w in shared]


def test_a_query_descriptor_votes_with_its_word_and_the_best_leaf_under_its_second_nearest_centroid():
    rng = np.random.default_rng(9)
    des = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    two = localindex.query_words(des).reshape(-1, 2)
    assert np.array_equal(two[:, 0], localindex.words(des))
    top, leaves = localindex.vocabulary()
    d64 = des.view(np.uint64)
    to_top = np.bitwise_count(d64[:, None, :] ^ top[None]).sum(2)
    second = np.argsort(to_top, axis=1, kind="stable")[:, 1]
    assert np.array_equal(two[:, 1] // localindex.BRANCH, second)
    leaf = np.bitwise_count(d64[:, None, :] ^ leaves[second]).sum(2).argmin(1)
    assert np.array_equal(two[:, 1] % localindex.BRANCH, leaf)


def test_the_kept_keypoints_cover_every_cell_and_every_part_of_the_stored_order():
    """ORB stores keypoints pyramid level by level: the few kept per cell must not be only its first (finest) ones,
    or a copy shown small finds none of the work's coarse keypoints among them."""
    rng = np.random.default_rng(2)
    xy = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(50, 100, (200, 2))]).astype(np.float32)
    kept = localindex.spread(xy, (100, 100), 40)
    cells = {(int(x * localindex.GRID / 100), int(y * localindex.GRID / 100)) for x, y in xy[kept]}
    assert len(kept) == 40 and len(cells) >= 6  # both halves of the image, several cells each
    in_order = np.sort(kept[kept < 200])  # the first cells' keypoints, in stored order
    assert in_order.min() < 40 and in_order.max() > 120  # from the start of the order to near its end


def test_a_work_is_indexed_by_its_most_stable_keypoints_in_spread_order_among_equals():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    stable = rng.integers(0, 3, 300).astype(np.uint8)
    kept = localindex.pick(xy, (100, 100), 120, stable)
    rest = np.setdiff1d(np.arange(300), kept)
    assert len(kept) == 120 and stable[kept].min() >= stable[rest].max()
    order = localindex.spread(xy, (100, 100), 300)
    least = stable[kept].min()  # the level that did not fit whole: taken in spread's order
    tied = [i for i in order if stable[i] == least]
    assert set(kept[stable[kept] == least]) == set(tied[:int((stable[kept] == least).sum())])
    assert localindex.pick(xy, (100, 100), 120, None).tolist() == localindex.spread(xy, (100, 100), 120).tolist()


@pytest.mark.parametrize("angle, scale", [(4, 0.85), (-3, 1.1)])
def test_the_stable_keypoints_a_work_keeps_are_found_again_in_a_copy_more_often(works_dir, angle, scale):
    """A copy matches a work only through the indexed keypoints it also has. Rotated, rescaled and JPEG-compressed
    (not one of the views stability is measured on), a copy of each example work has more of the work's most stable
    kept keypoints, with their word where the transform puts them, than of keypoints kept by position alone."""
    import cv2

    found = {"stable": 0, "spread": 0}
    for path in sorted(works_dir.iterdir()):
        im = decode(path.read_bytes()).image
        f, g = local.extract(im), local._prepare(im)
        h, w = g.shape
        again = _found_in_copy(f, g, cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), cv2.INTER_AREA)
        for rule, kept in (("stable", localindex.picks(f)[0]), ("spread", localindex.spread(f.xy, f.size, 96))):
            found[rule] += int(again[kept].sum())
    assert found["stable"] >= 1.25 * found["spread"], found


def _found_in_copy(f: local.Features, g: np.ndarray, A: np.ndarray, interpolation: int) -> np.ndarray:
    """Per plain keypoint of a work (features `f` of its prepared grey image `g`): whether a copy warped by `A` and
    JPEG-compressed has a keypoint within 4 px of where `A` puts it with its word among the copy's query words."""
    import cv2

    h, w = g.shape
    copy = cv2.warpAffine(g, A, (w, h), flags=interpolation)
    copy = cv2.imdecode(cv2.imencode(".jpg", copy, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_GRAYSCALE)
    cxy, cdes = local._detect(copy)
    cwords = localindex.query_words(cdes).reshape(-1, localindex.QUERY_WORDS)
    at = f.xy @ A[:, :2].T + A[:, 2]
    near = ((at[:, None] - cxy[None]) ** 2).sum(2) < 16
    return (near & (cwords[None] == localindex.words(f.descriptors)[:, None, None]).any(2)).any(1)


def test_a_work_with_few_stable_keypoints_is_counted_in_more_views_and_keeps_those_a_larger_crop_finds(works_dir):
    """orb/5: a soft picture (sunset-hills: few corners survive a rotation) is also counted in FEW_STABLE_VIEWS, and
    the keypoints those views add are found again more often in a crop of it shown 1.25x larger; a work with enough
    stable keypoints keeps its single-view counts."""
    import cv2

    def one_view(im):
        f, g = local.extract(im), local._prepare(im)
        counts = np.zeros(len(f.xy), np.uint8)
        localindex._count_views(g, f.xy, localindex.words(f.descriptors), localindex.STABILITY_VIEWS, counts)
        return f, g, counts

    f, g, counts = one_view(decode((works_dir / "flow-field.png").read_bytes()).image)
    assert np.count_nonzero(counts) >= localindex.FEW_STABLE and np.array_equal(f.stable, counts)
    f, g, counts = one_view(decode((works_dir / "sunset-hills.jpg").read_bytes()).image)
    assert np.count_nonzero(counts) < localindex.FEW_STABLE
    assert (f.stable >= counts).all() and np.count_nonzero(f.stable) >= 2 * np.count_nonzero(counts)
    h, w = g.shape
    A = cv2.getRotationMatrix2D((w / 2 + 7, h / 2 - 5), 0, 1.25)  # a crop off centre, shown larger
    again = _found_in_copy(f, g, A, cv2.INTER_LINEAR)
    added, never = (f.stable > 0) & (counts == 0), f.stable == 0  # marked by the added views only; by none
    assert added.sum() >= 10 and again[added].mean() >= 2 * again[never].mean(), (again[added].mean(),
                                                                                    again[never].mean())
    kept = localindex.pick(f.xy, f.size, localindex.FEW_STABLE, f.stable)  # the most stable come first
    assert again[kept].sum() > again[localindex.pick(f.xy, f.size, localindex.FEW_STABLE, counts)].sum()


def _geometry(work_words, work_xy, query_words, query_xy):
    """_words_kernel.gather and geometry for one row holding work_words at work_xy (its posting lists, as the
    delta's: one block, full rows), against a copy's words at query_xy."""
    from provenance._words_kernel import gather, geometry

    order = np.argsort(work_words, kind="stable")
    words, xy = np.asarray(work_words, np.int64)[order], np.asarray(work_xy, np.uint8)[order]
    offsets = np.zeros(localindex.WORDS + 1, np.int64)
    np.cumsum(np.bincount(words, minlength=localindex.WORDS), out=offsets[1:])
    qw = np.asarray(query_words, np.int64)
    first, count, at = localindex.by_word(qw, np.asarray(query_xy).reshape(-1, 2))
    cw, cq = (np.empty((1, localindex.GEOMETRY_MOST, 2), np.float32) for _ in range(2))
    n, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
    gather(offsets, np.zeros(len(words), np.int32), xy.ravel(), 1, np.unique(qw), np.zeros(1, np.int32), first,
           count, at, localindex.GEOMETRY_CAP, cw, cq, n)
    geometry(cw, cq, n, localindex.GEOMETRY_HYPOTHESES, localindex.GEOMETRY_MIN_PAIR, localindex.GEOMETRY_TOLERANCE,
             localindex.GEOMETRY_SCALE_BINS, localindex.GEOMETRY_ANGLE_BINS, localindex.GEOMETRY_MAX_LOG_SCALE, out)
    return int(out[0])


def test_the_geometric_check_counts_the_shared_words_one_similarity_transform_explains():
    rng = np.random.default_rng(4)
    words = rng.choice(localindex.WORDS, 150, replace=False)
    xy = rng.uniform(0, 255, (150, 2)).round()
    # A copy: 40 of the work's keypoints, rotated 7 degrees, shrunk to 0.6, moved, with 1-unit noise; and 30 of
    # its words elsewhere (chance collisions).
    a = np.radians(7)
    R = 0.6 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    true = rng.choice(150, 40, replace=False)
    moved = xy[true] @ R.T + [30, 50] + rng.normal(0, 0.7, (40, 2))
    chance = rng.choice(np.setdiff1d(np.arange(150), true), 30, replace=False)
    qwords = np.concatenate([words[true], words[chance]])
    qxy = np.concatenate([moved, rng.uniform(0, 255, (30, 2))])
    assert 36 <= _geometry(words, xy, qwords, qxy) <= 41
    # Every shared word at a random place: no transform explains more than a handful.
    assert _geometry(words, xy, qwords, rng.uniform(0, 255, (70, 2))) <= 5
    # The mirror image of the copy is not a similarity transform of the work: the mirrored view must fit it.
    mirrored = qxy.copy()
    mirrored[:, 0] = 255 - mirrored[:, 0]
    assert _geometry(words, xy, qwords, mirrored) <= 5
    assert _geometry(words, xy, qwords[:1], qxy[:1]) == 1 and _geometry(words, xy, [], np.zeros((0, 2))) == 0


def test_the_geometric_check_bins_pairs_by_half_octaves_of_scale_and_sixteenths_of_a_turn():
    """Its bins come from a float's exponent bits and tangents, not a logarithm and an arc tangent: they must be
    the bins of log2(scale) in half octaves and of the rotation angle, in every quadrant, at every scale."""
    from provenance._words_kernel import pair_bins

    rng = np.random.default_rng(6)
    w = rng.normal(0, 50, (20_000, 2)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi, len(w))
    scale = 2 ** rng.uniform(-4, 4, len(w))
    q = (w * np.cos(a)[:, None] + np.stack([-w[:, 1], w[:, 0]], 1) * np.sin(a)[:, None]) * scale[:, None]
    q = q.astype(np.float32)
    got = pair_bins(w, q, localindex.GEOMETRY_SCALE_BINS, localindex.GEOMETRY_ANGLE_BINS)
    half_octaves = np.log2(scale) / 0.5 + localindex.GEOMETRY_SCALE_BINS // 2
    turns = a / (2 * np.pi) * localindex.GEOMETRY_ANGLE_BINS
    clear = (np.abs(half_octaves - half_octaves.round()) > 1e-3) & (np.abs(turns - turns.round()) > 1e-3)
    assert clear.mean() > 0.99
    assert np.array_equal(got[clear, 0], np.floor(half_octaves[clear]))
    assert np.array_equal(got[clear, 1], np.floor(turns[clear]) % localindex.GEOMETRY_ANGLE_BINS)
    assert got[:, 0].min() < 0 and got[:, 0].max() >= localindex.GEOMETRY_SCALE_BINS  # past 1/8 and 8: dropped


def test_the_geometric_check_tries_transforms_from_all_over_the_fullest_bin():
    """Correspondences come in word order. A few wrong ones just off their right place (a keypoint's neighbour
    sharing its word) pair with every right one inside the right (scale, rotation) bin: transforms tried in pair
    order would all start from them, each nearly right and explaining almost nothing (one of benchmarks/scale.py's
    rotated copies scored 4 where 18 of its 45 correspondences fit one transform)."""
    rng = np.random.default_rng(5)
    words = np.sort(rng.choice(localindex.WORDS, 60, replace=False))
    xy = rng.uniform(20, 235, (60, 2)).round()
    a = np.radians(-5)
    R = 1.2 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    qxy = xy @ R.T - [20, 30] + rng.normal(0, 0.5, (60, 2))
    near = np.arange(6)  # the lowest words: the first correspondences
    qxy[near] += rng.choice([-1, 1], (6, 2)) * 6.0  # ~8.5 units off: outside the tolerance of 4
    assert _geometry(words, xy, words, qxy) >= 50


def test_a_work_whose_shared_words_fall_into_place_outranks_works_sharing_more_words_anywhere(tmp_path, monkeypatch):
    """At a million works every copy shares words with thousands of works by chance. Here 30 decoy works share
    more of a cropped, rotated copy's words than its own work does, at random places: the word score alone ranks
    a decoy first, the geometric re-rank the work."""
    work = picture(7)
    w, h = work.size
    copy = work.rotate(4, resample=Image.BICUBIC).crop((w // 8, h // 8, w - w // 8, h - h // 8))
    view = localindex.views(local.Query(copy))[:1]
    words, xy = localindex.work_entry(local.extract(work))
    asked = np.unique(localindex.query_words(view[0][0]))
    shared = np.intersect1d(words, asked)
    assert len(shared) >= 15
    rng = np.random.default_rng(1)
    lists, positions = [words], [xy]
    for _ in range(30):  # each shares 1.5 times as many of the copy's words, and has as many words in all
        some = rng.choice(asked, int(len(shared) * 1.5), replace=False)
        rest = rng.choice(np.setdiff1d(np.arange(localindex.WORDS), asked), len(words) - len(some), replace=False)
        decoy = np.union1d(some, rest)
        lists.append(decoy.astype(np.uint16))
        positions.append(rng.integers(0, 256, (len(decoy), 2)).astype(np.uint8))
    m = {"rows": 0, "words": 0, "sealed": 0, "sealed_words": 0, "last_id": 0}
    localindex.append(tmp_path, m, np.arange(1, 32, dtype=np.int32), lists, positions)
    localindex.seal(tmp_path, m)
    index = localindex.load(tmp_path, m, None)
    monkeypatch.setattr(localindex, "SHORTLIST", 1)
    assert index.shortlist(view) == [1]
    monkeypatch.setattr(localindex, "RERANK", 0)
    assert index.shortlist(view) != [1]


def test_the_geometric_check_re_ranks_more_candidates_in_a_larger_registry(tmp_path, monkeypatch):
    """Chance works outscore a copy's own work in proportion to the registry: a view re-ranks RERANK of the best word
    scores per million works, and at least RERANK_MIN."""
    monkeypatch.setattr(localindex, "RERANK", 100_000)  # a tenth of the works
    monkeypatch.setattr(localindex, "RERANK_MIN", 50)
    rng = np.random.default_rng(5)
    des = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    asked = np.unique(localindex.query_words(des))
    others = np.setdiff1d(np.arange(localindex.WORDS), asked)
    view = (des, rng.uniform(0, 300, (len(des), 2)).astype(np.float32), (300, 300))
    re_ranked = {}
    for n in (100, 1000):
        lists = [np.union1d(rng.choice(asked, 8, replace=False), rng.choice(others, 30, replace=False))
                 .astype(np.uint16) for _ in range(n)]  # every work shares some of the copy's words
        positions = [rng.integers(0, 256, (len(x), 2)).astype(np.uint8) for x in lists]
        m = {"rows": 0, "words": 0, "sealed": 0, "sealed_words": 0, "last_id": 0}
        (tmp_path / str(n)).mkdir()
        localindex.append(tmp_path / str(n), m, np.arange(1, n + 1, dtype=np.int32), lists, positions)
        localindex.seal(tmp_path / str(n), m)
        cand, _, n_of, _ = localindex.load(tmp_path / str(n), m, None).candidates(*view)
        assert n_of.min() > 0  # each one's correspondences gathered for the check
        re_ranked[n] = len(cand)
    assert re_ranked == {100: 50, 1000: 100}
    monkeypatch.setattr(localindex, "RERANK", 0)
    cand, _, n_of, g = localindex.load(tmp_path / "1000", m, None).candidates(*view)
    assert len(cand) == localindex.SHORTLIST and not n_of.any() and not g.any()


def test_words_in_many_works_still_vote_but_place_nothing(tmp_path, monkeypatch):
    """A copy whose words are all common (each in more than STOP_FRACTION of the works) still finds the work that
    shares the most of them; those words give the geometric check no correspondences."""
    monkeypatch.setattr(localindex, "STOP_MIN", 10)
    rng = np.random.default_rng(4)
    des = rng.integers(0, 256, (12, 32), dtype=np.uint8)
    common = np.unique(localindex.query_words(des))
    others = np.setdiff1d(np.arange(localindex.WORDS), common)
    lists = [common]  # row 0 (work 1) has every one of the copy's words
    lists += [np.union1d(rng.choice(common, len(common) // 2, replace=False), rng.choice(others, 20, replace=False))
              for _ in range(99)]  # half of them
    lists += [rng.choice(others, 30, replace=False) for _ in range(100)]  # none
    lists = [np.sort(x).astype(np.uint16) for x in lists]
    positions = [rng.integers(0, 256, (len(x), 2)).astype(np.uint8) for x in lists]
    m = {"rows": 0, "words": 0, "sealed": 0, "sealed_words": 0, "last_id": 0}
    localindex.append(tmp_path, m, np.arange(1, 201, dtype=np.int32), lists, positions)
    localindex.seal(tmp_path, m)
    index = localindex.load(tmp_path, m, None)
    assert index.unplaced[common].all() and not index.unplaced[others].any()
    view = [(des, rng.uniform(0, 300, (len(des), 2)).astype(np.float32), (300, 300))]
    short = index.shortlist(view)
    assert short[0] == 1 and set(short) <= set(range(1, 101)) and len(short) == localindex.SHORTLIST


def test_a_work_indexed_by_more_words_than_most_is_not_scored_down_for_them(tmp_path):
    """Works with few stable keypoints are indexed by FEW_PLAIN of them: their word score is normalised as if they
    had NORM_MOST words, not all of theirs; a work with fewer words than that still scores higher."""
    rng = np.random.default_rng(8)
    des = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    asked = np.unique(localindex.query_words(des))
    others = np.setdiff1d(np.arange(localindex.WORDS), asked)
    most = localindex.NORM_MOST
    lists = [np.union1d(asked, rng.choice(others, n - len(asked), replace=False)).astype(np.uint16)
             for n in (most, most + 90, most - 60)]
    lists += [rng.choice(others, 30, replace=False).astype(np.uint16) for _ in range(20)]
    lists = [np.sort(x) for x in lists]
    positions = [rng.integers(0, 256, (len(x), 2)).astype(np.uint8) for x in lists]
    m = {"rows": 0, "words": 0, "sealed": 0, "sealed_words": 0, "last_id": 0}
    localindex.append(tmp_path, m, np.arange(1, len(lists) + 1, dtype=np.int32), lists, positions)
    localindex.seal(tmp_path, m)
    index = localindex.load(tmp_path, m, None)
    cand, scores, _, _ = index.candidates(des, rng.uniform(0, 300, (len(des), 2)).astype(np.float32), (300, 300))
    score = dict(zip(cand.tolist(), scores.tolist()))
    assert score[0] == pytest.approx(score[1]) and score[2] > score[0] * 1.2


def test_the_best_rows_are_the_k_best_normalised_scores_and_only_ties_of_their_bin_beyond():
    from provenance._words_kernel import best_rows

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, 100_000).astype(np.float32)  # many ties, and rows with no vote (0)
    inv_norm = rng.uniform(0.05, 1, 100_000).astype(np.float32)
    rows, s = best_rows(scores, inv_norm, 500)
    want = scores * inv_norm
    kth = np.sort(want)[-500]
    assert len(rows) >= 500 and set(np.flatnonzero(want > kth).tolist()) <= set(rows.tolist())
    assert np.array_equal(s, scores[rows] * inv_norm[rows]) and s.min() >= kth * 0.99 and len(rows) < 600
    few_scores = np.zeros(100_000, np.float32)
    voted = rng.choice(100_000, 300, replace=False)
    few_scores[voted] = scores[voted] + 1
    few, fs = best_rows(few_scores, inv_norm, 500)  # fewer rows with a vote than asked for: all of them
    assert np.array_equal(few, np.sort(voted)) and len(fs) == 300


def test_a_work_with_few_keypoints_found_again_is_indexed_by_more_of_them(works_dir):
    """A soft picture (sunset-hills), with fewer than FEW_FOUND keypoints found again in any view, is indexed by
    FEW_PLAIN plain keypoints (or all it has), and a 25 % crop of it finds more of its indexed ones for that; a work
    with many stable keypoints keeps PER_WORK's."""
    import cv2

    flow = local.extract(decode((works_dir / "flow-field.png").read_bytes()).image)
    assert np.count_nonzero(flow.stable) >= localindex.FEW_FOUND
    assert len(localindex.picks(flow)[0]) == localindex.PER_WORK[0]
    im = decode((works_dir / "sunset-hills.jpg").read_bytes()).image
    f, g = local.extract(im), local._prepare(im)
    assert np.count_nonzero(f.stable) < localindex.FEW_FOUND
    plain, eq = localindex.picks(f)
    assert len(plain) == min(localindex.FEW_PLAIN, len(f.xy)) > localindex.PER_WORK[0]  # it has 130
    assert len(eq) == localindex.PER_WORK[1]
    assert set(localindex.pick(f.xy, f.size, localindex.PER_WORK[0], f.stable)) < set(plain)  # the same first
    h, w = g.shape
    again = _found_in_copy(f, g, cv2.getRotationMatrix2D((w / 2, h / 2), 0, 4 / 3), cv2.INTER_LINEAR)
    assert again[plain].sum() >= 1.25 * again[plain[:localindex.PER_WORK[0]]].sum(), again[plain].sum()


def test_the_kernels_compile_where_neither_the_install_nor_the_home_can_hold_numbas_cache(tmp_path):
    """A read-only install run by a user with no writable home (a container worker): Numba has nowhere to keep
    `cache=True` code and refused to import the kernels; `_jit.ensure_cache` sends the cache to the temporary
    directory. The package is copied with a file where its __pycache__ folder would go, and HOME's .cache is a
    file too."""
    shutil.copytree(Path(provenance.__file__).parent, tmp_path / "provenance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "provenance" / "__pycache__").write_text("")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".cache").write_text("")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"), PYTHONPATH=str(tmp_path))
    code = ("import numpy as np; from provenance import localindex; from numba.core import config;"
            " print(localindex.words(np.zeros((2, 32), np.uint8)).tolist(), config.CACHE_DIR)")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    words, cache = done.stdout.split()[:-1], done.stdout.split()[-1]
    assert " ".join(words) == str(localindex.words(np.zeros((2, 32), np.uint8)).tolist())
    assert Path(cache).parent == tmp_path / "tmp"
    assert list(Path(cache).rglob("_words_kernel.assign-*.nbi"))  # the compiled code was kept there
