"""Anchor the ledger on a chain: one transaction publishes the Merkle root over every entry, however many.

Flow: checkpoint the ledger -> settle transactions noted by earlier runs -> is the latest root already anchored
here? -> estimate -> sign, note the signed tx as pending -> send -> mined -> record the receipt. Only a mined
transaction becomes an `anchors` row, so an interrupted or timed-out run never leaves the ledger claiming an
anchor the chain does not have; the pending note lets the next run record a transaction that did get mined, or
send the same signed bytes again, instead of paying for a second one (see `chain`).

The anchoring key also signs the anchored Checkpoint {ledgerId, size, root} with the registry contract as the
EIP-712 domain's `verifyingContract` (stored with the receipt): a certificate proving an entry to that root then
carries a signature that names the contract, so it cannot be passed off as an anchor in another registry. It is
signed only when that key sent the anchor transaction (the chain shows who anchored; the signature must agree).

A chain is its id and instance (see `chain`): a chain restarted from scratch is a new instance, so its anchors are
reported missing (`chain_status`) and the next `anchor` publishes the root again.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from . import merkle, signing
from .chain import REGISTRY, Chain, ChainError, Cost, Deployment, PendingTx, TxRevertedError
from .errors import UsageError
from .ledger import Ledger, utc_now

#: Gas of one anchor as measured on anvil 1.7.1 by benchmarks/chain.py: 47,014 to 47,038 for 1 to 10,000 entries
#: (only the calldata's zero bytes differ), rounded up. Shown, labelled as such, by a dry run on a fresh chain whose
#: node cannot estimate a call to a registry that is not deployed yet.
MEASURED_ANCHOR_GAS = 47_040


@dataclass(frozen=True)
class Anchor:
    """The receipt of a mined anchor: the root of the ledger's first `size` entries, where and when."""

    chain_id: int
    instance: str
    contract: str
    root: str
    size: int
    first_entry: int  # the first entry this anchor newly covered on its chain
    tx_hash: str
    block_number: int
    block_timestamp: int
    sender: str
    recorded_at: str
    checkpoint_signer: str | None = None  # None: recorded before anchors were signed, or sent by another key
    checkpoint_signature: str | None = None  # EIP-712 Checkpoint, domain with verifyingContract = contract

    def checkpoint_record(self, ledger_id: str) -> dict:
        return {"ledgerId": ledger_id, "size": self.size, "root": self.root.removeprefix("0x")}


@dataclass(frozen=True)
class AnchorResult:
    root: str
    size: int
    new_entries: int  # entries not covered by an earlier anchor on this chain
    cost: Cost | None = None  # of the anchor tx
    anchor: Anchor | None = None  # None: dry run, or nothing new
    sent: bool = False  # False: nothing sent (dry run, nothing new, or a previous run's tx recorded)
    recovered: bool = False  # a tx sent by an interrupted run (or by anyone) was found mined and recorded
    deploy_cost: Cost | None = None  # dry run on a chain without the registry: its deployment comes first
    cost_note: str | None = None  # how `cost` was obtained, when not by estimating the transaction itself
    pending: tuple[str, ...] = ()  # dry run: txs sent by earlier runs, settled by the next real run

    @property
    def total_cost(self) -> Cost | None:
        """The anchor plus the deployment it needs first (a dry run on a fresh chain), priced alike."""
        if self.cost is None or self.deploy_cost is None:
            return self.cost
        return Cost(self.cost.gas + self.deploy_cost.gas, self.cost.max_fee_per_gas, self.cost.expected_fee_per_gas)

    @property
    def nothing_new(self) -> bool:
        return self.new_entries == 0


@dataclass(frozen=True)
class InclusionProof:
    """Proof that a work's ledger entry is leaf `index` of the anchored tree of `size` leaves with `root`.

    Check with `merkle.verify_inclusion(bytes.fromhex(entry_hash), index, size, proof_bytes, bytes.fromhex(root))`.
    """

    work_id: int
    entry_seq: int
    entry_hash: str
    index: int
    size: int
    root: str
    proof: list[str]
    anchor: Anchor

    def proof_bytes(self) -> list[bytes]:
        return [bytes.fromhex(p) for p in self.proof]

    def verify(self) -> bool:
        return merkle.verify_inclusion(bytes.fromhex(self.entry_hash), self.index, self.size, self.proof_bytes(),
                                       bytes.fromhex(self.root))


@dataclass(frozen=True)
class AnchorStatus:
    anchor: Anchor
    found: bool | None  # None: recorded on another chain, not checked
    reason: str


@dataclass(frozen=True)
class ChainStatus:
    name: str
    chain_id: int
    instance: str
    block_number: int
    address: str | None
    balance: int | None
    contracts: list[tuple[Deployment, bool]] = field(default_factory=list)  # (deployment, code present)
    anchors: list[AnchorStatus] = field(default_factory=list)
    pending: list[PendingTx] = field(default_factory=list)  # sent, not yet seen mined: settled by the next run


_COLUMNS = "chain_id, instance, contract, root, size, first_entry, tx_hash, block_number, block_timestamp," \
           " sender, recorded_at, checkpoint_signer, checkpoint_signature"


def anchors(ledger: Ledger) -> list[Anchor]:
    """Every recorded (mined) anchor, oldest first."""
    ledger.ensure_chain_tables()
    return [Anchor(*row) for row in ledger.conn.execute(f"SELECT {_COLUMNS} FROM anchors ORDER BY id")]


def _on_chain(ledger: Ledger, chain: Chain, contract: str) -> list[Anchor]:
    return [a for a in anchors(ledger) if (a.chain_id, a.instance, a.contract.lower()) ==
            (chain.chain_id, chain.instance, contract.lower())]


def _ledger_id_bytes(ledger: Ledger) -> bytes:
    return uuid.UUID(ledger.ledger_id).bytes


def _record(ledger: Ledger, chain: Chain, contract: str, root: str, size: int, receipt: dict) -> Anchor:
    covered = max((a.size for a in _on_chain(ledger, chain, contract) if a.size < size), default=0)
    number = receipt["blockNumber"]
    anchor = Anchor(chain.chain_id, chain.instance, contract, root, size, covered + 1,
                    "0x" + bytes(receipt["transactionHash"]).hex(), number, chain.block_timestamp(number),
                    receipt["from"], utc_now())
    anchor = _signed(ledger, chain, anchor)
    with ledger.transaction() as c:
        c.execute(f"INSERT INTO anchors ({_COLUMNS}) VALUES ({', '.join('?' * 13)}) ON CONFLICT DO NOTHING",
                  tuple(anchor.__dict__.values()))
        c.execute("DELETE FROM pending_txs WHERE kind = 'anchor' AND chain_id = ? AND instance = ? AND"
                  f" {c.json_text('detail', 'root')} = ?", (chain.chain_id, chain.instance, root))
    return anchor


def _signed(ledger: Ledger, chain: Chain, a: Anchor) -> Anchor:
    """`a` with the anchored Checkpoint signed by the chain's key, if that key sent the anchor transaction."""
    if chain.account is None or chain.account.address.lower() != str(a.sender).lower():
        return a
    signature = signing.sign_checkpoint(chain.account, a.checkpoint_record(ledger.ledger_id), a.chain_id, a.contract)
    return Anchor(**{**a.__dict__, "checkpoint_signer": chain.account.address, "checkpoint_signature": signature})


def _sign_recorded(ledger: Ledger, chain: Chain, contract: str) -> None:
    """Sign the anchors on this registry recorded unsigned (before anchors were signed) that this key sent,
    once their root is checked against the ledger's entries again."""
    leaves = None
    for a in _on_chain(ledger, chain, contract):
        if a.checkpoint_signature is not None:
            continue
        signed = _signed(ledger, chain, a)
        if signed.checkpoint_signature is None:
            continue
        leaves = ledger.entry_hashes() if leaves is None else leaves
        if a.size > len(leaves) or merkle.root(leaves[:a.size]).hex() != a.root.removeprefix("0x"):
            continue  # a tampered ledger: `ledger verify` names it; never sign it
        with ledger.transaction() as c:
            c.execute("UPDATE anchors SET checkpoint_signer = ?, checkpoint_signature = ? WHERE chain_id = ? AND"
                      " instance = ? AND contract = ? AND root = ?", (signed.checkpoint_signer,
                                                                     signed.checkpoint_signature, a.chain_id,
                                                                     a.instance, a.contract, a.root))


def _settle_pending(ledger: Ledger, chain: Chain, registry) -> list[Anchor]:
    """Record anchors that earlier runs sent and that got mined (sending the same signed tx again where the node
    lost it); forget those that can never be mined. Returns the anchors recorded."""
    recorded = []
    for p in chain.pending(ledger, "anchor"):
        if p.contract.lower() != registry.address.lower():
            # For a registry that is gone: sent again, it would "succeed" as a call to an empty account.
            chain.forget_pending(ledger, p.tx.tx_hash)
            continue
        receipt = chain.settle(p, f"the anchor of {p.detail['size']} entries sent by an earlier run")
        if receipt is not None and receipt["status"] == 1:
            recorded.append(_record(ledger, chain, registry.address, p.detail["root"], p.detail["size"], receipt))
        else:  # can never be mined, or reverted (anchored by someone else first: found through anchoredAt)
            chain.forget_pending(ledger, p.tx.tx_hash)
    return recorded


def _find_anchor_tx(chain: Chain, registry, root: bytes) -> dict | None:
    """The receipt of the transaction that anchored `root` (for roots anchored by a run that did not record it)."""
    logs = registry.events.Anchored().get_logs(from_block=0, argument_filters={"root": root})
    return chain.w3.eth.get_transaction_receipt(logs[0]["transactionHash"]) if logs else None


def anchor(ledger: Ledger, chain: Chain, *, dry_run: bool = False,
           before_send: Callable[[AnchorResult], None] | None = None) -> AnchorResult:
    """Anchor every entry not yet anchored on `chain` in one transaction (deploying the registry on first use).

    `before_send` sees the root, entry count and cost estimate before anything is sent (the CLI prints it).
    Anchoring when nothing is new sends nothing. A dry run sends nothing at all: it neither deploys nor settles
    transactions noted by earlier runs (it lists them); on a chain without the registry it estimates the
    deployment and the anchor after it (`_first_anchor_plan`).
    """
    ledger.checkpoint(signer=None if dry_run else chain.account)
    cps = ledger.checkpoints()
    if not cps:
        raise UsageError("the ledger is empty: there is nothing to anchor", hint="register works first")
    cp = cps[-1]
    root_hex = "0x" + cp.root
    registry = chain.contract(ledger, REGISTRY, deploy=not dry_run)
    if registry is None:
        return _first_anchor_plan(ledger, chain, root_hex, cp.size)
    if dry_run:
        pending, settled = tuple(p.tx.tx_hash for p in chain.pending(ledger, "anchor")), []
    else:
        pending, settled = (), _settle_pending(ledger, chain, registry)
        _sign_recorded(ledger, chain, registry.address)
    done = [a for a in _on_chain(ledger, chain, registry.address) if a.size == cp.size and a.root == root_hex]
    if done and registry.functions.anchoredAt(bytes.fromhex(cp.root)).call() != 0:
        if done[0] in settled:  # this run recorded the anchor an earlier run sent
            return AnchorResult(root_hex, cp.size, cp.size - done[0].first_entry + 1, anchor=done[0], recovered=True)
        return AnchorResult(root_hex, cp.size, 0, anchor=done[0])
    covered = max((a.size for a in _on_chain(ledger, chain, registry.address)
                   if registry.functions.anchoredAt(bytes.fromhex(a.root[2:])).call() != 0), default=0)
    if registry.functions.anchoredAt(bytes.fromhex(cp.root)).call() != 0:
        receipt = _find_anchor_tx(chain, registry, bytes.fromhex(cp.root))
        if receipt is not None:
            a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt)
            return AnchorResult(root_hex, cp.size, cp.size - covered, anchor=a, recovered=True)
    call = registry.functions.anchor(bytes.fromhex(cp.root), cp.size, _ledger_id_bytes(ledger))
    new = cp.size - covered
    label = f"anchor of {cp.size} entries"
    try:
        tx = chain.build(call, label)
    except TxRevertedError as e:
        if e.error != "AlreadyAnchored":
            raise
        receipt = _find_anchor_tx(chain, registry, bytes.fromhex(cp.root))  # anchored between our check and now
        a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt) if receipt else None
        return AnchorResult(root_hex, cp.size, new, anchor=a, recovered=a is not None)
    plan = AnchorResult(root_hex, cp.size, new, chain.cost(tx), pending=pending)
    if dry_run:
        return plan
    if before_send:
        before_send(plan)
    try:
        receipt = chain.send(tx, label, on_signed=lambda signed: chain.note_pending(
            ledger, signed, "anchor", registry.address, {"root": root_hex, "size": cp.size}))
    except TxRevertedError:
        _forget_root(ledger, chain, root_hex)  # mined and reverted: nothing left to settle
        raise
    a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt)
    return AnchorResult(root_hex, cp.size, new, plan.cost, anchor=a, sent=True)


def _forget_root(ledger: Ledger, chain: Chain, root_hex: str) -> None:
    with ledger.transaction() as c:
        c.execute("DELETE FROM pending_txs WHERE kind = 'anchor' AND chain_id = ? AND instance = ? AND"
                  f" {c.json_text('detail', 'root')} = ?", (chain.chain_id, chain.instance, root_hex))


def _first_anchor_plan(ledger: Ledger, chain: Chain, root_hex: str, size: int) -> AnchorResult:
    """A dry run on a chain without the registry: the deployment's gas and the anchor's after it, sending nothing.

    The deployment is estimated like any transaction (eth_estimateGas of the creation tx). The anchor cannot be:
    its contract does not exist yet. It is estimated against the registry's code put in place by a state
    override where the node supports that (anvil and geth do), else MEASURED_ANCHOR_GAS is shown, labelled.
    Deploying a throwaway registry to measure would cost real gas on a real chain, so it is not done.
    """
    deploy = chain.cost(chain.build(chain.factory(REGISTRY).constructor(), f"deploy {REGISTRY}"))
    gas = chain.estimate_as_deployed(REGISTRY, "anchor", [bytes.fromhex(root_hex[2:]), size,
                                                          _ledger_id_bytes(ledger)])
    note = ("estimated against the registry's code without deploying it, through a state override" if gas else
            f"not estimated: this node cannot estimate a call to a contract that is not deployed yet;"
            f" {MEASURED_ANCHOR_GAS:,} gas is the figure measured on anvil 1.7.1")
    cost = Cost(gas or MEASURED_ANCHOR_GAS, deploy.max_fee_per_gas, deploy.expected_fee_per_gas)
    return AnchorResult(root_hex, size, size, cost, deploy_cost=deploy, cost_note=note)


def chain_status(ledger: Ledger, chain: Chain) -> ChainStatus:
    """The chain, its block height, the recorded contracts, the account balance, and every anchor's presence."""
    contracts = []
    for name in (REGISTRY, "ProvenanceNFT"):
        d = chain.recorded_deployment(ledger, name)
        if d:
            contracts.append((d, chain.has_code(d.address)))
    statuses = []
    for a in anchors(ledger):
        if a.chain_id != chain.chain_id:
            statuses.append(AnchorStatus(a, None, f"on chain {a.chain_id}, not checked"))
        elif a.instance != chain.instance:
            statuses.append(AnchorStatus(a, False, "missing: the chain was restarted from scratch"))
        elif not chain.has_code(a.contract):
            statuses.append(AnchorStatus(a, False, "missing: the registry contract is gone"))
        else:
            registry = chain.w3.eth.contract(address=a.contract, abi=_registry_abi())
            ts = registry.functions.anchoredAt(bytes.fromhex(a.root[2:])).call()
            statuses.append(AnchorStatus(a, ts != 0, "found" if ts else "missing: the root is not anchored"
                                                                         " (chain reorganised or reset)"))
    balance = chain.balance() if chain.address else None
    return ChainStatus(chain.name, chain.chain_id, chain.instance, chain.block_number(), chain.address, balance,
                       contracts, statuses, chain.pending(ledger))


def _registry_abi() -> list:
    from .chain import artifact

    return artifact(REGISTRY)["abi"]


def inclusion_proof(ledger: Ledger, work_id: int, *, chain_id: int | None = None,
                    covering_seq: int | None = None) -> InclusionProof:
    """The Merkle inclusion proof of a work's entry against the earliest recorded anchor that covers it (and
    entry `covering_seq` too, when given: a certificate proves a work's transfers to the same root)."""
    work = ledger.work(work_id)
    need = max(work.entry_seq, covering_seq or 0)
    covering = [a for a in anchors(ledger) if a.size >= need and chain_id in (None, a.chain_id)]
    if not covering:
        raise UsageError(f"work #{work_id} (ledger entry {work.entry_seq}) is not anchored yet",
                         hint="anchor the ledger with: provenance anchor")
    a = min(covering, key=lambda x: (x.block_timestamp, x.size))
    leaves = ledger.entry_hashes()[: a.size]
    if merkle.root(leaves).hex() != a.root.removeprefix("0x"):
        raise ChainError(f"the ledger's first {a.size} entries no longer have the anchored root {a.root}",
                         hint="run: provenance ledger verify")
    index = work.entry_seq - 1
    return InclusionProof(work_id, work.entry_seq, leaves[index].hex(), index, a.size, a.root.removeprefix("0x"),
                          [p.hex() for p in merkle.inclusion_proof(leaves, index)], a)
