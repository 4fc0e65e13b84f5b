"""Helpers shared by the chain tests: an in-process EVM and ledgers of real signed entries made quickly."""
from __future__ import annotations

import hashlib

from web3 import EthereumTesterProvider, Web3

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
