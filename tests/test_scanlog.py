"""The scan record and the allow-list, on a real ledger (SQLite file and PostgreSQL schema: `registered_ledger` runs
each test on both backends) with the example works and feed."""
from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

import provenance
from cli.main import cli
from provenance.errors import UsageError
from provenance import storage
from provenance.ledger import Ledger
from provenance.scanlog import ScanLog

import dbhelp
from dbhelp import db_args


@pytest.fixture
def ledger(registered_ledger):
    return registered_ledger


def test_a_scan_records_every_item_and_match_with_the_copy_bytes(ledger, feed_dir, truth):
    results = list(provenance.scan(ledger, [feed_dir], workers=1).results)

    log = ScanLog(ledger)
    run = log.last_run()
    items = ledger.conn.execute("SELECT item, status, source FROM scan_items WHERE run_id = ?", (run,)).fetchall()
    assert len(items) == 17 == len(results)
    assert {s for _, _, s in items} == {str(feed_dir)}
    matched = {r.item for r in results if r.matches}
    assert {i for i, status, _ in items if status == "matched"} == matched
    assert {i for i, status, _ in items if status == "clean"} == {r.item for r in results if not r.matches}
    records = log.matches(run_id=run)
    assert [m.id for m in records] == [i for r in results for i in r.match_ids]
    for m in records:
        assert m.item in matched and m.found_at.endswith("Z")
        data = log.found_bytes(m.sha256)
        assert hashlib.sha256(data).hexdigest() == m.sha256  # the copy survives its post being deleted
    counts = json.loads(ledger.conn.execute("SELECT counts FROM scan_runs WHERE id = ?", (run,)).fetchone()[0])
    assert counts["matched"] == len(matched) and counts["failed"] == 0
    log.close()
    assert ledger.verify().entries == 6  # the scan record is not part of the signed log


def test_allow_rules_turn_matches_into_allowed_uses(ledger, feed_dir, truth):
    log = ScanLog(ledger)
    exact = next(f for f, t in truth.items() if t["attack"] == "exact_copy")
    sunset = next(w.id for w in ledger.works() if w.title == "Sunset Hills")
    rule = log.allow(sunset, f"*/{exact}", note="my own repost")

    results = {r.item.rsplit("/", 1)[-1]: r for r in provenance.scan(ledger, [feed_dir], workers=1).results}

    assert results[exact].status == "allowed" and results[exact].allowed == {sunset: rule.id}
    others = [r for name, r in results.items() if name != exact and r.matches]
    assert others and all(r.status == "matched" and not r.allowed for r in others)
    [m] = [m for m in log.matches(run_id=log.last_run()) if m.item.endswith(exact)]
    assert m.allowed_by == rule.id
    assert log.matches(run_id=log.last_run(), include_allowed=False) and \
        all(not x.item.endswith(exact) for x in log.matches(run_id=log.last_run(), include_allowed=False))


def test_allow_rule_checks(ledger):
    log = ScanLog(ledger)
    with pytest.raises(UsageError, match="no work with id 99"):
        log.allow(99, "https://example.com/*")
    with pytest.raises(UsageError, match="needs a --source URL pattern"):
        log.allow(1, "  ")
    with pytest.raises(UsageError, match="no allow rule with id 5"):
        log.disallow(5)
    rule = log.allow(None, "https://me.example/*")
    assert rule.covers(3, ["https://me.example/a.jpg"]) and not rule.covers(3, ["https://other.example/a.jpg"])
    log.disallow(rule.id)
    assert log.allow_rules() == []


def test_unknown_match_id_is_a_usage_error(ledger):
    with pytest.raises(UsageError, match="no match with id 7"):
        ScanLog(ledger).match(7)


def test_older_ledgers_gain_the_scan_tables_on_first_scan(ledger, feed_dir):
    assert not ledger.conn.has_table("scan_items")
    list(provenance.scan(ledger, [feed_dir / "post_02.jpg"], workers=1).results)
    assert ledger.conn.execute("SELECT COUNT(*) FROM scan_items").fetchone()[0] == 1


def test_cli_allow_and_scan_show_allowed(home, ledger, feed_dir):
    runner = CliRunner()
    base = db_args(ledger)
    r = runner.invoke(cli, [*base, "allow", "5", "--source", "*/post_02.jpg", "--note", "licensed to X until 2027-01"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "allow rule 1: work #5 at */post_02.jpg  (licensed to X until 2027-01)\n"
    assert runner.invoke(cli, [*base, "allow", "--list"]).stdout == r.stdout
    r = runner.invoke(cli, [*base, "allow", "--source", "x"])
    assert r.exit_code == 2 and "give WORK_ID (or --all-works) and --source PATTERN" in r.stderr

    r = runner.invoke(cli, [*base, "scan", str(feed_dir / "post_02.jpg"), str(feed_dir / "post_04.jpg")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "post_02.jpg  ->  #5 'Sunset Hills'" in lines[0] and lines[0].endswith("allowed by rule 1")
    assert "[match 2]" in lines[1] and "allowed" not in lines[1]
    assert r.stderr == "scanned 2 items: 2 with copies, 0 without, 0 failed, 1 allowed\n"
    r = runner.invoke(cli, [*base, "scan", "--json", str(feed_dir / "post_02.jpg")])
    [m] = [json.loads(x) for x in r.stdout.splitlines()]
    assert (m["allowed"], m["allow_rule"], m["match_id"], m["source"]) == (True, 1, 3, str(feed_dir / "post_02.jpg"))
    assert runner.invoke(cli, [*base, "allow", "--remove", "1"]).exit_code == 0
    assert runner.invoke(cli, [*base, "allow", "--list"]).stdout == ""


def test_scan_record_survives_a_second_process(ledger, feed_dir):
    list(provenance.scan(ledger, [feed_dir / "post_02.jpg"], workers=1).results)
    other = storage.connect(ledger.target)  # another connection, as another process would open
    try:
        assert [tuple(r) for r in other.execute("SELECT status FROM scan_items").fetchall()] == [("matched",)]
    finally:
        other.close()


def test_the_index_cache_is_the_registrys_own_not_in_the_working_directory(ledger, feed_dir, tmp_path,
                                                                         monkeypatch):
    # A PostgreSQL ledger has no file to keep `ledger.db.index/` beside: it went to ./None.index, shared by every
    # registry the process opened.
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    list(provenance.scan(ledger, [feed_dir / "post_02.jpg"], workers=1).results)

    folder = ledger.index_folder()
    assert (folder / "manifest.json").exists() and list(cwd.iterdir()) == []
    if ledger.path is not None:
        assert folder == ledger.path.parent / "ledger.db.index"
    else:
        assert folder.parent == home / "index"
        other = Ledger(dbhelp.new_schema_url(), ledger.conn)  # another schema on the same server
        assert other.index_folder() != folder
