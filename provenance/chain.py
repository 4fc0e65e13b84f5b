"""A connection to an EVM chain: the managed local node or any JSON-RPC endpoint, the contracts, transactions.

`open_chain(ledger, ...)` connects (by default to the managed Anvil node, see `_anvil`), checks that the chain is
the one the ledger's signatures are bound to, and refuses Ethereum mainnet unless asked. Contracts are deployed
from the committed artifacts in contracts/build/ on first use and their addresses recorded in the ledger per
chain instance: its id and its genesis block hash, so a chain restarted from scratch is a new chain. The managed
node is the exception: anvil 1.7.1 makes a new genesis block each time it loads --state, so its instance is an
id kept next to the state file and renewed when the state file is (re)created.

Transactions are signed locally with the artist's key and sent raw: nothing needs an unlocked node account.
Before a transaction is sent, its hash and signed bytes are noted in the ledger (`pending_txs`). A later run
settles the note before sending anything new: it records the transaction if it was mined, waits for it if the
node still has it, and sends the very same bytes again if the node lost it (the managed node forgets its pool
when it stops). The same bytes can be mined at most once, so an interrupted or timed-out command never pays
twice; a note is dropped only once its nonce has been used by another transaction, when it can never be mined.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import TimeExhausted, Web3RPCError

from . import _anvil
from ._reverts import revert_reason
from .errors import ProvenanceError, UsageError
from .ledger import Ledger, utc_now

RPC_URL_ENV = "PROVENANCE_RPC_URL"
MAINNET_CHAIN_ID = 1
ARTIFACTS = Path(__file__).resolve().parent.parent / "contracts" / "build"
REGISTRY, NFT = "ProvenanceRegistry", "ProvenanceNFT"
#: What the managed node gives the artist's account: plenty for any local use, never real money.
LOCAL_FUNDING_WEI = 100 * 10**18
RECEIPT_TIMEOUT = float(os.environ.get("PROVENANCE_TX_TIMEOUT", "120"))
#: The sender of estimates when no key is known: gas estimates do not depend on who asks.
ZERO_ADDRESS = "0x" + "00" * 20
#: Where `estimate_as_deployed` puts a contract's code: derived from a hash, so it is no precompile and (with
#: overwhelming likelihood) no account on any chain.
_PROBE_ADDRESS = Web3.to_checksum_address(keccak(b"provenance: gas estimate probe")[-20:])


class ChainError(ProvenanceError):
    """Something went wrong talking to the chain."""


class NodeUnreachableError(ChainError):
    """No JSON-RPC node answers at the URL."""


class WrongChainError(ChainError):
    """The node serves another chain than the one the ledger is bound to."""

    exit_code = 2


class InsufficientFundsError(ChainError):
    """The account cannot pay for the transaction."""


class TxRevertedError(ChainError):
    """The contract refused the transaction. `error` names the contract's custom error when it gave one."""

    def __init__(self, message: str, hint: str | None = None, error: str | None = None):
        super().__init__(message, hint)
        self.error = error


class TxTimeoutError(ChainError):
    """A sent transaction was not mined in time (dropped, or the fee was too low)."""


@lru_cache(maxsize=None)
def artifact(name: str) -> dict:
    """The committed ABI and bytecode of contract `name`."""
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


@dataclass(frozen=True)
class Cost:
    gas: int
    max_fee_per_gas: int  # wei; the most this tx can pay per gas
    expected_fee_per_gas: int  # base fee + tip at estimate time

    @property
    def max_wei(self) -> int:
        return self.gas * self.max_fee_per_gas

    @property
    def expected_wei(self) -> int:
        return self.gas * self.expected_fee_per_gas


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction as noted before it is sent: enough to look it up, or to send the same bytes again."""

    tx_hash: str
    raw: str
    sender: str
    nonce: int


@dataclass(frozen=True)
class PendingTx:
    """A transaction noted as sent but not yet recorded as mined (`kind`: deploy, anchor or mint)."""

    kind: str
    contract: str
    detail: dict
    tx: SignedTx
    sent_at: str


@dataclass(frozen=True)
class Deployment:
    name: str
    address: str
    tx_hash: str | None
    block_number: int | None


def format_eth(wei: int) -> str:
    return f"{wei / 10**18:.6f} ETH" if wei >= 10**12 else f"{wei} wei"


class Chain:
    """A checked connection to one chain, optionally with the account that signs transactions."""

    def __init__(self, w3: Web3, *, account: LocalAccount | None = None, address: str | None = None,
                 managed: bool = False, url: str | None = None, instance: str | None = None):
        self.w3 = w3
        self.account = account
        self.address = account.address if account else address
        self.managed = managed
        self.url = url
        try:
            self.chain_id = w3.eth.chain_id
            self.instance = instance or "0x" + bytes(w3.eth.get_block(0)["hash"]).hex()
        except Exception as e:
            raise _unreachable(url, e) from None

    # -- identity and checks -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"local chain {self.chain_id} (managed)" if self.managed else f"chain {self.chain_id} at {self.url}"

    def check(self, ledger: Ledger, *, mainnet: bool = False) -> None:
        """Raise unless this chain is the one the ledger's signatures are bound to (and not mainnet by accident)."""
        if self.chain_id == MAINNET_CHAIN_ID and not mainnet:
            raise UsageError("this node serves Ethereum mainnet, where every transaction costs real money",
                             hint="add --mainnet if that is what you want")
        if self.chain_id != ledger.chain_id:
            where = "the managed local chain" if self.managed else f"the node at {self.url}"
            raise WrongChainError(f"{where} is chain {self.chain_id}, but this ledger is bound to chain"
                                  f" {ledger.chain_id}",
                                  hint=f"use --rpc-url with a node of chain {ledger.chain_id} (registration"
                                       " signatures name their chain, so a ledger cannot move to another one)")

    def fund_locally(self) -> None:
        """On the managed node only: give the account local test ether, so nothing needs a faucet."""
        if self.managed and self.address and self.balance() < LOCAL_FUNDING_WEI // 2:
            self.w3.provider.make_request("anvil_setBalance", [self.address, hex(LOCAL_FUNDING_WEI)])

    def balance(self, address: str | None = None) -> int:
        return self.w3.eth.get_balance(address or self.address)

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def has_code(self, address: str) -> bool:
        return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    # -- contracts ---------------------------------------------------------------------------------------------
    def recorded_deployment(self, ledger: Ledger, name: str) -> Deployment | None:
        ledger.ensure_chain_tables()
        row = ledger.conn.execute("SELECT address, tx_hash, block_number FROM deployments WHERE chain_id = ? AND"
                                  " instance = ? AND name = ?", (self.chain_id, self.instance, name)).fetchone()
        return Deployment(name, *row) if row else None

    def contract(self, ledger: Ledger, name: str, *, deploy: bool = True):
        """The web3 contract `name` on this chain; deployed and recorded first when it is not there yet."""
        art = artifact(name)
        known = self.recorded_deployment(ledger, name)
        if known and self.has_code(known.address):
            if self.w3.eth.get_code(Web3.to_checksum_address(known.address)).hex().removeprefix("0x") != \
                    art["deployedBytecode"].removeprefix("0x"):
                raise ChainError(f"the code at {known.address} is not {name} as this provenance builds it",
                                 hint="the recorded deployment may belong to another version; check the chain")
            return self.w3.eth.contract(address=Web3.to_checksum_address(known.address), abi=art["abi"])
        if not deploy:
            return None
        # Not recorded, or recorded but gone: a chain reset at the same genesis (e.g. anvil without --state).
        for p in self.pending(ledger, "deploy"):
            if p.detail.get("name") != name:
                continue
            receipt = self.settle(p, f"the deployment of {name} sent by an earlier run")
            address = receipt and receipt["status"] == 1 and receipt.get("contractAddress")
            if address and self.w3.eth.get_code(address).hex().removeprefix("0x") == \
                    art["deployedBytecode"].removeprefix("0x"):
                return self._record_deployment(ledger, name, receipt)
            self.forget_pending(ledger, p.tx.tx_hash)
        receipt = self.transact(self.factory(name).constructor(), f"deploy {name}",
                                on_signed=lambda signed: self.note_pending(ledger, signed, "deploy", "",
                                                                           {"name": name}))
        return self._record_deployment(ledger, name, receipt)

    def factory(self, name: str):
        """The web3 contract factory of `name`, for deploying it or encoding calls to it."""
        art = artifact(name)
        return self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])

    def _record_deployment(self, ledger: Ledger, name: str, receipt: dict):
        address = receipt["contractAddress"]
        with ledger.transaction() as c:
            c.execute("INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chain_id, instance, name)"
                      " DO UPDATE SET address = excluded.address, tx_hash = excluded.tx_hash,"
                      " block_number = excluded.block_number, recorded_at = excluded.recorded_at",
                      (self.chain_id, self.instance, name, address, _hex(receipt["transactionHash"]),
                       receipt["blockNumber"], utc_now()))
            c.execute("DELETE FROM pending_txs WHERE kind = 'deploy' AND chain_id = ? AND instance = ? AND"
                      f" {c.json_text('detail', 'name')} = ?", (self.chain_id, self.instance, name))
        return self.w3.eth.contract(address=address, abi=artifact(name)["abi"])

    def estimate_as_deployed(self, name: str, function: str, args: list) -> int | None:
        """Gas of calling `function(*args)` on contract `name` as if it were deployed, without deploying it.

        eth_estimateGas with the contract's runtime code put in place by a state override (empty storage, as
        right after deployment). None when the node does not take state overrides: an estimate no higher than
        the same call to an empty account shows a node that ignored the override.
        """
        art = artifact(name)
        data = self.w3.eth.contract(address=_PROBE_ADDRESS, abi=art["abi"]).encode_abi(function, args)
        tx = {"from": self.address or ZERO_ADDRESS, "to": _PROBE_ADDRESS, "data": data}
        try:
            gas = self.w3.eth.estimate_gas(tx, "latest", {_PROBE_ADDRESS: {"code": art["deployedBytecode"]}})
            empty = self.w3.eth.estimate_gas(tx, "latest")
        except Exception:  # nodes without overrides answer with all kinds of errors (eth-tester: a TypeError)
            return None
        return gas if gas > empty else None

    # -- transactions ------------------------------------------------------------------------------------------
    def _need_account(self) -> LocalAccount:
        if self.account is None:
            raise UsageError("sending a transaction needs the signing key", hint="this is a bug: unlock the key first")
        return self.account

    def build(self, call, label: str) -> dict:
        """A complete, unsigned EIP-1559 transaction for a contract call, its gas estimated.

        Needs no key (a dry run estimates without one). A call the contract would refuse raises TxRevertedError
        here, before anything is signed, naming the contract's error.
        """
        sender = self.address or ZERO_ADDRESS
        try:
            return call.build_transaction({"from": sender,
                                           "nonce": self.w3.eth.get_transaction_count(sender, "pending")})
        except Web3RPCError as e:
            raise _rpc_error(e, self, label) from None
        except OSError as e:  # requests' connection errors are OSErrors
            raise _unreachable(self.url, e) from None
        except Exception as e:  # reverts, and in-process EVMs' own validation errors
            if _is_funds_error(e):
                raise _rpc_error(e, self, label) from None
            reason = revert_reason(e, getattr(call, "contract_abi", None) or getattr(call, "abi", []))
            if reason is None:
                raise
            raise TxRevertedError(f"{label} would revert: {reason[1]}", hint="nothing was sent or recorded",
                                  error=reason[0]) from None

    def cost(self, tx: dict) -> Cost:
        if "maxFeePerGas" in tx:
            base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
            return Cost(tx["gas"], tx["maxFeePerGas"], base + tx.get("maxPriorityFeePerGas", 0))
        return Cost(tx["gas"], tx["gasPrice"], tx["gasPrice"])

    def send(self, tx: dict, label: str, on_signed: Callable[[SignedTx], None] | None = None) -> dict:
        """Sign and send `tx`, wait until it is mined; returns the receipt.

        `on_signed(signed)` runs after signing and before sending, so the caller can note the transaction
        durably (`note_pending`): if the process dies or gives up while waiting, the next run settles it instead
        of paying twice.
        """
        account = self._need_account()
        cost = self.cost(tx)
        balance = self.balance()
        if balance < cost.max_wei + tx.get("value", 0):
            raise InsufficientFundsError(
                f"{account.address} has {format_eth(balance)} on {self.name}; {label} may cost up to"
                f" {format_eth(cost.max_wei)} ({cost.gas:,} gas)",
                hint="send some ether to that address (on a test network: from a faucet) and run again")
        signed = account.sign_transaction(tx)
        note = SignedTx(_hex(signed.hash), _hex(signed.raw_transaction), account.address, tx["nonce"])
        if on_signed:
            on_signed(note)
        self._broadcast(note, label)
        return self.wait(note.tx_hash, label)

    def _broadcast(self, signed: SignedTx, label: str) -> None:
        try:
            self.w3.eth.send_raw_transaction(signed.raw)
        except Web3RPCError as e:
            if "already known" in str(e).lower():  # the node has these very bytes: nothing to do
                return
            raise _rpc_error(e, self, label) from None
        except OSError as e:
            raise _unreachable(self.url, e) from None

    def wait(self, tx_hash: str, label: str, timeout: float | None = None, *, check: bool = True) -> dict:
        """The receipt of `tx_hash` once mined; raises TxTimeoutError, and TxRevertedError if `check`."""
        timeout = timeout or RECEIPT_TIMEOUT
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.1)
        except TimeExhausted:
            raise TxTimeoutError(f"{label}: transaction {tx_hash} was not mined within {timeout:g} s (the node"
                                 " is not mining, dropped it, or its fee is too low); nothing was recorded",
                                 hint="run the same command again: it looks this transaction up and, if the node"
                                      " lost it, sends the same signed transaction again, so it is never paid"
                                      " twice") from None
        if check and receipt["status"] != 1:
            raise TxRevertedError(f"{label}: transaction {tx_hash} reverted in block {receipt['blockNumber']}",
                                  hint="nothing was recorded; check the contract address with: provenance chain"
                                       " status")
        return receipt

    def transact(self, call, label: str, on_signed: Callable[[SignedTx], None] | None = None) -> dict:
        return self.send(self.build(call, label), label, on_signed)

    # -- transactions noted before sending ---------------------------------------------------------------------
    def note_pending(self, ledger: Ledger, signed: SignedTx, kind: str, contract: str, detail: dict) -> None:
        """Note `signed` in the ledger before it is sent (see the module docstring)."""
        ledger.ensure_chain_tables()
        tx = {"raw": signed.raw, "sender": signed.sender, "nonce": signed.nonce}
        with ledger.transaction() as c:
            c.execute("INSERT INTO pending_txs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tx_hash) DO UPDATE SET"
                      " kind = excluded.kind, chain_id = excluded.chain_id, instance = excluded.instance,"
                      " contract = excluded.contract, detail = excluded.detail, sent_at = excluded.sent_at",
                      (signed.tx_hash, kind, self.chain_id, self.instance, contract,
                       json.dumps({**detail, "tx": tx}), utc_now()))

    def pending(self, ledger: Ledger, kind: str | None = None) -> list[PendingTx]:
        """Transactions noted on this chain and not yet recorded as mined, oldest first."""
        ledger.ensure_chain_tables()
        rows = ledger.conn.execute("SELECT tx_hash, kind, contract, detail, sent_at FROM pending_txs WHERE"
                                   " chain_id = ? AND instance = ? AND kind = coalesce(?, kind)",
                                   (self.chain_id, self.instance, kind)).fetchall()
        out = []
        for tx_hash, kind_, contract, detail, sent_at in rows:
            d = json.loads(detail)
            t = d.pop("tx", {})
            out.append(PendingTx(kind_, contract, d, SignedTx(tx_hash, t.get("raw", ""), t.get("sender", ""),
                                                              t.get("nonce", -1)), sent_at))
        # oldest first; within one second, in nonce order (the order they were signed and must be mined in)
        return sorted(out, key=lambda p: (p.sent_at, p.tx.nonce))

    def forget_pending(self, ledger: Ledger, tx_hash: str) -> None:
        with ledger.transaction() as c:
            c.execute("DELETE FROM pending_txs WHERE tx_hash = ?", (tx_hash,))

    def settle(self, p: PendingTx, label: str) -> dict | None:
        """The receipt (reverted or not) of a noted transaction, or None when it can never be mined.

        Mined: its receipt. Still in the node's pool: waited for (TxTimeoutError keeps the note). Lost by the
        node: the same signed bytes are sent again and waited for. Its nonce used by another transaction: None.
        """
        tx = p.tx
        receipt = self.receipt(tx.tx_hash)
        if receipt is not None:
            return receipt
        if not self.known(tx.tx_hash):
            if not tx.raw or self._nonce_used(tx):
                return self.receipt(tx.tx_hash)  # mined just now, or its nonce went to another transaction
            try:
                self._broadcast(tx, label)
            except ChainError:
                if self._nonce_used(tx):  # used between our look and the send ("nonce too low")
                    return self.receipt(tx.tx_hash)
                raise
        return self.wait(tx.tx_hash, label, check=False)

    def _nonce_used(self, tx: SignedTx) -> bool:
        return self.w3.eth.get_transaction_count(tx.sender, "latest") > tx.nonce

    def receipt(self, tx_hash: str) -> dict | None:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except Exception:  # web3 raises TransactionNotFound for unknown or pending transactions
            return None

    def known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
            return True
        except Exception:
            return False

    def block_timestamp(self, number: int) -> int:
        return self.w3.eth.get_block(number)["timestamp"]


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


def _unreachable(url: str | None, e: Exception) -> ProvenanceError:
    if isinstance(e, ProvenanceError):
        return e
    return NodeUnreachableError(f"no Ethereum node answers at {url or 'the given provider'}"
                                f" ({type(e).__name__}: {str(e)[:160]})",
                                hint="check --rpc-url / PROVENANCE_RPC_URL and that the node is running, or omit"
                                     " them to use the managed local chain")


def _is_funds_error(e: Exception) -> bool:
    text = str(e).lower()
    return "insufficient funds" in text or "cannot afford" in text


def _rpc_error(e: Exception, chain: Chain, label: str | None) -> ProvenanceError:
    text = str(e)
    if _is_funds_error(e):
        return InsufficientFundsError(f"{chain.address} cannot pay for {label or 'the transaction'} on {chain.name}",
                                      hint="send some ether to that address (on a test network: from a faucet)")
    return ChainError(f"{label or 'the request'} was refused by the node: {text[:300]}")


def _http_web3(url: str) -> Web3:
    from web3 import HTTPProvider

    return Web3(HTTPProvider(url, request_kwargs={"timeout": 15}, exception_retry_configuration=None))


@contextmanager
def open_chain(ledger: Ledger, *, rpc_url: str | None = None, account: LocalAccount | None = None,
               address: str | None = None, mainnet: bool = False, data_dir: Path | None = None,
               fund: bool = True, w3: Web3 | None = None) -> Iterator[Chain]:
    """Connect for the length of a `with` block: `w3` if given, else `rpc_url`, else the managed local node.

    The managed node (an Anvil process over DATA_DIR/chain/anvil-state.json) runs only inside the block and saves
    its state when the block ends. On it, and only on it, the account is funded with local test ether.
    """
    node = None
    try:
        if w3 is None and rpc_url:
            w3 = _http_web3(rpc_url)
        elif w3 is None:
            from .config import data_dir as default_data_dir

            node = _anvil.ManagedNode(Path(data_dir or default_data_dir()) / "chain")
            w3 = _http_web3(node.start())
        chain = Chain(w3, account=account, address=address, managed=node is not None,
                      url=node.url if node else rpc_url, instance=node.instance if node else None)
        chain.check(ledger, mainnet=mainnet)
        if fund:
            chain.fund_locally()
        yield chain
    finally:
        if node is not None:
            node.stop()
