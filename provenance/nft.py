"""Mint a registered work as an ERC-721 token whose metadata carries its fingerprints and signed ledger entry.

The metadata is canonical JSON (sorted keys, no whitespace) and its address is a CIDv1 computed here — raw codec,
SHA-256 multihash, base32 — so the token URI `ipfs://<cid>` names exactly these bytes, and the bytes are stored
in the ledger: anyone holding the ledger (or pinning the JSON to IPFS) can check that a token points at exactly
this metadata. No upload service is needed to mint.

`image` is `urn:sha256:<hex>` — the SHA-256 of the registered file — because provenance does not keep images;
a wallet cannot display it, but it names the exact bytes the artist registered.

The token and its royalty go to the work's registrant (the key that signed the registration), whoever pays for
the mint. Like an anchor, a mint is noted as pending before it is sent and recorded only once mined; a later
`mint` of the same work settles the note first (see `chain`), so an interrupted mint is never paid twice.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from web3 import Web3
from web3.logs import DISCARD

from .chain import NFT, Chain, TxRevertedError
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
    owner: str  # the work's registrant: holds the token and receives the royalty
    tx_hash: str
    block_number: int
    chain_id: int
    sent: bool = True  # False: a tx sent by an earlier, interrupted run was found mined and recorded
    recovered: bool = False


def minted(ledger: Ledger, chain: Chain, work_id: int) -> int | None:
    ledger.ensure_chain_tables()
    row = ledger.conn.execute("SELECT token_id FROM tokens WHERE chain_id = ? AND instance = ? AND work_id = ?",
                              (chain.chain_id, chain.instance, work_id)).fetchone()
    return row[0] if row else None


def mint(ledger: Ledger, chain: Chain, work_id: int, *, royalty_bps: int = 500) -> MintResult:
    """Mint `work_id` to its registrant with an EIP-2981 royalty; stores the metadata and receipt.

    A mint of this work sent by an earlier run is settled first: recorded if it was mined (nothing is sent),
    sent again as the same signed bytes if the node lost it, forgotten if it can never be mined.
    """
    if not 0 <= royalty_bps <= MAX_ROYALTY_BPS:
        raise UsageError(f"royalty of {royalty_bps} basis points is outside 0..{MAX_ROYALTY_BPS}")
    existing = minted(ledger, chain, work_id)
    if existing is not None:
        raise UsageError(f"work #{work_id} is already token {existing} on chain {chain.chain_id}")
    owner = Web3.to_checksum_address(ledger.work(work_id).registrant)
    meta = canonical_json(metadata(ledger, work_id))
    cid = cid_of(meta.encode())
    contract = chain.contract(ledger, NFT)
    label = f"mint of work #{work_id}"
    for p in chain.pending(ledger, "mint"):
        if p.detail.get("work_id") != work_id:
            continue
        if p.contract.lower() == contract.address.lower():  # else: for a contract that is gone
            receipt = chain.settle(p, f"the {label} sent by an earlier run")
            token_id = _minted_token(contract, receipt, owner) if receipt and receipt["status"] == 1 else None
            if token_id is not None:
                return _record(ledger, chain, contract.address, work_id, token_id, meta, p.detail["royalty_bps"],
                               owner, receipt, sent=False)
        chain.forget_pending(ledger, p.tx.tx_hash)
    tx = chain.build(contract.functions.mint(owner, f"ipfs://{cid}", royalty_bps), label)
    try:
        receipt = chain.send(tx, label, on_signed=lambda signed: chain.note_pending(
            ledger, signed, "mint", contract.address, {"work_id": work_id, "cid": cid, "royalty_bps": royalty_bps}))
    except TxRevertedError:  # mined and reverted: nothing left to settle
        _forget_work(ledger, chain, work_id)
        raise
    return _record(ledger, chain, contract.address, work_id, _minted_token(contract, receipt, owner), meta,
                   royalty_bps, owner, receipt, sent=True)


def _minted_token(contract, receipt: dict, owner: str) -> int | None:
    """The token id of the mint in `receipt`: its Transfer event from the zero address, emitted by `contract`."""
    for event in contract.events.Transfer().process_receipt(receipt, errors=DISCARD):
        args = event["args"]
        if event["address"].lower() == contract.address.lower() and int(args["from"], 16) == 0 and \
                args["to"].lower() == owner.lower():
            return args["tokenId"]
    return None


def _record(ledger: Ledger, chain: Chain, contract: str, work_id: int, token_id: int, meta: str, royalty_bps: int,
            owner: str, receipt: dict, *, sent: bool) -> MintResult:
    """Record a mined mint and drop its pending note, in one ledger transaction."""
    cid = cid_of(meta.encode())
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    with ledger.transaction() as c:
        c.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (chain.chain_id, chain.instance, contract, token_id, work_id, cid, meta, royalty_bps, owner,
                   tx_hash, receipt["blockNumber"], utc_now()))
        c.execute(_forget_work_sql(c), (chain.chain_id, chain.instance, str(work_id)))
    return MintResult(work_id, token_id, contract, f"ipfs://{cid}", cid, royalty_bps, owner, tx_hash,
                      receipt["blockNumber"], chain.chain_id, sent=sent, recovered=not sent)


def _forget_work_sql(c) -> str:
    return ("DELETE FROM pending_txs WHERE kind = 'mint' AND chain_id = ? AND instance = ? AND"
            f" {c.json_text('detail', 'work_id')} = ?")


def _forget_work(ledger: Ledger, chain: Chain, work_id: int) -> None:
    with ledger.transaction() as c:
        c.execute(_forget_work_sql(c), (chain.chain_id, chain.instance, str(work_id)))


def stored_metadata(ledger: Ledger, cid: str) -> dict:
    """The metadata a token URI names, from the ledger (its CID is checked by `Ledger.verify`)."""
    ledger.ensure_chain_tables()
    row = ledger.conn.execute("SELECT metadata FROM tokens WHERE cid = ?", (cid.removeprefix("ipfs://"),)).fetchone()
    if row is None:
        raise UsageError(f"no token with metadata {cid} in this ledger")
    return json.loads(row[0])
