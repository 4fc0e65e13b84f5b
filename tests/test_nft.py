"""NFT minting on a real EVM: metadata content, its CID as the token URI, royalties, stored metadata, interrupted
and refused mints (in-process EVM, on both storage backends: `setup`), and the CLI on the managed Anvil node
(SQLite only: the node, not the storage, is what it tests)."""
from __future__ import annotations

import json
import re

import pytest
from chainhelp import add_works, cli_home, evm_chain, evm_web3, fund, home_account, managed_w3, run  # noqa: F401

from provenance import nft
from provenance.chain import NFT, TxRevertedError, artifact
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
def setup(backend, account):
    """A ledger of 2 works on each backend, and the in-process EVM."""
    w3 = evm_web3()
    fund(w3, account.address)
    with Ledger.create(backend, chain_id=w3.eth.chain_id) as led:
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


def test_mint_goes_to_the_registrant_whoever_pays(tmp_path, account, other_account):
    w3 = evm_web3()
    fund(w3, other_account.address)
    with Ledger.create(tmp_path / "ledger.db", chain_id=w3.eth.chain_id) as led:
        add_works(led, account, 1)
        chain = evm_chain(w3, led, other_account)  # pays for the mint; the work is `account`'s
        r = nft.mint(led, chain, 1, royalty_bps=500)
        token = w3.eth.contract(address=r.contract, abi=artifact(NFT)["abi"])
        assert r.owner == account.address == token.functions.ownerOf(r.token_id).call()
        assert token.functions.royaltyInfo(r.token_id, 10_000).call() == [account.address, 500]


# -- interruptions and failures ---------------------------------------------------------------------------------
def _nonce(chain) -> int:
    return chain.w3.eth.get_transaction_count(chain.account.address)


def test_interrupted_mint_is_recorded_without_a_second_tx(setup, monkeypatch):
    ledger, chain = setup
    real_record = nft._record

    def killed(*args, **kwargs):  # the tx is mined, but the process dies before writing the token
        raise KeyboardInterrupt

    monkeypatch.setattr(nft, "_record", killed)
    with pytest.raises(KeyboardInterrupt):
        nft.mint(ledger, chain, 2, royalty_bps=250)
    assert nft.minted(ledger, chain, 2) is None  # nothing claimed
    [p] = chain.pending(ledger, "mint")
    monkeypatch.setattr(nft, "_record", real_record)
    nonce = _nonce(chain)
    r = nft.mint(ledger, chain, 2, royalty_bps=900)
    assert r.recovered and not r.sent and r.tx_hash == p.tx.tx_hash and _nonce(chain) == nonce
    assert (r.token_id, r.royalty_bps) == (1, 250)  # the mined tx's token and royalty, from its receipt
    assert nft.minted(ledger, chain, 2) == 1 and chain.pending(ledger) == []
    assert nft.mint(ledger, chain, 1).token_id == 2
    ledger.verify()


def test_a_mint_noted_but_never_sent_is_sent_again_as_the_same_tx(setup):
    ledger, chain = setup
    nft.mint(ledger, chain, 1)  # deploys the contract

    def killed(*args):  # dies after noting the signed tx, before the node sees it (or the node lost it)
        raise KeyboardInterrupt

    chain._broadcast = killed
    with pytest.raises(KeyboardInterrupt):
        nft.mint(ledger, chain, 2)
    del chain._broadcast
    [p] = chain.pending(ledger, "mint")
    assert chain.receipt(p.tx.tx_hash) is None and not chain.known(p.tx.tx_hash)
    r = nft.mint(ledger, chain, 2)
    assert r.tx_hash == p.tx.tx_hash and r.recovered and r.token_id == 2  # the same bytes: one tx, one token
    assert chain.pending(ledger) == []


def test_a_noted_mint_whose_nonce_went_to_another_tx_is_forgotten_and_minted_anew(setup):
    ledger, chain = setup
    chain.contract(ledger, NFT)

    def killed(*args):
        raise KeyboardInterrupt

    chain._broadcast = killed
    with pytest.raises(KeyboardInterrupt):
        nft.mint(ledger, chain, 2)
    del chain._broadcast
    [p] = chain.pending(ledger, "mint")
    first = nft.mint(ledger, chain, 1)  # takes the nonce the noted tx was signed with
    assert chain.w3.eth.get_transaction(first.tx_hash)["nonce"] == p.tx.nonce
    r = nft.mint(ledger, chain, 2)  # the noted tx can never be mined now: a new one is sent
    assert r.sent and not r.recovered and r.tx_hash != p.tx.tx_hash and r.token_id == 2
    assert chain.pending(ledger) == []
    ledger.verify()


def test_a_mint_the_contract_refuses_is_a_clear_error_and_records_nothing(setup, monkeypatch):
    ledger, chain = setup
    chain.contract(ledger, NFT)
    nonce = _nonce(chain)
    monkeypatch.setattr(nft, "MAX_ROYALTY_BPS", 20_000)  # let 150% through to the contract, which caps at 100%
    with pytest.raises(TxRevertedError) as e:
        nft.mint(ledger, chain, 1, royalty_bps=15_000)
    assert str(e.value) == ("mint of work #1 would revert:"
                            " ERC2981InvalidTokenRoyalty(tokenId=1, numerator=15000, denominator=10000)")
    assert e.value.error == "ERC2981InvalidTokenRoyalty" and "nothing was sent" in e.value.hint
    assert nft.minted(ledger, chain, 1) is None and chain.pending(ledger) == [] and _nonce(chain) == nonce


# -- CLI on the managed Anvil node ------------------------------------------------------------------------------
def test_cli_mint_with_royalty_on_the_managed_chain(cli_home):
    r = run("mint", "2", "--royalty", "5%")
    assert r.exit_code == 0, r.output
    registrant = home_account().address
    m = re.search(r"^minted work #2 as token (\d+) of (0x[0-9a-fA-F]{40})  royalty 5% to (0x[0-9a-fA-F]{40})\n"
                  r"  token URI (ipfs://b[a-z2-7]+)\n  tx (0x[0-9a-f]{64}) \(block \d+\)$", r.output, re.M)
    assert m and m[1] == "1" and m[3] == registrant, r.output
    assert run("ledger", "verify").exit_code == 0
    node, w3 = managed_w3(cli_home)  # the state survived the command: read the token from the chain
    try:
        token = w3.eth.contract(address=m[2], abi=artifact(NFT)["abi"])
        assert token.functions.royaltyInfo(1, 10_000).call() == [registrant, 500]
        assert token.functions.ownerOf(1).call() == registrant and token.functions.tokenURI(1).call() == m[4]
        assert w3.eth.get_transaction_receipt(m[5])["status"] == 1
    finally:
        node.stop()
    r = run("mint", "2")
    assert r.exit_code == 2 and "error: work #2 is already token 1" in r.output
    r = run("mint", "3", "--json", "--royalty", "250bps")
    assert r.exit_code == 0 and json.loads(r.output)["token_id"] == 2 and json.loads(r.output)["royalty_bps"] == 250


def test_cli_mint_refused_by_the_contract_is_one_clear_line(cli_home, monkeypatch):
    monkeypatch.setattr(nft, "MAX_ROYALTY_BPS", 20_000)  # let 150% through to the contract, which caps at 100%
    r = run("mint", "1", "--royalty", "150%")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith("error: mint of work #1 would revert: ERC2981InvalidTokenRoyalty(tokenId=1,"
                               " numerator=15000, denominator=10000)\n  hint: nothing was sent or recorded")
    with Ledger.open(cli_home / "ledger.db") as led:
        assert led.conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
        assert led.conn.execute("SELECT count(*) FROM pending_txs WHERE kind = 'mint'").fetchone()[0] == 0
