"""Helpers shared by the chain tests: an in-process EVM, ledgers of real signed entries made quickly, and a CLI
home whose commands run on the managed Anvil node."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import PASSPHRASE

import dbhelp
from web3 import EthereumTesterProvider, HTTPProvider, Web3

from cli.main import cli
from provenance import _anvil, config, keys
from provenance.chain import Chain
from provenance.ledger import Ledger
from provenance.signing import sign_registration


def synthetic_record(i: int, registrant: str) -> dict:
    """A registration record with the fingerprints of one image but its own SHA-256 (benchmarks and tests)."""
    return {"sha256": hashlib.sha256(f"work {i}".encode()).hexdigest(), "pdq": "a5" * 32, "phash": "c3" * 8,
            "title": f"Work {i}", "artist": "Aigerim", "license": "CC BY 4.0", "created": "2024-05-01",
            "registeredAt": 1_700_000_000 + i, "width": 640, "height": 480, "registrant": registrant}


def add_works(ledger: Ledger, account, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        record = synthetic_record(i, account.address)
        fps = [{"algorithm": "pdq/1", "value": record["pdq"], "quality": 90},
               {"algorithm": "phash/1", "value": record["phash"], "quality": None}]
        ledger.append_work(record, sign_registration(account, record, ledger.chain_id), fps)


def evm_web3() -> Web3:
    return Web3(EthereumTesterProvider())


def fund(w3: Web3, address: str, wei: int = 10**20) -> None:
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address,
                                                                  "value": wei}))


def evm_chain(w3: Web3, ledger: Ledger, account) -> Chain:
    chain = Chain(w3, account=account, url="eth-tester")
    chain.check(ledger)
    return chain


def run(*args: str) -> Result:
    """One CLI command; errors are caught as the CLI itself reports them (exit code and one line)."""
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def cli_home(request, home, monkeypatch):
    """A CLI home with a ledger of 4 works registered by the keystore's key (import this fixture to use it).
    The ledger is the home's file; `@pytest.mark.parametrize("cli_home", dbhelp.BACKENDS, indirect=True)` runs a
    test on a PostgreSQL schema too ($PROVENANCE_DB, which every command then uses; config.ledger_target())."""
    if getattr(request, "param", "sqlite") == "postgresql":
        url = dbhelp.new_schema_url()
        request.addfinalizer(lambda: dbhelp.drop_schema(url))
        monkeypatch.setenv("PROVENANCE_DB", url)
    assert run("init").exit_code == 0
    with Ledger.open(config.ledger_target()) as led:
        add_works(led, home_account(), 4)
        led.checkpoint(signer=home_account())  # as register does at the end of a batch
    return home


_UNLOCKED: dict[bytes, object] = {}


def home_account():
    """The home's key, unlocked (scrypt costs ~1 s: each keystore file's account is decrypted once a session)."""
    info = keys.find_key(config.keys_dir())
    data = info.path.read_bytes()
    if data not in _UNLOCKED:
        _UNLOCKED[data] = keys.unlock(info, PASSPHRASE)
    return _UNLOCKED[data]


def managed_w3(home: Path) -> tuple[_anvil.ManagedNode, Web3]:
    """The CLI home's managed node, started for a look at its chain (stop it with node.stop())."""
    node = _anvil.ManagedNode(home / "chain")
    return node, Web3(HTTPProvider(node.start()))
