"""Tests for provenance.selftest: the shipped golden vectors pass; tampered or incomplete vectors are caught."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cli.main import cli
from provenance import selftest
from provenance.errors import SelftestError
from provenance.fingerprints import ALGORITHMS


@pytest.fixture
def vectors() -> dict:
    return json.loads(selftest.VECTORS.read_text())


def use_vectors(monkeypatch, tmp_path, vectors: dict):
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(vectors))
    monkeypatch.setattr(selftest, "VECTORS", path)


def flip_first_hex_digit(value: str) -> str:
    return format(int(value[0], 16) ^ 0x8, "x") + value[1:]


def test_shipped_vectors_pass_and_cover_every_algorithm_and_golden_image(vectors):
    checks = selftest.run()
    assert checks and all(c.ok for c in checks)
    assert {c.algorithm for c in checks} >= set(ALGORITHMS)
    images = {p.name for p in selftest.GOLDEN.iterdir() if p.suffix != ".json"}
    assert {c.image for c in checks} == images == set(vectors)
    for name, expected in vectors.items():
        assert set(ALGORITHMS) <= set(expected), f"{name} lacks vectors for {set(ALGORITHMS) - set(expected)}"
    assert len(checks) == sum(len(v) for v in vectors.values())


@pytest.mark.parametrize("image, key", [("photo.jpg", "pdq/1"), ("gray16.png", "sha256/1")])
def test_one_changed_value_names_the_image_and_algorithm(monkeypatch, tmp_path, vectors, image, key):
    expected = vectors[image][key]
    vectors[image][key] = flip_first_hex_digit(expected)
    use_vectors(monkeypatch, tmp_path, vectors)
    with pytest.raises(SelftestError) as err:
        selftest.run()
    total = sum(len(v) for v in vectors.values())
    assert err.value.message == (f"1 of {total} golden vectors differ: {image} {key}: "
                                 f"expected {vectors[image][key]}, got {expected}")
    assert "dependency" in err.value.hint


def test_changed_size_and_quality_are_checked_too(monkeypatch, tmp_path, vectors):
    one = {"palette.gif": dict(vectors["palette.gif"], size="150x200", **{"pdq/1:quality": "1"})}
    use_vectors(monkeypatch, tmp_path, one)
    with pytest.raises(SelftestError) as err:
        selftest.run()
    assert err.value.message.startswith(f"2 of {len(one['palette.gif'])} golden vectors differ: ")
    assert "palette.gif pdq/1:quality: expected 1, got 100" in err.value.message
    assert "palette.gif size: expected 150x200, got 200x150" in err.value.message


@pytest.mark.parametrize("missing", ALGORITHMS)
def test_vectors_lacking_an_algorithm_are_an_error(monkeypatch, tmp_path, vectors, missing):
    # One image is enough to exercise the check (and keeps this fast).
    one = {"gradient.png": {k: v for k, v in vectors["gradient.png"].items() if k != missing}}
    use_vectors(monkeypatch, tmp_path, one)
    with pytest.raises(SelftestError, match=rf"^no golden vectors for {missing}$"):
        selftest.run()


def test_empty_vectors_file_is_an_error(monkeypatch, tmp_path):
    use_vectors(monkeypatch, tmp_path, {})
    with pytest.raises(SelftestError) as err:
        selftest.run()
    assert err.value.message == f"no golden vectors for {', '.join(sorted(ALGORITHMS))}"


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_golden_image_is_a_selftest_error_naming_it(monkeypatch, tmp_path, damage):
    golden = tmp_path / "golden"
    shutil.copytree(selftest.GOLDEN, golden)
    photo = golden / "photo.jpg"
    if damage == "missing":
        photo.unlink()
    else:
        photo.write_bytes(photo.read_bytes()[:2000])
    monkeypatch.setattr(selftest, "GOLDEN", golden)
    monkeypatch.setattr(selftest, "VECTORS", golden / "vectors.json")
    with pytest.raises(SelftestError, match="photo.jpg"):
        selftest.run()


# --- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_selftest_passes():
    result = CliRunner().invoke(cli, ["selftest"])
    assert result.exit_code == 0, result.output
    n = sum(len(v) for v in json.loads(selftest.VECTORS.read_text()).values())
    images = len([p for p in selftest.GOLDEN.iterdir() if p.suffix != ".json"])
    assert result.stdout == f"selftest OK: {n} golden vectors over {images} images\n"
    assert result.stderr == ""


def test_cli_selftest_with_tampered_vectors_exits_1_with_diagnostics(monkeypatch, tmp_path, vectors):
    one = {"photo.jpg": dict(vectors["photo.jpg"])}
    one["photo.jpg"]["dhash/1"] = flip_first_hex_digit(one["photo.jpg"]["dhash/1"])
    use_vectors(monkeypatch, tmp_path, one)
    result = CliRunner().invoke(cli, ["selftest"])
    assert result.exit_code == 1
    assert result.stdout == ""
    first, hint = result.stderr.splitlines()
    assert first.startswith(f"error: 1 of {len(one['photo.jpg'])} golden vectors differ: photo.jpg dhash/1: ")
    assert hint.startswith("  hint: ")
    assert "Traceback" not in result.output
