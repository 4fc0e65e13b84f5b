"""Anchoring on a real EVM: one tx per batch, nothing twice, interrupts lose nothing, proofs check out.

Library tests run on the in-process EVM (eth-tester), on both storage backends (`setup`); CLI tests run on the
managed Anvil node, whose state must survive between two commands (SQLite only: the node, not the storage, is
what they test).
"""
from __future__ import annotations

import json
import socket

import functools
import re

import pytest
from chainhelp import add_works, cli_home, evm_chain, evm_web3, fund, home_account, managed_w3  # noqa: F401
from click.testing import CliRunner

from cli.main import cli
from provenance import _anvil, anchoring, chain as chain_mod, merkle
from provenance.chain import REGISTRY, TxRevertedError, TxTimeoutError, open_chain
from provenance.errors import UsageError
from provenance.ledger import Ledger


@pytest.fixture
def w3():
    return evm_web3()


@pytest.fixture
def setup(backend, w3, account):
    """A ledger of 5 works on each backend, and the in-process EVM."""
    fund(w3, account.address)
    with Ledger.create(backend, chain_id=w3.eth.chain_id) as led:
        add_works(led, account, 5)
        yield led, evm_chain(w3, led, account)


def test_anchor_sends_one_tx_and_records_the_receipt(setup):
    ledger, chain = setup
    r = anchoring.anchor(ledger, chain)
    assert r.sent and r.size == 5 and r.new_entries == 5
    a = r.anchor
    assert a.root == "0x" + merkle.root(ledger.entry_hashes()).hex()
    assert (a.first_entry, a.size, a.chain_id) == (1, 5, chain.chain_id)
    receipt = chain.w3.eth.get_transaction_receipt(a.tx_hash)
    assert receipt["blockNumber"] == a.block_number and a.block_timestamp > 0
    registry = chain.w3.eth.contract(address=a.contract, abi=anchoring._registry_abi())
    assert registry.functions.anchoredAt(bytes.fromhex(a.root[2:])).call() == a.block_timestamp
    assert anchoring.anchors(ledger) == [a]
    ledger.verify()


def test_anchoring_twice_anchors_nothing_new(setup):
    ledger, chain = setup
    first = anchoring.anchor(ledger, chain)
    height = chain.block_number()
    again = anchoring.anchor(ledger, chain)
    assert again.nothing_new and not again.sent and again.anchor == first.anchor
    assert chain.block_number() == height
    assert len(anchoring.anchors(ledger)) == 1


def test_new_entries_are_anchored_in_one_more_tx(setup, account):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    add_works(ledger, account, 3, start=100)
    r = anchoring.anchor(ledger, chain)
    assert (r.new_entries, r.anchor.first_entry, r.anchor.size) == (3, 6, 8)


def test_dry_run_sends_nothing(setup):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)  # deploys the registry
    add_works(ledger, chain.account, 1, start=50)
    height = chain.block_number()
    r = anchoring.anchor(ledger, chain, dry_run=True)
    assert not r.sent and r.cost.gas > 40_000 and r.new_entries == 1 and r.anchor is None
    assert r.deploy_cost is None and r.cost_note is None
    assert chain.block_number() == height and len(anchoring.anchors(ledger)) == 1


def test_dry_run_on_a_fresh_chain_prices_the_deployment_and_the_anchor(setup):
    ledger, chain = setup
    height = chain.block_number()
    r = anchoring.anchor(ledger, chain, dry_run=True)
    assert not r.sent and r.anchor is None and r.new_entries == 5
    assert 100_000 < r.deploy_cost.gas < 300_000
    # eth-tester takes no state override, so the anchor is not estimated: the measured figure, labelled as such
    assert r.cost.gas == anchoring.MEASURED_ANCHOR_GAS and "measured on anvil" in r.cost_note
    assert r.total_cost.gas == r.deploy_cost.gas + r.cost.gas
    assert chain.block_number() == height and chain.recorded_deployment(ledger, REGISTRY) is None


def test_an_anchor_reverted_on_chain_records_nothing(setup, monkeypatch):
    ledger, chain = setup
    chain.contract(ledger, REGISTRY)
    build = chain.build

    def starved(call, label):  # passes the estimate, then runs out of gas when mined: a receipt with status 0
        return {**build(call, label), "gas": 30_000}

    monkeypatch.setattr(chain, "build", starved)
    with pytest.raises(TxRevertedError, match=r"anchor of 5 entries: transaction 0x[0-9a-f]{64} reverted in block"):
        anchoring.anchor(ledger, chain)
    assert anchoring.anchors(ledger) == [] and chain.pending(ledger) == []
    monkeypatch.setattr(chain, "build", build)
    r = anchoring.anchor(ledger, chain)
    assert r.sent and r.anchor.size == 5 and len(anchoring.anchors(ledger)) == 1


def test_interrupted_anchor_is_recorded_without_a_second_tx(setup, monkeypatch):
    ledger, chain = setup
    real_record = anchoring._record

    def killed(*args, **kwargs):  # the tx is mined, but the process dies before writing the receipt
        raise KeyboardInterrupt

    monkeypatch.setattr(anchoring, "_record", killed)
    with pytest.raises(KeyboardInterrupt):
        anchoring.anchor(ledger, chain)
    assert anchoring.anchors(ledger) == []  # nothing claimed
    monkeypatch.setattr(anchoring, "_record", real_record)
    height = chain.block_number()
    r = anchoring.anchor(ledger, chain)
    assert r.recovered and not r.sent and r.anchor is not None and chain.block_number() == height
    assert len(anchoring.anchors(ledger)) == 1 and chain.pending(ledger) == []


def test_an_anchor_not_mined_in_time_stays_pending_and_is_recorded_once_mined(tmp_path, account, monkeypatch):
    with Ledger.create(tmp_path / "ledger.db") as ledger:  # chain 31337, the managed node's
        add_works(ledger, account, 3)
        with open_chain(ledger, account=account, data_dir=tmp_path / "home") as chain:
            anchoring.anchor(ledger, chain)  # deploys the registry while the node still mines
            add_works(ledger, account, 2, start=10)
            chain.w3.provider.make_request("evm_setAutomine", [False])
            monkeypatch.setattr(chain_mod, "RECEIPT_TIMEOUT", 0.5)
            with pytest.raises(TxTimeoutError, match=r"anchor of 5 entries: transaction 0x[0-9a-f]{64} was not mined"
                                                     r" within 0.5 s") as e:
                anchoring.anchor(ledger, chain)
            assert "never paid twice" in e.value.hint
            assert [a.size for a in anchoring.anchors(ledger)] == [3]  # nothing claimed
            [p] = chain.pending(ledger)
            chain.w3.provider.make_request("evm_mine", [])  # mining resumes
            r = anchoring.anchor(ledger, chain)
            assert r.recovered and not r.sent and r.anchor.tx_hash == p.tx.tx_hash and r.new_entries == 2
            assert chain.w3.eth.get_transaction_count(account.address) == 3  # deploy and two anchors, no more
            assert chain.pending(ledger) == []


def test_a_root_anchored_elsewhere_is_found_not_resent(setup):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    ledger.conn.execute("DELETE FROM anchors")  # e.g. the receipt was lost with a restored backup
    height = chain.block_number()
    r = anchoring.anchor(ledger, chain)
    assert r.recovered and not r.sent and chain.block_number() == height


def test_inclusion_proof_verifies_against_the_anchored_root(setup):
    ledger, chain = setup
    with pytest.raises(UsageError, match="not anchored yet"):
        anchoring.inclusion_proof(ledger, 3)
    a = anchoring.anchor(ledger, chain).anchor
    p = anchoring.inclusion_proof(ledger, 3)
    assert (p.index, p.size, "0x" + p.root, p.anchor) == (2, 5, a.root, a)
    assert merkle.verify_inclusion(bytes.fromhex(p.entry_hash), p.index, p.size, p.proof_bytes(),
                                   bytes.fromhex(p.root))
    assert not merkle.verify_inclusion(bytes.fromhex(p.entry_hash), 1, p.size, p.proof_bytes(),
                                       bytes.fromhex(p.root))


def test_verify_catches_an_edited_anchor(setup):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    ledger.conn.execute("UPDATE anchors SET root = ?", ("0x" + "ab" * 32,))
    with pytest.raises(Exception, match="Merkle root is no longer what was anchored"):
        ledger.verify()


def test_the_anchoring_key_signs_the_checkpoint_in_a_domain_naming_the_registry(setup, account):
    from provenance.signing import recover_checkpoint_signer

    ledger, chain = setup
    a = anchoring.anchor(ledger, chain).anchor
    record = a.checkpoint_record(ledger.ledger_id)
    assert a.checkpoint_signer == account.address == a.sender
    assert recover_checkpoint_signer(record, a.checkpoint_signature, a.chain_id, a.contract) == account.address
    assert recover_checkpoint_signer(record, a.checkpoint_signature, a.chain_id) != account.address  # no registry
    assert ledger.checkpoints()[-1].signer == account.address  # and the checkpoint itself, without the registry


def test_an_anchor_recorded_unsigned_is_signed_by_the_next_run_sending_nothing(setup):
    ledger, chain = setup
    a = anchoring.anchor(ledger, chain).anchor
    ledger.conn.execute("UPDATE anchors SET checkpoint_signer = NULL, checkpoint_signature = NULL")  # schema 1
    ledger.verify()  # unsigned anchors are allowed: they just prove nothing in a certificate
    height = chain.block_number()
    r = anchoring.anchor(ledger, chain)
    assert r.nothing_new and not r.sent and chain.block_number() == height
    assert anchoring.anchors(ledger) == [a]  # signed again, the same (deterministic) signature


def test_verify_catches_an_edited_anchor_signature(setup, other_account):
    ledger, chain = setup
    a = anchoring.anchor(ledger, chain).anchor
    ledger.conn.execute("UPDATE anchors SET checkpoint_signer = ?", (other_account.address,))
    with pytest.raises(Exception, match=re.escape(f"the anchor in transaction {a.tx_hash}: the checkpoint signature"
                                                  f" does not match its signer {other_account.address}")):
        ledger.verify()


def test_status_reports_an_anchor_lost_with_the_chain(setup, tmp_path, account):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    assert [s.found for s in anchoring.chain_status(ledger, chain).anchors] == [True]
    fresh_w3 = evm_web3()  # a chain started from scratch: same id, no registry, no anchors
    fund(fresh_w3, account.address)
    fresh = evm_chain(fresh_w3, ledger, account)
    status = anchoring.chain_status(ledger, fresh)
    assert [s.found for s in status.anchors] == [False] and "missing" in status.anchors[0].reason
    r = anchoring.anchor(ledger, fresh)
    assert r.sent and r.new_entries == 5


# -- CLI on the managed Anvil node -----------------------------------------------------------------------------
def _run(*args, **kw):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)
    return result


def test_cli_state_survives_between_commands_and_a_reset_is_reanchored(cli_home):
    r = _run("anchor")
    assert r.exit_code == 0, r.output
    assert "anchoring root" in r.output and "47," in r.output and "anchored: root" in r.output
    r = _run("anchor")
    assert r.exit_code == 0 and "nothing new to anchor" in r.output
    r = _run("chain", "status")
    assert r.exit_code == 0 and "ProvenanceRegistry" in r.output and "found" in r.output
    lines = _run("anchors", "list", "--json").output.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["size"] == 4

    (cli_home / "chain" / "anvil-state.json").unlink()  # the local chain starts from scratch
    r = _run("chain", "status")
    assert "missing" in r.output
    r = _run("anchor")
    assert r.exit_code == 0 and "anchored: root" in r.output
    assert len(_run("anchors", "list").output.splitlines()) == 2
    assert _run("ledger", "verify").exit_code == 0


def _gas(label: str, output: str) -> int:
    return int(re.search(label + r": ([\d,]+) gas", output)[1].replace(",", ""))


def test_cli_dry_run_on_a_fresh_chain_prices_the_deployment_and_the_anchor(cli_home):
    r = _run("anchor", "--dry-run")
    assert r.exit_code == 0, r.output
    assert re.search(r"would anchor root 0x[0-9a-f]{64}: 4 entries \(4 new\) on local chain 31337", r.output)
    deploy, anchor = _gas("first deploy the registry", r.output), _gas("the anchor", r.output)
    assert "(estimated against the registry's code without deploying it, through a state override)" in r.output
    assert _gas("total", r.output) == deploy + anchor
    status = json.loads(_run("chain", "status", "--json").output)
    assert status["block_number"] == 0 and status["contracts"] == [] and status["pending"] == []  # nothing sent

    r = _run("anchor")
    assert r.exit_code == 0 and f": {anchor:,} gas" in r.output  # the dry run's figure is the real estimate
    status = json.loads(_run("chain", "status", "--json").output)
    [registry] = status["contracts"]
    node, w3 = managed_w3(cli_home)
    try:
        assert w3.eth.get_transaction_receipt(registry["tx_hash"])["gasUsed"] <= deploy
    finally:
        node.stop()

    with Ledger.open(cli_home / "ledger.db") as led:
        add_works(led, home_account(), 1, start=50)
    r = _run("anchor", "--dry-run")  # the registry exists now: only the anchor, estimated without the key
    assert r.exit_code == 0 and "5 entries (1 new)" in r.output and "first deploy" not in r.output
    assert _gas("the anchor", r.output) > 40_000


def test_cli_chain_status_json(cli_home):
    assert _run("anchor").exit_code == 0
    s = json.loads(_run("chain", "status", "--json").output)
    assert (s["chain_id"], s["block_number"]) == (31337, 2) and s["balance_wei"] > 0
    assert [(c["name"], c["code_present"]) for c in s["contracts"]] == [(REGISTRY, True)]
    [a] = s["anchors"]
    assert (a["size"], a["first_entry"], a["found"], a["reason"]) == (4, 1, True, "found")
    assert a["tx_hash"].startswith("0x") and s["pending"] == []
    [line] = _run("anchors", "list", "--json").output.splitlines()
    assert json.loads(line) == {k: v for k, v in a.items() if k not in ("found", "reason")}


def test_cli_anchor_not_mined_times_out_keeps_its_note_and_a_later_run_records_it(cli_home, monkeypatch):
    assert _run("anchor").exit_code == 0  # deploys the registry and anchors 4 entries while the node mines
    with Ledger.open(cli_home / "ledger.db") as led:
        add_works(led, home_account(), 2, start=50)
    managed = _anvil.ManagedNode
    monkeypatch.setattr(_anvil, "ManagedNode", functools.partial(managed, args=("--no-mining",)))
    monkeypatch.setattr(chain_mod, "RECEIPT_TIMEOUT", 1.0)
    r = CliRunner().invoke(cli, ["anchor"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert re.search(r"^error: anchor of 6 entries: transaction 0x[0-9a-f]{64} was not mined within 1 s", r.output,
                     re.M) and "never paid twice" in r.output
    assert len(_run("anchors", "list").output.splitlines()) == 1  # nothing claimed
    [p] = json.loads(_run("chain", "status", "--json").output)["pending"]
    assert (p["kind"], p["size"]) == ("anchor", 6)
    assert "pending anchor tx " + p["tx_hash"] in _run("chain", "status").output

    monkeypatch.setattr(_anvil, "ManagedNode", managed)
    # The node forgot its pool when it stopped: the next run sends the very same signed transaction again.
    r = _run("anchor")
    assert r.exit_code == 0 and "recorded the anchor sent by an earlier run" in r.output, r.output
    assert p["tx_hash"] in r.output and "(6 entries, 2 new)" in r.output
    node, w3 = managed_w3(cli_home)
    try:
        assert w3.eth.get_transaction_count(home_account().address) == 3  # deploy and two anchors, no more
    finally:
        node.stop()
    assert json.loads(_run("chain", "status", "--json").output)["pending"] == []
    assert _run("ledger", "verify").exit_code == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_unreachable_node_is_one_clear_line(cli_home):
    r = CliRunner().invoke(cli, ["anchor", "--rpc-url", f"http://127.0.0.1:{_closed_port()}"])
    assert r.exit_code == 1 and "error: no Ethereum node answers" in r.output and "Traceback" not in r.output


def test_cli_insufficient_funds_on_an_unmanaged_node(cli_home, tmp_path):
    from provenance import _anvil

    with _anvil.ManagedNode(tmp_path / "other") as node:  # reached by --rpc-url: no auto-funding
        r = CliRunner().invoke(cli, ["anchor", "--rpc-url", node.url])
    assert r.exit_code == 1 and "error: 0x" in r.output and "has 0 wei" in r.output, r.output
    assert "faucet" in r.output and "Traceback" not in r.output
    assert _run("anchors", "list").output == ""


def test_cli_wrong_chain_id(home):
    assert _run("init", "--chain-id", "11155111").exit_code == 0
    r = CliRunner().invoke(cli, ["anchor", "--dry-run"])
    assert r.exit_code == 2 and "is chain 31337, but this ledger is bound to chain 11155111" in r.output
