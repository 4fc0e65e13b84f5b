"""Mint a registered work as an ERC-721 token whose metadata carries its fingerprints and signed ledger entry.

The metadata is canonical JSON (sorted keys, no whitespace) and its address is a CIDv1 computed here — raw codec,
SHA-256 multihash, base32 — so the token URI `ipfs://<cid>` names exactly these bytes, and the bytes are stored
in the ledger: anyone holding the ledger (or pinning the JSON to IPFS) can check that a token points at exactly
this metadata. No upload service is needed to mint.

`image` is `urn:sha256:<hex>` — the SHA-256 of the registered file — because provenance does not keep images;
a wallet cannot display it, but it names the exact bytes the artist registered.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from web3.logs import DISCARD

from .chain import NFT, Chain
from .errors import UsageError
from .ledger import Ledger, canonical_json, utc_now

MAX_ROYALTY_BPS = 10_000
_RAW_CODEC, _SHA2_256, _CID_V1 = 0x55, 0x12, 0x01


def cid_of(data: bytes) -> str:
    """CIDv1 of `data` as a raw IPFS block (codec 0x55, sha2-256), multibase base32 lower ('b' prefix).

    This is what `ipfs add --cid-version 1 --raw-leaves` reports for a file under 256 KiB (one block).
    """
    digest = hashlib.sha256(data).digest()
    cid = bytes([_CID_V1, _RAW_CODEC, _SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=")


def parse_royalty(text: str) -> int:
    """'5%' -> 500, '2.5%' -> 250, '250bps' -> 250 (basis points, as EIP-2981 and the contract take them)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%|bps)\s*", str(text))
    if not m:
        raise UsageError(f"cannot read royalty {text!r}", hint="write it as a percentage (5%) or basis points (250bps)")
    value = float(m.group(1)) * (100 if m.group(2) == "%" else 1)
    if value != int(value) or not 0 <= value <= MAX_ROYALTY_BPS:
        raise UsageError(f"royalty {text!r} is not a whole number of basis points between 0 and 100%")
    return int(value)


def metadata(ledger: Ledger, work_id: int) -> dict:
    """ERC-721 metadata JSON for a work: name, description, image, attributes, and a `provenance` object."""
    w = ledger.work(work_id)
    entry_hash = ledger.conn.execute("SELECT entry_hash FROM entries WHERE seq = ?", (w.entry_seq,)).fetchone()[0]
    fps = [{"algorithm": "sha256", "value": w.sha256}]
    fps += [{"algorithm": alg, "value": f.value} for alg, f in sorted(w.fingerprints.items())
            if alg.split("/")[0] in ("pdq", "phash")]
    return {
        "name": w.title,
        "description": f"{w.title} by {w.artist} ({w.license}). Registered in provenance ledger {ledger.ledger_id},"
                       f" entry {w.entry_seq}, signed by {w.registrant}.",
        "image": f"urn:sha256:{w.sha256}",
        "attributes": [
            {"trait_type": "artist", "value": w.artist},
            {"trait_type": "license", "value": w.license},
            {"trait_type": "registrant", "value": w.registrant},
            {"trait_type": "created", "value": w.created},
            {"trait_type": "registered", "value": w.registered_at},
            {"trait_type": "width", "value": w.width, "display_type": "number"},
            {"trait_type": "height", "value": w.height, "display_type": "number"},
        ],
        "provenance": {
            "ledger_id": ledger.ledger_id,
            "chain_id": ledger.chain_id,
            "entry": {"seq": w.entry_seq, "hash": entry_hash},
            "fingerprints": fps,
            "signature": {"scheme": "eip712", "value": w.signature, "registrant": w.registrant},
        },
    }


@dataclass(frozen=True)
class MintResult:
    work_id: int
    token_id: int
    contract: str
    token_uri: str
    cid: str
    royalty_bps: int
    tx_hash: str
    block_number: int
    chain_id: int


def minted(ledger: Ledger, chain: Chain, work_id: int) -> int | None:
    ledger.ensure_chain_tables()
    row = ledger.conn.execute("SELECT token_id FROM tokens WHERE chain_id = ? AND instance = ? AND work_id = ?",
                              (chain.chain_id, chain.instance, work_id)).fetchone()
    return row[0] if row else None


def mint(ledger: Ledger, chain: Chain, work_id: int, *, royalty_bps: int = 500) -> MintResult:
    """Mint `work_id` to the chain's account with an EIP-2981 royalty; stores the metadata and receipt."""
    if not 0 <= royalty_bps <= MAX_ROYALTY_BPS:
        raise UsageError(f"royalty of {royalty_bps} basis points is outside 0..{MAX_ROYALTY_BPS}")
    meta = canonical_json(metadata(ledger, work_id))
    existing = minted(ledger, chain, work_id)
    if existing is not None:
        raise UsageError(f"work #{work_id} is already token {existing} on chain {chain.chain_id}")
    cid = cid_of(meta.encode())
    uri = f"ipfs://{cid}"
    contract = chain.contract(ledger, NFT)
    receipt = chain.transact(contract.functions.mint(chain.account.address, uri, royalty_bps), f"mint of work #{work_id}")
    token_id = contract.events.Transfer().process_receipt(receipt, errors=DISCARD)[0]["args"]["tokenId"]
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    with ledger.transaction() as c:
        c.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (chain.chain_id, chain.instance, contract.address, token_id, work_id, cid, meta, royalty_bps,
                   chain.account.address, tx_hash, receipt["blockNumber"], utc_now()))
    return MintResult(work_id, token_id, contract.address, uri, cid, royalty_bps, tx_hash, receipt["blockNumber"],
                      chain.chain_id)


def stored_metadata(ledger: Ledger, cid: str) -> dict:
    """The metadata a token URI names, from the ledger (its CID is checked by `Ledger.verify`)."""
    ledger.ensure_chain_tables()
    row = ledger.conn.execute("SELECT metadata FROM tokens WHERE cid = ?", (cid.removeprefix("ipfs://"),)).fetchone()
    if row is None:
        raise UsageError(f"no token with metadata {cid} in this ledger")
    return json.loads(row[0])
