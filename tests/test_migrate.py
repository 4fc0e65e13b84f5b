"""provenance migrate: a registry moved SQLite -> PostgreSQL -> SQLite, row for row, nothing re-signed."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import cli
from provenance.errors import UsageError
from provenance.ledger import Ledger
from provenance.migrate import migrate
from provenance.queue import Queue
from provenance.scanlog import ScanLog

import dbhelp


@pytest.fixture
def pg_url():
    if not dbhelp.PG:
        pytest.skip("no PostgreSQL server: set PROVENANCE_TEST_PG=postgresql://... (.ci/run does)")
    url = dbhelp.new_schema_url()
    yield url
    dbhelp.drop_schema(url)


def _rows(target, table):
    with Ledger.open(target) as led:
        return sorted(tuple(r) for r in led.conn.execute(f"SELECT * FROM {table}"))


@dbhelp.sqlite_only("scanned", "SQLite to PostgreSQL and back")
def test_migrate_there_and_back(scanned, pg_url, tmp_path):
    with Queue(scanned.path) as q:  # a queue whose job has a run linked to it
        [job] = q.enqueue(["https://example.com/feed.xml"])
        q.attach_run(job, ScanLog(scanned).last_run())
    result = CliRunner().invoke(cli, ["migrate", "--from", str(scanned.path), "--to", pg_url])
    assert result.exit_code == 0, result.output
    assert "both verify" in result.output
    back = tmp_path / "back.db"
    report = migrate(pg_url, back)

    original = scanned.verify()
    assert (report.target.root, report.target.entries) == (original.root, original.entries)
    for table in ("entries", "works", "fingerprints", "local_features", "checkpoints", "meta", "scan_items",
                  "scan_matches", "allow_rules", "seen", "scan_jobs", "scan_job_runs"):
        assert _rows(pg_url, table) == _rows(scanned.path, table) == _rows(back, table), table
    with Ledger.open(pg_url) as led:  # new rows are numbered after the copied ones
        log = ScanLog(led)
        rule = log.allow(None, "https://example.com/*")
        assert rule.id == max(r.id for r in log.allow_rules()) and rule.id > 1
        log.close()


@dbhelp.sqlite_only("scanned", "file targets")
def test_migrate_refuses_a_target_that_is_not_empty(scanned, tmp_path):
    other = tmp_path / "other.db"
    Ledger.create(other).close()
    with pytest.raises(UsageError, match="not empty"):
        migrate(scanned.path, other)
