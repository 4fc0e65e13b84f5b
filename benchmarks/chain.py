"""Chain costs: gas of one anchor for 1, 100 and 10,000 registrations (flat), gas per mint, gas of deploying the
two contracts (paid once per chain), and the time to anchor 10,000 registrations end to end on the managed local
chain (Anvil).

    .venv/bin/python benchmarks/chain.py [--sizes 1,100,10000]

Ledgers are made of real signed entries (EIP-712 signatures by a fixed key through Ledger.append_work): one
fingerprint set with a different SHA-256 per work, which is all the anchor depends on.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance import anchoring, nft  # noqa: E402
from provenance.chain import NFT, REGISTRY, open_chain  # noqa: E402
from provenance.ledger import Ledger  # noqa: E402
from provenance.signing import sign_registration  # noqa: E402

KEY = Account.from_key("0x" + "11" * 32)


def build_ledger(path: Path, n: int) -> Ledger:
    ledger = Ledger.create(path)
    for i in range(1, n + 1):
        record = {"sha256": hashlib.sha256(f"work {i}".encode()).hexdigest(), "pdq": "a5" * 32, "phash": "c3" * 8,
                  "title": f"Work {i}", "artist": "Aigerim", "license": "CC BY 4.0", "created": "2024-05-01",
                  "registeredAt": 1_700_000_000 + i, "width": 640, "height": 480, "registrant": KEY.address}
        fps = [{"algorithm": "pdq/1", "value": record["pdq"], "quality": 90},
               {"algorithm": "phash/1", "value": record["phash"], "quality": None}]
        ledger.append_work(record, sign_registration(KEY, record, ledger.chain_id), fps)
    return ledger


def gas_used(chain, tx_hash: str) -> int:
    return chain.w3.eth.get_transaction_receipt(tx_hash)["gasUsed"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,100,10000")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in [int(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            ledger = build_ledger(tmp / f"ledger-{n}.db", n)
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            with open_chain(ledger, account=KEY, data_dir=tmp / f"home-{n}") as chain:  # a fresh managed node
                chain.contract(ledger, anchoring.REGISTRY)  # deploy outside the timed anchor
                t1 = time.perf_counter()
                r = anchoring.anchor(ledger, chain)
                anchor_s = time.perf_counter() - t1
                gas = gas_used(chain, r.anchor.tx_hash)
            total = time.perf_counter() - t0
            rows.append((n, built, gas, anchor_s, total))
            ledger.close()
        ledger = build_ledger(tmp / "mint.db", 3)
        with open_chain(ledger, account=KEY, data_dir=tmp / "home-mint") as chain:
            mints = [gas_used(chain, nft.mint(ledger, chain, w, royalty_bps=500).tx_hash) for w in (1, 2, 3)]
            chain.contract(ledger, REGISTRY)
            deploys = {name: gas_used(chain, chain.recorded_deployment(ledger, name).tx_hash)
                       for name in (REGISTRY, NFT)}
    print(f"{'registrations':>13}  {'ledger build':>12}  {'anchor gas':>10}  {'anchor (s)':>10}  {'node+deploy+anchor (s)':>22}")
    for n, built, gas, anchor_s, total in rows:
        print(f"{n:>13,}  {built:>11.1f}s  {gas:>10,}  {anchor_s:>10.3f}  {total:>22.2f}")
    print(f"mint gas: first token {mints[0]:,}, later tokens {mints[1]:,} / {mints[2]:,}"
          " (metadata URI ipfs://<CIDv1>, 66 characters)")
    print("deployment gas (once per chain): " + ", ".join(f"{name} {gas:,}" for name, gas in deploys.items()))


if __name__ == "__main__":
    main()
