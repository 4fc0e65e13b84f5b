"""Shared fixtures: real example images, a real SQLite ledger file, real (encrypted) keystores, and `backend`:
a fresh ledger target on each storage backend (SQLite file, PostgreSQL schema; see dbhelp)."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_account import Account

from provenance import keys
from provenance.ledger import Ledger

import dbhelp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """Library tests that name no PROVENANCE_HOME keep provenance's data (a PostgreSQL registry's index cache)
    out of the real ~/.local/share."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        yield


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


@pytest.fixture(scope="session")
def _pg_templates():
    """Template schemas made once per session on the PostgreSQL server (see _pg_template), dropped at the end."""
    made = {}
    yield made
    for url in made.values():
        dbhelp.drop_schema(url)


def _pg_template(request, name: str, make) -> str:
    """The URL of a session-wide PostgreSQL template `name`, made on first use by `make(url)` - natively, by the
    library on PostgreSQL, so the templates themselves exercise register and scan there."""
    made = request.getfixturevalue("_pg_templates")
    if name not in made:
        url = dbhelp.new_schema_url()
        try:
            make(url)
        except BaseException:
            dbhelp.drop_schema(url)
            raise
        made[name] = url
    return made[name]


@contextmanager
def _copy_of(request, tmp_path, name: str, sqlite_template: Path, make):
    """A fresh, open copy of a template ledger on the backend `request.param`: a copied SQLite file, or a
    server-side copy of the session's PostgreSQL template in a new schema (dropped after)."""
    if request.param == "sqlite":
        path = tmp_path / f"{name}.db"
        shutil.copyfile(sqlite_template, path)
        with Ledger.open(path) as led:
            yield led
        return
    url = dbhelp.new_schema_url()
    dbhelp.clone_schema(_pg_template(request, name, make), url)
    try:
        with Ledger.open(url) as led:
            yield led
    finally:
        dbhelp.drop_schema(url)


def _register_examples(target, works_dir, account, workers=1):
    from provenance import register

    with Ledger.create(target) as led:
        list(register(led, [works_dir], account, artist="Aigerim", pretty_titles=True, workers=workers).results)


@pytest.fixture(params=dbhelp.BACKENDS)
def registered_ledger(request, tmp_path, works_dir, account) -> Ledger:
    """A fresh copy of the registered ledger (see _registered_template), on each backend, for tests that scan or
    append."""
    template = request.getfixturevalue("_registered_template") if request.param == "sqlite" else None
    with _copy_of(request, tmp_path, "ledger", template,
                  lambda url: _register_examples(url, works_dir, account)) as led:
        yield led


def _scan_examples(target, works_dir, feed_dir, account) -> None:
    from provenance import scan
    from provenance.scanlog import ScanLog

    _register_examples(target, works_dir, account, workers=2)
    with Ledger.open(target) as led:
        log = ScanLog(led)
        log.allow(5, "*/post_08.jpg", "my own repost")
        log.close()
        list(scan(led, [feed_dir], workers=2).results)


@pytest.fixture(scope="session")
def _scanned_template(tmp_path_factory, works_dir, feed_dir, account) -> Path:
    """A ledger file with the example works registered, an allow rule for one repost, and one scan of the
    example feed recorded (made once per session: registering and scanning cost a few seconds)."""
    path = tmp_path_factory.mktemp("scanned") / "ledger.db"
    _scan_examples(path, works_dir, feed_dir, account)
    return path


@pytest.fixture(params=dbhelp.BACKENDS)
def scanned(request, tmp_path, works_dir, feed_dir, account) -> Ledger:
    """A fresh copy of the scanned ledger (see _scanned_template), on each backend, for tests that append to it."""
    template = request.getfixturevalue("_scanned_template") if request.param == "sqlite" else None
    with _copy_of(request, tmp_path, "scanned", template,
                  lambda url: _scan_examples(url, works_dir, feed_dir, account)) as led:
        yield led
