"""Tests for provenance.learned: the shipped network ranks each example copy's work first, its stored form keeps the
vector, views undo rotations and mirrors, and a changed network file or golden vector is refused."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from PIL import Image, ImageOps

from provenance import learned, selftest
from provenance.errors import ProvenanceError, SelftestError
from provenance.imaging import decode

EXAMPLES = learned.MODEL_FILE.parent.parent.parent / "examples"


def picture(path) -> Image.Image:
    return decode(path.read_bytes()).image


@pytest.fixture(scope="module")
def works():
    names = sorted(p.name for p in (EXAMPLES / "works").iterdir())
    return names, np.stack([learned.embed(picture(EXAMPLES / "works" / n))[0] for n in names])


def test_every_example_copy_ranks_its_own_work_first(works):
    names, vectors = works
    truth = json.loads((EXAMPLES / "truth.json").read_text())
    copies = {post: t["work"] for post, t in truth.items() if t["work"]}
    assert len(copies) >= 10
    for post, work in copies.items():
        views = learned.embed(picture(EXAMPLES / "feed" / post), views=8)
        assert views.shape == (8, learned.DIM)
        assert np.allclose(np.linalg.norm(views, axis=1), 1, atol=1e-5)
        scores = (views @ vectors.T).max(0)
        assert names[int(np.argmax(scores))] == work, (post, truth[post]["attack"], dict(zip(names, scores)))


def test_views_undo_rotations_and_mirrors(works):
    names, vectors = works
    work = picture(EXAMPLES / "works" / names[0])
    for copy in (ImageOps.mirror(work), work.rotate(90, expand=True), ImageOps.flip(work.rotate(90, expand=True))):
        alone = float(learned.embed(copy)[0] @ vectors[0])
        best = float((learned.embed(copy, views=8) @ vectors[0]).max())
        assert best > 0.99 > alone


def test_stored_value_keeps_the_vector(works):
    _, vectors = works
    for v in vectors:
        value = learned.to_hex(v)
        assert len(value) == 2 * learned.DIM
        assert float(learned.from_hex(value) @ v) > 0.999
    assert np.array_equal(learned.quantise(np.array([1.0, -1.0, 0.5, 0.0])), [127, -127, 64, 0])


def test_a_changed_network_file_is_refused(tmp_path, monkeypatch):
    changed = tmp_path / "descriptor-1.onnx"
    shutil.copyfile(learned.MODEL_FILE, changed)
    with changed.open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    monkeypatch.setattr(learned, "MODEL_FILE", changed)
    errors = []

    def embed_on_a_new_thread():  # each thread loads the network once
        try:
            learned.embed(Image.new("RGB", (64, 64), "white"))
        except ProvenanceError as e:
            errors.append(e)

    t = threading.Thread(target=embed_on_a_new_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and str(changed) in errors[0].message and "SHA-256" in errors[0].message


def test_selftest_tolerates_rounding_but_not_another_vector(monkeypatch, tmp_path):
    vectors = json.loads(selftest.VECTORS.read_text())
    stored = vectors["photo.jpg"][learned.ALGORITHM]
    raw = np.frombuffer(bytes.fromhex(stored), np.int8).astype(np.int16)
    nudged = raw.copy()
    nudged[:3] += np.where(nudged[:3] < 127, 1, -1)  # three bytes rounded the other way
    other = vectors["gradient.png"][learned.ALGORITHM]
    for value, passes in ((nudged.astype(np.int8).tobytes().hex(), True), (other, False)):
        path = tmp_path / "vectors.json"
        path.write_text(json.dumps({"photo.jpg": dict(vectors["photo.jpg"], **{learned.ALGORITHM: value})}))
        monkeypatch.setattr(selftest, "VECTORS", path)
        if passes:
            assert all(c.ok for c in selftest.run())
        else:
            with pytest.raises(SelftestError, match=f"photo.jpg {learned.ALGORITHM}"):
                selftest.run()
