"""Detection quality on the example feed, at the library level: examples/truth.json is the answer key."""
from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

import provenance
from provenance import _parallel
from provenance import local
from provenance.fingerprints import ORB, PDQ, PHASH
from provenance.matching import AGREEMENT, THRESHOLDS, explain

# Every edit in the example feed: with the inner view, the PDQ+pHash agreement rule and local features, all of them
# must be found (tests/test_robust_matching.py covers each family on more works).
ROBUST = {"exact_copy", "hflip", "rotate_90", "rescale_40pct_jpeg_q35", "grayscale", "brightness_contrast",
          "webp_reencode", "center_crop_10pct", "caption_bar", "watermark_text", "letterbox"}
GEOMETRY = {"angle", "scale", "crop", "placed", "flip", "ncc", "coverage", "inliers", "bands"}


@pytest.fixture
def registered(ledger, works_dir, account):
    results = list(provenance.register(ledger, [works_dir], account, artist="Aigerim", workers=1).results)
    assert len(results) == 6 and all(r.created for r in results)
    return ledger


@pytest.fixture
def work_file_of(registered):
    """work id -> the examples/works file name it was registered from."""
    return {w.id: w.title for w in registered.works()}  # titles default to the file name


def _scan(ledger, paths, workers):
    return list(provenance.scan(ledger, paths, workers=workers).results)


def _by_attack(truth, attack):
    [item] = [name for name, t in truth.items() if t["attack"] == attack]
    return item


def test_feed_against_truth(registered, work_file_of, feed_dir, truth):
    results = {Path(r.item).name: r for r in _scan(registered, [feed_dir], workers=1)}
    assert set(results) == set(truth)
    assert all(r.error is None for r in results.values())

    wrong, found = [], set()
    for item, t in truth.items():
        r = results[item]
        if t["work"] is None:
            assert r.matches == [], f"distractor {item} matched {r.matches}"
            continue
        if r.matches:
            found.add(t["attack"])
            wrong += [(item, work_file_of[m.work_id]) for m in r.matches if work_file_of[m.work_id] != t["work"]]
    assert wrong == []
    assert ROBUST <= found, f"missed: {ROBUST - found}"


def test_feed_covers_every_kind_of_edit(truth):
    assert {t["attack"] for t in truth.values()} - {"distractor"} == ROBUST


def test_scores_and_thresholds(registered, feed_dir):
    matches = [m for r in _scan(registered, [feed_dir], workers=1) for m in r.matches]
    assert matches
    for m in matches:
        assert 0 < m.score <= 1
        if m.sha256_exact:
            assert (m.signal, m.distance, m.score, m.confidence) == ("sha256/1", 0, 1.0, "exact")
            continue
        assert 0.5 <= m.score  # every accepted signal scores 0.5 at its decision threshold
        assert m.confidence == ("high" if m.score >= 0.75 else "medium")
        if m.signal == ORB:
            # Local features have no Hamming distance; the decision rule is inliers and pixel correlation.
            assert m.distance is None and set(m.geometry) == GEOMETRY
            assert m.geometry["inliers"] >= local.MIN_INLIERS and m.geometry["ncc"] >= local.MIN_NCC
            assert explain(m).endswith(f"{m.geometry['inliers']} matching keypoints,"
                                       f" pixel correlation {m.geometry['ncc']:.2f}")
        elif m.signal == f"{PDQ}+{PHASH}":
            # Agreement of two weaker signals: the reported distance is PDQ's, within the agreement bound.
            assert 0 <= m.distance <= AGREEMENT[PDQ]
            assert "pHash agree" in explain(m)
        else:
            assert m.signal in THRESHOLDS
            assert 0 <= m.distance <= THRESHOLDS[m.signal]


def test_exact_copy(registered, work_file_of, feed_dir, truth):
    item = _by_attack(truth, "exact_copy")
    [r] = _scan(registered, [feed_dir / item], workers=1)
    [m] = r.matches
    assert work_file_of[m.work_id] == truth[item]["work"]
    assert m.sha256_exact and m.signal == "sha256/1" and m.score == 1.0
    assert r.sha256 == registered.work(m.work_id).sha256
    assert explain(m) == "identical file bytes (SHA-256)"


@pytest.mark.parametrize("attack, transform", [("hflip", "flipped horizontally"),
                                               ("rotate_90", "rotated 90° counter-clockwise")])
def test_geometric_edits_are_explained(registered, work_file_of, feed_dir, truth, attack, transform):
    item = _by_attack(truth, attack)
    [r] = _scan(registered, [feed_dir / item], workers=1)
    best = r.matches[0]
    assert work_file_of[best.work_id] == truth[item]["work"]
    assert not best.sha256_exact
    assert best.transform == transform
    assert explain(best).startswith(transform + ":")


@pytest.mark.parametrize("attack", ["rescale_40pct_jpeg_q35", "grayscale", "webp_reencode", "brightness_contrast"])
def test_photometric_edits_are_found_untransformed(registered, work_file_of, feed_dir, truth, attack):
    for item in [name for name, t in truth.items() if t["attack"] == attack]:
        [r] = _scan(registered, [feed_dir / item], workers=1)
        assert r.matches, item
        best = r.matches[0]
        assert work_file_of[best.work_id] == truth[item]["work"]
        assert best.transform == "none" and not best.sha256_exact


def test_nothing_matches_an_empty_ledger(ledger, feed_dir):
    results = _scan(ledger, [feed_dir], workers=1)
    assert len(results) == 17
    assert all(r.matches == [] and r.error is None for r in results)


def test_two_workers_give_the_same_results(registered, feed_dir, tmp_path, monkeypatch):
    feeds = tmp_path / "feeds"
    for copy in ("a", "b", "c"):
        shutil.copytree(feed_dir, feeds / copy)
    n_items = 3 * 17
    assert n_items >= 4 * 2  # below this, _parallel.imap would stay in-process

    pools = []
    real_get_context = multiprocessing.get_context

    def spy(method=None):
        pools.append(method)
        return real_get_context(method)

    monkeypatch.setattr(_parallel.multiprocessing, "get_context", spy)

    one = _scan(registered, [feeds], workers=1)
    assert pools == []
    two = _scan(registered, [feeds], workers=2)
    assert pools == ["fork"]  # the process pool really ran

    def key(results):
        return [(Path(r.item).relative_to(feeds).as_posix(), r.sha256, r.error, r.matches) for r in results]

    assert len(one) == n_items
    assert key(two) == key(one)  # same matches, same input order
    assert [k[0] for k in key(one)] == sorted(k[0] for k in key(one))
    assert sum(bool(r.matches) for r in two) == 3 * sum(bool(r.matches) for r in _scan(registered, [feed_dir], 1))
