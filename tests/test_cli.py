"""Tests for the `provenance` command through click's CliRunner, on real files in tmp_path and, for the commands
that take `--db`, on PostgreSQL too (`library_ledger` is on both backends; the shared-database flow below).

Only the full-flow tests register through the CLI (each CLI register unlocks the keystore: ~0.5 s of scrypt);
the other tests build their ledger with the library."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

import provenance
from cli.main import cli
from provenance.fingerprints import ALGORITHMS
from provenance.ledger import Ledger

import dbhelp
from dbhelp import raw_connection

WORK_TITLES = {"Sunset Hills", "Brush Abstract", "Geometric Poster", "Figure Portrait", "Flow Field",
               "Tiled Mandala"}
SCAN_KEYS = {"item", "work_id", "work_title", "sha256_exact", "distance", "signal", "transform", "score",
             "confidence", "geometry"}
# Every edit in the example feed is expected to be found (crops, captions, watermarks and letterboxes included).
ROBUST = {"exact_copy", "hflip", "rotate_90", "rescale_40pct_jpeg_q35", "grayscale", "brightness_contrast",
          "webp_reencode", "center_crop_10pct", "caption_bar", "watermark_text", "letterbox"}


def title_of(work_file: str) -> str:
    return Path(work_file).stem.replace("-", " ").title()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def library_ledger(registered_ledger) -> Path | str:
    """Where a ledger of examples/works with file-name titles, registered by the library (no scrypt), is: a
    file or a PostgreSQL URL (`registered_ledger`'s backends); give it as `--db`."""
    return registered_ledger.target


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, prefix + (name,))


def test_every_command_has_help_text(runner):
    commands = list(_all_commands(cli))
    names = {" ".join(path) for path, _ in commands}
    assert {"init", "key", "key new", "key list", "register", "works", "works list", "works show", "scan",
            "ledger", "ledger verify", "selftest"} <= names
    assert cli.help
    for path, command in commands:
        assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        first_sentence = " ".join(command.help.split(".")[0].split())
        assert first_sentence in " ".join(result.stdout.split()), path  # help is shown (re-wrapped)


def _scan_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _check_scan_against_truth(found: list[dict], truth: dict) -> None:
    by_item: dict[str, list[dict]] = {}
    for m in found:
        assert SCAN_KEYS <= set(m), m
        assert 0 < m["score"] <= 1
        by_item.setdefault(Path(m["item"]).name, []).append(m)

    for item, matches in by_item.items():
        expected = truth[item]["work"]
        assert expected is not None, f"distractor {item} matched {matches}"
        assert {m["work_title"] for m in matches} == {title_of(expected)}, item
    for item, t in truth.items():
        if t["attack"] in ROBUST:
            assert item in by_item, f"{item} ({t['attack']}) was not found"
    [exact] = [item for item, t in truth.items() if t["attack"] == "exact_copy"]
    assert by_item[exact][0]["sha256_exact"] is True
    assert not any(m["sha256_exact"] for item, ms in by_item.items() if item != exact for m in ms)


def test_full_flow(home, runner, works_dir, feed_dir, truth):
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert (home / "ledger.db").exists()  # the default ledger lives in PROVENANCE_HOME

    result = runner.invoke(cli, ["register", str(works_dir), "--title-from-filename", "--license", "CC BY-NC 4.0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("registered #") == 6
    assert "6 registered, 0 already registered, 0 failed" in result.stderr

    result = runner.invoke(cli, ["works", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert {t for t in WORK_TITLES if any(t in line for line in lines)} == WORK_TITLES
    assert all("Aigerim" in line for line in lines)  # artist defaults to the key's name

    result = runner.invoke(cli, ["works", "show", "1"])
    assert result.exit_code == 0
    assert "CC BY-NC 4.0" in result.stdout
    for algorithm in ("sha256/1", "pdq/1", "phash/1", "dhash/1"):
        assert f"{algorithm}: " in result.stdout
    assert "(quality " in result.stdout

    result = runner.invoke(cli, ["scan", str(feed_dir), "--json"])
    assert result.exit_code == 0, result.output
    _check_scan_against_truth(_scan_lines(result.stdout), truth)
    assert "scanned 17 items:" in result.stderr and "0 failed" in result.stderr
    assert "scanned" not in result.stdout

    result = runner.invoke(cli, ["ledger", "verify"])
    assert result.exit_code == 0
    assert "ledger OK: 6 entries, 6 works, 1 checkpoints" in result.stdout

    result = runner.invoke(cli, ["register", str(works_dir), "--title-from-filename"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("already registered as #") == 6
    assert "0 registered, 6 already registered" in result.stderr
    assert len(runner.invoke(cli, ["works", "list"]).stdout.splitlines()) == 6


@pytest.mark.skipif(not dbhelp.PG, reason="no PostgreSQL server: set PROVENANCE_TEST_PG=postgresql://... (.ci/run does)")
def test_full_flow_on_a_shared_postgresql_database(home, runner, works_dir, feed_dir, tmp_path, monkeypatch):
    """init -> register -> scan -> report -> evidence -> ledger verify, every command given `--db postgresql://`,
    then the same registry named by $PROVENANCE_DB; nothing is written beside a file that does not exist."""
    url = dbhelp.new_schema_url()
    db = ["--db", url]
    monkeypatch.chdir(tmp_path)
    try:
        result = runner.invoke(cli, [*db, "init"])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"created ledger {url} (id ")

        result = runner.invoke(cli, [*db, "register", str(works_dir), "--title-from-filename"])
        assert result.exit_code == 0, result.output
        assert "6 registered, 0 already registered, 0 failed" in result.stderr

        result = runner.invoke(cli, [*db, "scan", str(feed_dir), "--json"])
        assert result.exit_code == 0, result.output
        found = _scan_lines(result.stdout)
        assert "scanned 17 items:" in result.stderr and "0 failed" in result.stderr
        [flipped] = [m for m in found if m["item"].endswith("post_04.jpg")]

        result = runner.invoke(cli, [*db, "report", "-o", "report.html"])
        assert result.exit_code == 0, result.output
        assert f"scan run 1, {len(found)} copies of" in result.output
        assert f"from the scan record in {url}" in (tmp_path / "report.html").read_text(encoding="utf-8")

        result = runner.invoke(cli, [*db, "evidence", str(flipped["match_id"]), "-o", "ev"])
        assert result.exit_code == 0, result.output
        assert f"wrote evidence packet of match {flipped['match_id']}" in result.output
        assert "appended as ledger entry 7" in result.output and (tmp_path / "ev" / "manifest.json").exists()

        result = runner.invoke(cli, [*db, "ledger", "verify"])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ledger OK: 7 entries, 6 works, ")

        monkeypatch.setenv("PROVENANCE_DB", url)
        assert len(runner.invoke(cli, ["works", "list"]).stdout.splitlines()) == 6
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ev", "home", "report.html"]
        assert not (home / "ledger.db").exists()
    finally:
        dbhelp.drop_schema(url)


def test_scan_text_output(home, runner, library_ledger, feed_dir, truth):
    result = runner.invoke(cli, ["--db", str(library_ledger), "scan", str(feed_dir)])
    assert result.exit_code == 0
    [exact] = [item for item, t in truth.items() if t["attack"] == "exact_copy"]
    [line] = [line for line in result.stdout.splitlines() if exact in line]
    assert "'Sunset Hills'" in line and "identical file bytes (SHA-256)" in line and "(exact)" in line
    [hflip] = [item for item, t in truth.items() if t["attack"] == "hflip"]
    assert "flipped horizontally" in next(line for line in result.stdout.splitlines() if hflip in line)


def test_scan_json_with_library_ledger(home, runner, library_ledger, feed_dir, truth):
    result = runner.invoke(cli, ["--db", str(library_ledger), "scan", str(feed_dir), "--json"])
    assert result.exit_code == 0
    found = _scan_lines(result.stdout)
    _check_scan_against_truth(found, truth)
    n_matched = len({m["item"] for m in found})
    assert f"scanned 17 items: {n_matched} with copies, {17 - n_matched} without, 0 failed" in result.stderr


def test_scan_json_gives_the_geometry_of_local_feature_matches(home, runner, library_ledger, works_dir, tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    with Image.open(works_dir / "figure-portrait.jpg") as im:
        w, h = im.size
        im.convert("RGB").crop((round(0.15 * w), round(0.15 * h), round(0.85 * w), round(0.85 * h))).save(
            feed / "cropped.jpg", quality=90)

    result = runner.invoke(cli, ["--db", str(library_ledger), "scan", str(feed), "--json"])

    assert result.exit_code == 0, result.output
    [m] = _scan_lines(result.stdout)
    assert SCAN_KEYS <= set(m)
    assert (m["work_title"], m["signal"], m["distance"]) == ("Figure Portrait", "orb/5", None)
    g = m["geometry"]
    assert set(g) == {"angle", "scale", "crop", "placed", "flip", "ncc", "coverage", "inliers", "bands"}
    assert g["bands"] == []  # the whole overlap was compared
    assert type(g["flip"]) is bool and g["flip"] is False
    assert type(g["inliers"]) is int and g["inliers"] > 0
    for key in ("angle", "scale", "ncc", "coverage"):
        assert type(g[key]) in (int, float), key
    for key in ("crop", "placed"):
        assert len(g[key]) == 4 and all(type(v) in (int, float) and 0 <= v <= 1 for v in g[key]), key
    assert all(abs(a - b) <= 0.05 for a, b in zip(g["crop"], (0.15, 0.15, 0.85, 0.85)))
    assert m["transform"].startswith("cropped to 70% x 70% of the work")

    result = runner.invoke(cli, ["--db", str(library_ledger), "scan", str(feed)])
    assert result.exit_code == 0
    assert "cropped to 70% x 70% of the work" in result.stdout and "matching keypoints" in result.stdout


def test_scan_reports_unreadable_items_and_exits_1(home, runner, library_ledger, feed_dir, tmp_path):
    bad = tmp_path / "feed"
    bad.mkdir()
    (bad / "not-an-image.jpg").write_bytes(b"GIF89a but not really")
    (bad / "copy.jpg").write_bytes((feed_dir / "post_02.jpg").read_bytes())

    result = runner.invoke(cli, ["--db", str(library_ledger), "scan", str(bad), str(tmp_path / "missing")])

    assert result.exit_code == 1
    assert "not-an-image.jpg" in result.stderr and "missing" in result.stderr
    assert "Traceback" not in result.output
    assert "copy.jpg" in result.stdout and "Sunset Hills" in result.stdout


def test_ledger_verify_detects_tampering(home, runner, library_ledger):
    result = runner.invoke(cli, ["--db", str(library_ledger), "ledger", "verify", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["works"] == 6

    with Ledger.open(library_ledger) as led, raw_connection(led) as conn:
        conn.execute("UPDATE works SET title = 'Not Yours' WHERE id = 2")

    result = runner.invoke(cli, ["--db", str(library_ledger), "ledger", "verify"])
    assert result.exit_code == 1
    assert "works row 2 was edited (title)" in result.stderr
    assert "ledger OK" not in result.stdout
    assert isinstance(result.exception, SystemExit)


def test_init_twice_exits_2(home, runner):
    assert runner.invoke(cli, ["init"]).exit_code == 0
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 2
    assert "a ledger already exists" in result.stderr
    assert "hint:" in result.stderr


@dbhelp.sqlite_only("registered_ledger", "--ledger and PROVENANCE_LEDGER name files")
def test_ledger_option_and_environment(home, runner, tmp_path, monkeypatch, library_ledger):
    by_option = tmp_path / "by-option" / "ledger.db"
    result = runner.invoke(cli, ["--ledger", str(by_option), "init"])
    assert result.exit_code == 0
    assert str(by_option) in result.stdout
    assert by_option.exists() and not (home / "ledger.db").exists()

    by_env = tmp_path / "by-env.db"
    result = runner.invoke(cli, ["init"], env={"PROVENANCE_LEDGER": str(by_env)})
    assert result.exit_code == 0
    assert by_env.exists() and not (home / "ledger.db").exists()

    # Both read the ledger they name: the library-built one has six works, the others none.
    monkeypatch.setenv("PROVENANCE_LEDGER", str(library_ledger))
    assert len(runner.invoke(cli, ["works", "list"]).stdout.splitlines()) == 6
    assert runner.invoke(cli, ["--ledger", str(by_option), "works", "list"]).stdout == ""  # the option wins

    monkeypatch.delenv("PROVENANCE_LEDGER")
    result = runner.invoke(cli, ["works", "list"])
    assert result.exit_code == 2
    assert "no ledger at" in result.stderr and "provenance init" in result.stderr


def test_works_show_json_and_unknown_id(home, runner, library_ledger):
    result = runner.invoke(cli, ["--db", str(library_ledger), "works", "show", "3", "--json"])
    assert result.exit_code == 0
    work = json.loads(result.stdout)
    assert work["id"] == 3 and work["title"] in WORK_TITLES
    assert set(work["fingerprints"]) == set(ALGORITHMS)
    assert work["fingerprints"]["sha256/1"]["value"] == work["sha256"]

    result = runner.invoke(cli, ["--db", str(library_ledger), "works", "show", "99"])
    assert result.exit_code == 2
    assert "no work with id 99" in result.stderr
