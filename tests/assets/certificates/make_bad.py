"""Make the certificates the tests verify: two good ones and one bad one per kind of tampering.

    .venv/bin/python tests/assets/certificates/make_bad.py     # rewrites the JSON files next to this script

A ledger of three real example works (signed by a fixed test key) is anchored on an in-process EVM, and work
'Brush Abstract' (ledger entry 2, so its entry has a real predecessor and its proof has steps) gets a certificate
before anchoring (good-unanchored.json) and after (good.json). Each bad certificate is good.json with one thing
changed. Its certificate_hash is then recomputed, as any forger would (it is a checksum, not a seal), so that the
check that catches it is the one that matters; only bad-stale-hash.json keeps the old hash.

TAMPERS changes what only a chain can refute (the receipt's transaction and block): the tests apply those to a
live certificate on their own EVM, so they are not written out.
"""
from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
WORKS = ROOT / "examples" / "works"
KEY = "0x" + "11" * 32
OTHER_KEY = "0x" + "22" * 32
OTHER = "0x1563915e194D8CfBA1943570603F7606A3115508"  # the address of key 0x22…22 (tests: other_account)
#: A registry address that is not the receipt's (an anchor in another contract).
OTHER_REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ORDER = ("geometric-poster.png", "brush-abstract.jpg", "sunset-hills.jpg")
WORK_ID = 2


def _flip(hex_str: str) -> str:
    """The same hash with its first digit changed."""
    return ("0" if hex_str[0] != "0" else "1") + hex_str[1:]


def _set_fingerprint(cert: dict, algorithm: str, value: Callable[[str], str]) -> None:
    for f in cert["entry"]["payload"]["fingerprints"]:
        if f["algorithm"] == algorithm:
            f["value"] = value(f["value"])


def _rehash_entry(cert: dict) -> None:
    from provenance.ledger import canonical_json, entry_hash

    e = cert["entry"]
    e["entry_hash"] = entry_hash(e["seq"], e["kind"], e["work_id"], e["recorded_at"], canonical_json(e["payload"]),
                                 e["prev_hash"])


def _record(cert: dict) -> dict:
    return cert["entry"]["payload"]["record"]


_KEEP = object()


def _resign_checkpoint(cert: dict, *, key: str = KEY, size: int | None = None, root: str | None = None,
                       contract=_KEEP) -> None:
    """Replace the certificate's signed checkpoint by a real signature of `key` over the given size, root and
    registry (default: the certificate's own), keeping the stated signer: what a forger with some key can make."""
    from eth_account import Account

    from provenance import signing

    cp = cert["checkpoint"]
    m = cp["message"]
    record = {"ledgerId": m["ledgerId"], "size": m["size"] if size is None else size,
              "root": m["root"] if root is None else root}
    contract = cp["domain"].get("verifyingContract") if contract is _KEEP else contract
    typed = signing.typed_checkpoint(record, cp["domain"]["chainId"], contract)
    cp.update(typed, signature=signing.sign_checkpoint(Account.from_key(key), record, cp["domain"]["chainId"],
                                                       contract))


#: name -> what a forger does. Offline ones are written out as bad-<name>.json.
TAMPERS: dict[str, Callable[[dict], None]] = {
    "title": lambda c: _record(c).update(title="Forged Title"),
    "registrant": lambda c: _record(c).update(registrant=OTHER),
    "registered-at": lambda c: _record(c).update(registeredAt=_record(c)["registeredAt"] - 365 * 86400),
    "fingerprint": lambda c: _set_fingerprint(c, "pdq/1", _flip),
    "fingerprint-rehashed": lambda c: (_set_fingerprint(c, "dhash/1", _flip), _rehash_entry(c)),
    "prev-hash": lambda c: c["entry"].update(prev_hash=_flip(c["entry"]["prev_hash"])),
    "proof-step": lambda c: c["inclusion"]["proof"].__setitem__(0, _flip(c["inclusion"]["proof"][0])),
    "root": lambda c: c["inclusion"].update(root=_flip(c["inclusion"]["root"])),
    "leaf-index": lambda c: c["inclusion"].update(leaf_index=c["inclusion"]["leaf_index"] + 1),
    "receipt-root": lambda c: c["anchor"].update(root=_flip(c["anchor"]["root"])),
    "receipt-chain": lambda c: c["anchor"].update(chain_id=1),
    "chain-id": lambda c: c["registration"]["domain"].update(chainId=1),
    "format": lambda c: c.update(format="provenance-certificate/9"),
    "checkpoint-signature": lambda c: _resign_checkpoint(c, key=OTHER_KEY),
    "checkpoint-other-size": lambda c: _resign_checkpoint(c, size=c["inclusion"]["tree_size"] - 1,
                                                          root=_flip(c["inclusion"]["root"])),
    "checkpoint-registry": lambda c: _resign_checkpoint(c, contract=OTHER_REGISTRY),
    "checkpoint-unbound": lambda c: _resign_checkpoint(c, contract=None),
}
ONLINE_TAMPERS: dict[str, Callable[[dict], None]] = {
    "receipt-tx": lambda c: c["anchor"].update(tx_hash="0x" + "ab" * 32),
    "receipt-block": lambda c: c["anchor"].update(block_number=c["anchor"]["block_number"] + 5),
    "receipt-timestamp": lambda c: c["anchor"].update(block_timestamp=c["anchor"]["block_timestamp"] - 3600),
}


def tampered(cert: dict, name: str, *, rehash: bool = True) -> dict:
    """A copy of `cert` with tamper `name` applied (and its certificate hash recomputed)."""
    from provenance.certificates import certificate_hash

    bad = copy.deepcopy(cert)
    {**TAMPERS, **ONLINE_TAMPERS}[name](bad)
    if rehash:
        bad["certificate_hash"] = certificate_hash(bad)
    return bad


def make_certificates(folder: Path) -> tuple[dict, dict]:
    """(unanchored, anchored) certificates of work WORK_ID from a fresh ledger anchored on an in-process EVM."""
    from eth_account import Account
    from web3 import EthereumTesterProvider, Web3

    from provenance import anchoring, register
    from provenance.certificates import issue_certificate
    from provenance.chain import Chain
    from provenance.ledger import Ledger

    w3 = Web3(EthereumTesterProvider())
    account = Account.from_key(KEY)
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": account.address,
                                                                  "value": 10**20}))
    with Ledger.create(folder / "ledger.db", chain_id=w3.eth.chain_id) as ledger:
        for name in ORDER:
            batch = register(ledger, [WORKS / name], account, artist="Aigerim", license="CC BY-NC 4.0",
                             title=name.split(".")[0].replace("-", " ").title(), created="2024-05-01", workers=1)
            assert all(r.error is None for r in batch.results)
        unanchored = issue_certificate(ledger, WORK_ID)
        chain = Chain(w3, account=account, url="eth-tester")
        chain.check(ledger)
        anchoring.anchor(ledger, chain)
        return unanchored, issue_certificate(ledger, WORK_ID)


def _write(path: Path, cert: dict) -> None:
    path.write_text(json.dumps(cert, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        unanchored, good = make_certificates(Path(tmp))
    for old in HERE.glob("*.json"):
        old.unlink()
    _write(HERE / "good-unanchored.json", unanchored)
    _write(HERE / "good.json", good)
    for name in TAMPERS:
        _write(HERE / f"bad-{name}.json", tampered(good, name))
    _write(HERE / "bad-stale-hash.json", tampered(good, "title", rehash=False))
    print(f"wrote {2 + len(TAMPERS) + 1} certificates to {HERE}")


if __name__ == "__main__":
    main()
