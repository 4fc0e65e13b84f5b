"""Anchor the ledger on a chain: one transaction publishes the Merkle root over every entry, however many.

Flow: checkpoint the ledger -> is the latest root already anchored here? -> estimate -> sign, note the tx hash as
pending -> send -> mined -> record the receipt. Only a mined transaction becomes an `anchors` row, so an
interrupted run never leaves the ledger claiming an anchor the chain does not have; the pending note lets the
next run record a transaction that did get mined instead of paying for a second one.

A chain is its id and instance (see `chain`): a chain restarted from scratch is a new instance, so its anchors are
reported missing (`chain_status`) and the next `anchor` publishes the root again.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

from web3.exceptions import ContractCustomError, ContractLogicError

from . import merkle
from .chain import REGISTRY, Chain, ChainError, Cost, Deployment, TxRevertedError
from .errors import UsageError
from .ledger import Ledger, utc_now

#: bytes4(keccak256("AlreadyAnchored(bytes32)"))
ALREADY_ANCHORED = "0x30d23813"


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


@dataclass(frozen=True)
class AnchorResult:
    root: str
    size: int
    new_entries: int  # entries not covered by an earlier anchor on this chain
    cost: Cost | None = None
    anchor: Anchor | None = None  # None: dry run, or nothing new
    sent: bool = False  # False: nothing sent (dry run, nothing new, or a previous run's tx recorded)
    recovered: bool = False  # a tx sent by an interrupted run (or by anyone) was found mined and recorded

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


_COLUMNS = "chain_id, instance, contract, root, size, first_entry, tx_hash, block_number, block_timestamp," \
           " sender, recorded_at"


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
    with ledger.transaction() as c:
        c.execute(f"INSERT OR IGNORE INTO anchors ({_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                  tuple(anchor.__dict__.values()))
        c.execute("DELETE FROM pending_txs WHERE kind = 'anchor' AND chain_id = ? AND instance = ? AND"
                  " json_extract(detail, '$.root') = ?", (chain.chain_id, chain.instance, root))
    return anchor


def _settle_pending(ledger: Ledger, chain: Chain, registry) -> None:
    """Record anchors that an earlier, interrupted run sent and that got mined; forget those that never were."""
    rows = ledger.conn.execute("SELECT tx_hash, detail FROM pending_txs WHERE kind = 'anchor' AND chain_id = ? AND"
                               " instance = ?", (chain.chain_id, chain.instance)).fetchall()
    for tx_hash, detail in rows:
        d = json.loads(detail)
        receipt = chain.receipt(tx_hash)
        if receipt is None and chain.known(tx_hash):  # still waiting in the node's pool: give it its time
            receipt = chain.wait(tx_hash, "the anchor sent by an earlier run")
        if receipt is not None and receipt["status"] == 1:
            _record(ledger, chain, registry.address, d["root"], d["size"], receipt)
        else:  # never sent, dropped, or reverted (anchored by someone else first: found through anchoredAt)
            with ledger.transaction() as c:
                c.execute("DELETE FROM pending_txs WHERE tx_hash = ?", (tx_hash,))


def _find_anchor_tx(chain: Chain, registry, root: bytes) -> dict | None:
    """The receipt of the transaction that anchored `root` (for roots anchored by a run that did not record it)."""
    logs = registry.events.Anchored().get_logs(from_block=0, argument_filters={"root": root})
    return chain.w3.eth.get_transaction_receipt(logs[0]["transactionHash"]) if logs else None


def anchor(ledger: Ledger, chain: Chain, *, dry_run: bool = False,
           before_send: Callable[[AnchorResult], None] | None = None) -> AnchorResult:
    """Anchor every entry not yet anchored on `chain` in one transaction (deploying the registry on first use).

    `before_send` sees the root, entry count and cost estimate before anything is sent (the CLI prints it).
    Anchoring when nothing is new sends nothing.
    """
    ledger.checkpoint()
    cps = ledger.checkpoints()
    if not cps:
        raise UsageError("the ledger is empty: there is nothing to anchor", hint="register works first")
    cp = cps[-1]
    root_hex = "0x" + cp.root
    registry = chain.contract(ledger, REGISTRY, deploy=not dry_run)
    if registry is not None:
        _settle_pending(ledger, chain, registry)
        done = [a for a in _on_chain(ledger, chain, registry.address) if a.size == cp.size and a.root == root_hex]
        if done and registry.functions.anchoredAt(bytes.fromhex(cp.root)).call() != 0:
            return AnchorResult(root_hex, cp.size, 0, anchor=done[0])
        covered = max((a.size for a in _on_chain(ledger, chain, registry.address)
                       if registry.functions.anchoredAt(bytes.fromhex(a.root[2:])).call() != 0), default=0)
        if registry.functions.anchoredAt(bytes.fromhex(cp.root)).call() != 0:
            receipt = _find_anchor_tx(chain, registry, bytes.fromhex(cp.root))
            if receipt is not None:
                a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt)
                return AnchorResult(root_hex, cp.size, cp.size - covered, anchor=a, recovered=True)
        call = registry.functions.anchor(bytes.fromhex(cp.root), cp.size, _ledger_id_bytes(ledger))
    else:  # dry run on a chain without the registry yet: estimate the deployment's anchor from the artifact
        covered, call = 0, None
    new = cp.size - covered
    if call is None:
        result = AnchorResult(root_hex, cp.size, new)
        return result
    try:
        tx = chain.build(call)
    except ContractCustomError as e:
        if str(getattr(e, "data", "")).startswith(ALREADY_ANCHORED):  # anchored between our check and now
            receipt = _find_anchor_tx(chain, registry, bytes.fromhex(cp.root))
            a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt) if receipt else None
            return AnchorResult(root_hex, cp.size, new, anchor=a, recovered=a is not None)
        raise TxRevertedError(f"anchoring root {root_hex} would revert: {e}") from None
    except ContractLogicError as e:
        raise TxRevertedError(f"anchoring root {root_hex} would revert: {e}") from None
    plan = AnchorResult(root_hex, cp.size, new, chain.cost(tx))
    if dry_run:
        return plan
    if before_send:
        before_send(plan)

    def note_pending(tx_hash: str) -> None:
        with ledger.transaction() as c:
            c.execute("INSERT OR REPLACE INTO pending_txs VALUES (?, 'anchor', ?, ?, ?, ?, ?)",
                      (tx_hash, chain.chain_id, chain.instance, registry.address,
                       json.dumps({"root": root_hex, "size": cp.size}), utc_now()))

    receipt = chain.send(tx, f"anchor of {cp.size} entries", on_signed=note_pending)
    a = _record(ledger, chain, registry.address, root_hex, cp.size, receipt)
    return AnchorResult(root_hex, cp.size, new, plan.cost, anchor=a, sent=True)


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
                       contracts, statuses)


def _registry_abi() -> list:
    from .chain import artifact

    return artifact(REGISTRY)["abi"]


def inclusion_proof(ledger: Ledger, work_id: int, *, chain_id: int | None = None) -> InclusionProof:
    """The Merkle inclusion proof of a work's entry against the earliest recorded anchor that covers it."""
    work = ledger.work(work_id)
    covering = [a for a in anchors(ledger) if a.size >= work.entry_seq and chain_id in (None, a.chain_id)]
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
