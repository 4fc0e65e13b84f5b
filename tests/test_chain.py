"""The chain connection on a real EVM: contract deployment and its record, chain checks, transaction failures."""
from __future__ import annotations

import socket

import pytest
from chainhelp import add_works, fund, evm_chain, evm_web3
from web3 import Web3

from provenance import _anvil, chain as chain_mod
from provenance.chain import REGISTRY, Chain, InsufficientFundsError, NodeUnreachableError, WrongChainError
from provenance.errors import UsageError
from provenance.ledger import Ledger


@pytest.fixture
def w3():
    return evm_web3()


@pytest.fixture
def tledger(tmp_path, w3):
    with Ledger.create(tmp_path / "ledger.db", chain_id=w3.eth.chain_id) as led:
        yield led


def test_deploys_on_first_use_and_records_the_address(w3, tledger, account):
    fund(w3, account.address)
    chain = evm_chain(w3, tledger, account)
    registry = chain.contract(tledger, REGISTRY)
    assert chain.has_code(registry.address)
    again = chain.contract(tledger, REGISTRY)
    assert again.address == registry.address  # recorded, not deployed twice
    d = chain.recorded_deployment(tledger, REGISTRY)
    assert (d.address, d.block_number) == (registry.address, 2)  # block 1 is the funding transfer
    tledger.verify()


def test_redeploys_when_the_recorded_address_has_no_code(w3, tledger, account):
    fund(w3, account.address)
    chain = evm_chain(w3, tledger, account)
    chain.contract(tledger, REGISTRY)
    tledger.conn.execute("UPDATE deployments SET address = ?", ("0x" + "00" * 19 + "01",))
    registry = chain.contract(tledger, REGISTRY)
    assert registry.address != "0x" + "00" * 19 + "01" and chain.has_code(registry.address)


def test_an_interrupted_deployment_is_recorded_not_deployed_twice(w3, tledger, account):
    fund(w3, account.address)
    chain = evm_chain(w3, tledger, account)

    def killed(*args):  # the deployment is mined, but the process dies before recording it
        raise KeyboardInterrupt

    chain._record_deployment = killed
    with pytest.raises(KeyboardInterrupt):
        chain.contract(tledger, REGISTRY)
    del chain._record_deployment
    assert chain.recorded_deployment(tledger, REGISTRY) is None
    [p] = chain.pending(tledger, "deploy")
    nonce = w3.eth.get_transaction_count(account.address)
    registry = chain.contract(tledger, REGISTRY)
    assert w3.eth.get_transaction_count(account.address) == nonce  # nothing sent: the mined one is recorded
    d = chain.recorded_deployment(tledger, REGISTRY)
    assert (d.address, d.tx_hash) == (registry.address, p.tx.tx_hash) and chain.pending(tledger) == []


def test_wrong_chain_id_is_refused(w3, tmp_path, account):
    with Ledger.create(tmp_path / "l.db", chain_id=31337) as led:
        with pytest.raises(WrongChainError, match="is bound to chain 31337") as e:
            Chain(w3, account=account, url="eth-tester").check(led)
        assert e.value.exit_code == 2


def test_mainnet_is_refused_unless_asked(w3, tmp_path, account, monkeypatch):
    with Ledger.create(tmp_path / "l.db", chain_id=1) as led:
        chain = Chain(w3, account=account, url="eth-tester")
        chain.chain_id = 1  # eth-tester cannot be made chain 1; the check reads only the id
        with pytest.raises(UsageError, match="mainnet"):
            chain.check(led)
        chain.check(led, mainnet=True)


def test_insufficient_funds_is_a_clear_error(w3, tledger, other_account):
    chain = evm_chain(w3, tledger, other_account)  # never funded
    with pytest.raises(InsufficientFundsError, match=other_account.address):
        chain.contract(tledger, REGISTRY)
    assert chain.recorded_deployment(tledger, REGISTRY) is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_node(tmp_path, account):
    with Ledger.create(tmp_path / "l.db") as led:
        with pytest.raises(NodeUnreachableError, match="no Ethereum node answers") as e:
            with chain_mod.open_chain(led, rpc_url=f"http://127.0.0.1:{_closed_port()}", account=account):
                pass
        assert "--rpc-url" in e.value.hint


def test_missing_anvil_says_make_install(monkeypatch, tmp_path):
    monkeypatch.setattr(_anvil, "_REPO_ANVIL", tmp_path / "nothing")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(_anvil.ANVIL_ENV, raising=False)
    with pytest.raises(UsageError, match="not installed") as e:
        _anvil.find_anvil()
    assert "make install" in e.value.hint


def test_managed_node_keeps_state_between_starts(tmp_path):
    with _anvil.ManagedNode(tmp_path / "chain") as node:
        _anvil.rpc(node.url, "anvil_mine", ["0x3"])
        first = node.instance
    with _anvil.ManagedNode(tmp_path / "chain") as node:
        assert int(_anvil.rpc(node.url, "eth_blockNumber"), 16) == 3
        assert node.instance == first
    (tmp_path / "chain" / "anvil-state.json").unlink()
    with _anvil.ManagedNode(tmp_path / "chain") as node:
        assert int(_anvil.rpc(node.url, "eth_blockNumber"), 16) == 0
        assert node.instance != first
