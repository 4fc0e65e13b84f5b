"""NFT minting on the in-process EVM: metadata content, its CID as the token URI, royalties, stored metadata."""
from __future__ import annotations

import json

import pytest
from chainhelp import add_works, evm_chain, evm_web3, fund

from provenance import nft
from provenance.chain import NFT, artifact
from provenance.errors import TamperedLedgerError, UsageError
from provenance.ledger import Ledger, canonical_json


def test_cid_of_the_empty_block_is_the_well_known_one():
    # `ipfs add --cid-version 1 --raw-leaves` of an empty file
    assert nft.cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize("text,bps", [("5%", 500), ("2.5%", 250), ("250bps", 250), ("0%", 0), ("100%", 10_000)])
def test_parse_royalty(text, bps):
    assert nft.parse_royalty(text) == bps


@pytest.mark.parametrize("text", ["5", "101%", "0.001%", "-1%", "five"])
def test_parse_royalty_refuses(text):
    with pytest.raises(UsageError):
        nft.parse_royalty(text)


@pytest.fixture
def setup(tmp_path, account):
    w3 = evm_web3()
    fund(w3, account.address)
    with Ledger.create(tmp_path / "ledger.db", chain_id=w3.eth.chain_id) as led:
        add_works(led, account, 2)
        yield led, evm_chain(w3, led, account)


def test_metadata_carries_fingerprints_and_the_ledger_entry(setup):
    ledger, _ = setup
    m = nft.metadata(ledger, 2)
    w = ledger.work(2)
    assert m["name"] == w.title and m["image"] == f"urn:sha256:{w.sha256}"
    assert {a["trait_type"] for a in m["attributes"]} >= {"artist", "license", "registrant"}
    p = m["provenance"]
    assert {f["algorithm"] for f in p["fingerprints"]} == {"sha256", "pdq/1", "phash/1"}
    assert p["entry"]["seq"] == w.entry_seq and p["ledger_id"] == ledger.ledger_id
    assert p["entry"]["hash"] == ledger.entry_hashes()[w.entry_seq - 1].hex()


def test_mint_points_the_token_at_exactly_the_stored_metadata(setup, account):
    ledger, chain = setup
    r = nft.mint(ledger, chain, 2, royalty_bps=250)
    assert r.token_id == 1 and r.token_uri == f"ipfs://{r.cid}"
    token = chain.w3.eth.contract(address=r.contract, abi=artifact(NFT)["abi"])
    assert token.functions.tokenURI(1).call() == r.token_uri
    assert token.functions.ownerOf(1).call() == account.address
    assert token.functions.royaltyInfo(1, 10_000).call() == [account.address, 250]
    stored = nft.stored_metadata(ledger, r.token_uri)
    assert stored == nft.metadata(ledger, 2)
    assert nft.cid_of(canonical_json(stored).encode()) == r.cid
    assert nft.mint(ledger, chain, 1).token_id == 2
    ledger.verify()


def test_minting_a_work_twice_is_refused(setup):
    ledger, chain = setup
    nft.mint(ledger, chain, 1)
    with pytest.raises(UsageError, match="already token 1"):
        nft.mint(ledger, chain, 1)


def test_verify_catches_edited_token_metadata(setup):
    ledger, chain = setup
    nft.mint(ledger, chain, 1)
    meta = json.loads(ledger.conn.execute("SELECT metadata FROM tokens").fetchone()[0])
    meta["attributes"][0]["value"] = "Someone Else"
    ledger.conn.execute("UPDATE tokens SET metadata = ?", (canonical_json(meta),))
    with pytest.raises(TamperedLedgerError, match="metadata of token 1 was edited"):
        ledger.verify()
