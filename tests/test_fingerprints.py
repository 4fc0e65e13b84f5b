"""Tests for provenance.fingerprints: the hex encoding, versioned ids, determinism and the dihedral variants."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import provenance
from provenance.fingerprints import (
    ALGORITHMS,
    BITS,
    CENTRE,
    DIHEDRAL,
    LEARNED,
    ORB,
    PDQ,
    PDQEQ,
    PHASH,
    SHA256,
    bits_to_hex,
    fingerprint,
    fingerprint_decoded,
    hamming,
    hex_to_bits,
)
from provenance import local
from provenance.imaging import decode
from provenance.index import Index
from provenance.matching import find_matches
from provenance.selftest import GOLDEN

ALGORITHM_ID = re.compile(r"^[a-z][a-z0-9]*/[1-9][0-9]*$")
# Stored value sizes: the hashes by BITS; orb/1 stores the SHA-256 of its feature blob (the blob lives elsewhere).
# learned/1 stores 128 signed bytes.
STORED_BITS = {**BITS, ORB: 256, LEARNED: 1024, CENTRE: 1024}

bit_arrays = st.integers(1, 64).flatmap(
    lambda n: st.lists(st.integers(0, 1), min_size=8 * n, max_size=8 * n)).map(lambda b: np.array(b, np.uint8))
hex_strings = st.binary(min_size=1, max_size=64).map(bytes.hex)


def same_length_hex_pair():
    return st.integers(1, 64).flatmap(
        lambda n: st.tuples(st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n))
    ).map(lambda ab: (ab[0].hex(), ab[1].hex()))


# --- encoding -----------------------------------------------------------------------------------------------------

def test_bits_to_hex_is_most_significant_bit_first():
    assert bits_to_hex([1, 0, 0, 0, 0, 0, 0, 0]) == "80"
    assert bits_to_hex([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]) == "01fe"
    assert list(hex_to_bits("a5")) == [1, 0, 1, 0, 0, 1, 0, 1]


@given(bit_arrays)
def test_bits_hex_bits_round_trip(bits):
    h = bits_to_hex(bits)
    assert re.fullmatch(r"[0-9a-f]+", h) and len(h) * 4 == len(bits)
    assert np.array_equal(hex_to_bits(h), bits)


@given(hex_strings)
def test_hex_bits_hex_round_trip(h):
    assert bits_to_hex(hex_to_bits(h)) == h
    assert bits_to_hex(hex_to_bits(h.upper())) == h


@given(same_length_hex_pair())
def test_hamming_is_popcount_of_xor(pair):
    a, b = pair
    assert hamming(a, a) == 0
    assert hamming(a, b) == hamming(b, a)
    assert hamming(a, b) == int(np.count_nonzero(hex_to_bits(a) ^ hex_to_bits(b)))


@given(same_length_hex_pair(), st.data())
def test_hamming_triangle_inequality(pair, data):
    a, b = pair
    c = data.draw(st.binary(min_size=len(a) // 2, max_size=len(a) // 2)).hex()
    assert hamming(a, c) <= hamming(a, b) + hamming(b, c)


# --- ids and determinism ------------------------------------------------------------------------------------------

def test_algorithm_ids_are_versioned_and_sized():
    assert len(set(ALGORITHMS)) == len(ALGORITHMS)
    assert set(STORED_BITS) == set(ALGORITHMS)  # every algorithm has a known stored size, and only those do
    assert ORB not in BITS  # orb/1 is not a Hamming-comparable hash: nothing may compare its values bitwise
    for alg in ALGORITHMS:
        assert ALGORITHM_ID.match(alg), alg
        assert STORED_BITS[alg] % 8 == 0


def _all_images(works_dir):
    return sorted(works_dir.iterdir()) + sorted(p for p in GOLDEN.iterdir() if p.suffix != ".json")


def test_every_fingerprint_carries_its_algorithm_id(works_dir):
    for path in _all_images(works_dir):
        data = path.read_bytes()
        fps = fingerprint(data)
        stored = fps.stored()
        assert sorted(s["algorithm"] for s in stored) == sorted(ALGORITHMS), path.name
        for s in stored:
            assert re.fullmatch(r"[0-9a-f]+", s["value"]) and len(s["value"]) * 4 == STORED_BITS[s["algorithm"]]
            if s["algorithm"] in (PDQ, PDQEQ):  # PDQ hashes come with PDQ's quality
                assert 0 <= s["quality"] <= 100
            else:
                assert s["quality"] is None
        assert fps.get(SHA256).value == fps.sha256 == hashlib.sha256(data).hexdigest()
        # orb/1's value is the SHA-256 of the blob the ledger keeps next to the entry, and the blob decodes.
        assert fps.get(ORB).value == hashlib.sha256(fps.local_features).hexdigest(), path.name
        assert local.decode(fps.local_features).size == local.extract(decode(data).image).size


def test_local_features_can_be_skipped_on_the_query_side(works_dir):
    data = (works_dir / "brush-abstract.jpg").read_bytes()
    full = fingerprint_decoded(data, decode(data), variants=True)
    light = fingerprint_decoded(data, decode(data), variants=True, local_features=False)
    assert light.local_features is None and light.get(ORB) is None and light.get(LEARNED) is None
    assert light.get(CENTRE) is None and full.get(CENTRE) is not None
    assert [f for f in full.fingerprints if f.algorithm not in (ORB, LEARNED, CENTRE)] == list(light.fingerprints)
    assert full.local_features == fingerprint(data).local_features


def test_registered_works_store_every_algorithm_by_id(ledger, account, works_dir):
    results = list(provenance.register(ledger, [works_dir], account, artist="Aigerim").results)
    assert [r.error for r in results] == [None] * 6
    for work in ledger.works():
        assert sorted(work.fingerprints) == sorted(ALGORITHMS)
        for alg, f in work.fingerprints.items():
            assert f.algorithm == alg


@pytest.mark.parametrize("name", ["sunset-hills.jpg", "flow-field.png", "photo.jpg", "gray16.png", "palette.gif"])
def test_fingerprint_is_deterministic_and_variants_do_not_change_stored_values(works_dir, name):
    path = works_dir / name if (works_dir / name).exists() else GOLDEN / name
    data = path.read_bytes()
    first, again = fingerprint(data), fingerprint(data)
    assert first == again
    # selftest pins the plain path; register and scan use variants=True. Both must store the same values.
    with_variants = fingerprint(data, variants=True)
    assert with_variants.fingerprints == first.fingerprints
    assert with_variants.pdq_variants[0] == first.get(PDQ).value
    assert with_variants.phash_variants[0] == first.get(PHASH).value
    assert len(with_variants.pdq_variants) == len(with_variants.phash_variants) == len(DIHEDRAL) == 8


# --- dihedral variants --------------------------------------------------------------------------------------------

T = Image.Transpose
# Each Pillow transpose with the DIHEDRAL name that describes it, and the same transform written in numpy on
# (row, column) arrays with row 0 at the top, so the names are checked against geometry, not against Pillow's docs.
TRANSFORMS = [
    (None, "none", lambda a: a),
    (T.FLIP_LEFT_RIGHT, "flipped horizontally", lambda a: a[:, ::-1]),
    (T.FLIP_TOP_BOTTOM, "flipped vertically", lambda a: a[::-1, :]),
    (T.ROTATE_90, "rotated 90° counter-clockwise", lambda a: np.rot90(a, 1)),
    (T.ROTATE_180, "rotated 180°", lambda a: np.rot90(a, 2)),
    (T.ROTATE_270, "rotated 90° clockwise", lambda a: np.rot90(a, -1)),
    (T.TRANSPOSE, "transposed (mirrored across the main diagonal)", lambda a: a.transpose(1, 0, 2)),
    (T.TRANSVERSE, "mirrored across the anti-diagonal", lambda a: a[::-1, ::-1].transpose(1, 0, 2)),
]
IDS = [name for _, name, _ in TRANSFORMS]
# The mandala is symmetric under most of these, so it has no single right answer; the others are asymmetric.
ASYMMETRIC = ["sunset-hills.jpg", "geometric-poster.png"]


def _apply(im: Image.Image, op) -> Image.Image:
    return im if op is None else im.transpose(op)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)  # lossless and fast: the copy differs from the work only by the transform
    return buf.getvalue()


def test_dihedral_names_describe_the_geometry():
    assert sorted(IDS) == sorted(DIHEDRAL)
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 3 wide, 2 high: every transform is distinct
    im = Image.fromarray(a, "RGB")
    for op, name, numpy_op in TRANSFORMS:
        assert np.array_equal(np.asarray(_apply(im, op)), numpy_op(a)), name
    # Clockwise means the top row becomes the right column.
    cw = np.asarray(im.transpose(T.ROTATE_270))
    assert np.array_equal(cw[:, -1], a[0])


@pytest.mark.parametrize("name", ASYMMETRIC)
@pytest.mark.parametrize("op, transform, _", TRANSFORMS, ids=IDS)
def test_variant_closest_to_original_is_the_one_named_for_the_transform(works_dir, name, op, transform, _):
    with Image.open(works_dir / name) as src:
        copy = _apply(src.convert("RGB"), op)
    original = fingerprint((works_dir / name).read_bytes())
    query = fingerprint(_png(copy), variants=True)
    k = DIHEDRAL.index(transform)
    for signal, variants in ((PDQ, query.pdq_variants), (PHASH, query.phash_variants)):
        distances = [hamming(v, original.get(signal).value) for v in variants]
        others = distances[:k] + distances[k + 1:]
        assert distances[k] < min(others), (signal, distances)
        assert distances[k] <= BITS[signal] // 8, (signal, distances)  # near-identical, whatever the thresholds


def test_find_matches_reports_the_transform(ledger, account, works_dir):
    results = list(provenance.register(ledger, [works_dir], account, artist="Aigerim").results)
    ids = {Path(r.item).name: r.work_id for r in results}
    assert len(ids) == 6 and None not in ids.values()
    index = Index(ledger.works())

    wrong = {}
    for name in ASYMMETRIC:
        with Image.open(works_dir / name) as src:
            rgb = src.convert("RGB")
        for op, transform, _ in TRANSFORMS:
            matches = find_matches(fingerprint(_png(_apply(rgb, op)), variants=True), index)
            got = [(m.work_id, m.transform) for m in matches]
            if got[:1] != [(ids[name], transform)] or len(got) != 1:
                wrong[(name, transform)] = got
    assert wrong == {}


def test_find_matches_on_identical_bytes_says_so(ledger, account, works_dir):
    list(provenance.register(ledger, [works_dir / "flow-field.png"], account, artist="Aigerim").results)
    [work] = ledger.works()
    [match] = find_matches(fingerprint((works_dir / "flow-field.png").read_bytes(), variants=True),
                           Index(ledger.works()))
    assert (match.work_id, match.signal, match.distance, match.sha256_exact) == (work.id, SHA256, 0, True)
    assert match.transform == "none (identical bytes)"
