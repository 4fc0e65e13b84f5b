"""Shared fixtures: real example images, a real SQLite ledger file, real (encrypted) keystores, and `backend`:
a fresh ledger target on each storage backend (SQLite file, PostgreSQL schema; see dbhelp)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from eth_account import Account

from provenance import keys
from provenance.ledger import Ledger

import dbhelp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session")
def works_dir() -> Path:
    return EXAMPLES / "works"


@pytest.fixture(scope="session")
def feed_dir() -> Path:
    return EXAMPLES / "feed"


@pytest.fixture(scope="session")
def truth() -> dict:
    return json.loads((EXAMPLES / "truth.json").read_text())


@pytest.fixture(scope="session")
def account():
    """A deterministic signing account for library tests (no keystore round trip needed there)."""
    return Account.from_key("0x" + "11" * 32)


@pytest.fixture(scope="session")
def other_account():
    return Account.from_key("0x" + "22" * 32)


@pytest.fixture(params=dbhelp.BACKENDS)
def backend(request, tmp_path):
    """Where a new ledger goes: a SQLite file path, or the URL of a fresh PostgreSQL schema (dropped after)."""
    if request.param == "sqlite":
        yield tmp_path / "ledger.db"
        return
    url = dbhelp.new_schema_url()
    yield url
    dbhelp.drop_schema(url)


@pytest.fixture
def any_ledger(backend) -> Ledger:
    """A new, empty ledger on each backend."""
    with Ledger.create(backend) as led:
        yield led


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    with Ledger.create(tmp_path / "ledger.db") as led:
        yield led


@pytest.fixture(scope="session")
def _keystore_template(tmp_path_factory) -> Path:
    # scrypt makes each keystore cost ~1 s; make one per session and copy it into each test's home.
    keys_dir = tmp_path_factory.mktemp("keys-template")
    keys.new_key(keys_dir, "Aigerim", PASSPHRASE)
    return keys_dir


@pytest.fixture
def home(tmp_path, monkeypatch, _keystore_template) -> Path:
    """An isolated PROVENANCE_HOME holding one key ("Aigerim") and the passphrase in the environment."""
    home = tmp_path / "home"
    shutil.copytree(_keystore_template, home / "keys")
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    monkeypatch.setenv("PROVENANCE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PROVENANCE_LEDGER", raising=False)
    monkeypatch.delenv("PROVENANCE_DB", raising=False)
    return home


@pytest.fixture(scope="session")
def _registered_template(tmp_path_factory, works_dir, account) -> Path:
    """A ledger file with the example works registered by the library (titles from file names), made once."""
    from provenance import register

    path = tmp_path_factory.mktemp("registered") / "ledger.db"
    with Ledger.create(path) as led:
        list(register(led, [works_dir], account, artist="Aigerim", pretty_titles=True).results)
    return path


@pytest.fixture
def registered_ledger(tmp_path, _registered_template) -> Ledger:
    """A fresh copy of the registered ledger (see _registered_template), for tests that scan or append."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(_registered_template, path)
    with Ledger.open(path) as led:
        yield led


@pytest.fixture(scope="session")
def _scanned_template(tmp_path_factory, works_dir, feed_dir, account) -> Path:
    """A ledger file with the example works registered, an allow rule for one repost, and one scan of the
    example feed recorded (made once per session: registering and scanning cost a few seconds)."""
    from provenance import register, scan
    from provenance.scanlog import ScanLog

    path = tmp_path_factory.mktemp("scanned") / "ledger.db"
    with Ledger.create(path) as led:
        list(register(led, [works_dir], account, artist="Aigerim", pretty_titles=True, workers=2).results)
        log = ScanLog(led)
        log.allow(5, "*/post_08.jpg", "my own repost")
        log.close()
        list(scan(led, [feed_dir], workers=2).results)
    return path


@pytest.fixture
def scanned(tmp_path, _scanned_template) -> Ledger:
    """A fresh copy of the scanned ledger (see _scanned_template), for tests that append to it."""
    path = tmp_path / "scanned.db"
    shutil.copyfile(_scanned_template, path)
    with Ledger.open(path) as led:
        yield led
