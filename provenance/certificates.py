"""Ownership certificates: one JSON file that proves who registered a work, when, and that the record is anchored.

`issue_certificate(ledger, work_id)` packs everything a verifier needs (format `provenance-certificate/2`, see
docs/certificate.md): the EIP-712 domain and types of the registration signature, the ledger entry (whose payload
holds the signed record, the signature and the fingerprints), its RFC 6962 inclusion proof to a checkpoint root,
that checkpoint signed as EIP-712 typed data (once anchored, by the anchoring key in a domain naming the registry
contract), and the receipt of the anchor transaction that published that root, when there is one.

`verify_certificate(cert, ...)` needs neither the ledger nor us. It checks graded levels, each made of small
policies that return nothing or raise `VerificationError` with a message naming what is wrong:

  format    the version, the fields, the certificate hash
  signed    the signature recovers the record's registrant; the shown fingerprints are the signed ones; each
            transfer is signed by the owner at that point (registrant, then each transfer's `to`)
  included  the entry hash recomputed from its fields; the inclusion proof leads from it to the checkpoint root;
            so do each transfer entry's hash and proof, to the same root; the checkpoint signature over (ledger id,
            size, root) recovers its stated signer
  anchored  offline: the receipt is for that root and size, on the signature's chain, and the checkpoint
            signature's domain names the receipt's registry; online (rpc_url / w3): the transaction is on chain in
            that block, sent by the checkpoint signer, and ProvenanceRegistry.anchoredAt(root) is its block's time
  image     the given bytes are the work: identical SHA-256, or a perceptual match (distance and transform)
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import anchoring, merkle, signing
from .errors import ProvenanceError, UsageError
from .fingerprints import BITS, PDQ, PHASH, SHA256, Fingerprint, fingerprint, hamming
from .ledger import Ledger, Work, canonical_json, commitment_of, entry_hash, utc_now

FORMAT = "provenance-certificate/2"
LEVELS = ("signed", "included", "anchored", "image")
#: Fingerprints that the signed record itself holds (record field -> algorithm id).
SIGNED_FINGERPRINTS = {"sha256": SHA256, "pdq": PDQ, "phash": PHASH}


class VerificationError(ProvenanceError):
    """One check of a certificate failed. The message names the field that is wrong."""


# -- issuing ---------------------------------------------------------------------------------------------------
def certificate_hash(cert: dict) -> str:
    """SHA-256 of the canonical JSON of the certificate without its `certificate_hash` field."""
    body = {k: v for k, v in cert.items() if k != "certificate_hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def issue_certificate(ledger: Ledger, work_id: int) -> dict:
    """The certificate of `work_id`: its entry and transfers, proven to the earliest signed anchor covering them
    (else to the earliest signed checkpoint covering them), with that checkpoint's signature and the anchor's
    receipt. The ledger is verified first: a tampered ledger issues nothing. Every read sees the state that was
    verified (one snapshot): entries other processes append meanwhile are left for the next certificate."""
    ledger.ensure_chain_tables()  # may create tables: not inside a read-only snapshot
    with ledger.conn.snapshot():
        return _issue(ledger, work_id)


def _issue(ledger: Ledger, work_id: int) -> dict:
    ledger.verify()
    work = ledger.work(work_id)
    entry = _entry_at(ledger, work.entry_seq)
    transfer_seqs = [t.entry_seq for t in ledger.history(work_id)]
    size, root, receipt, checkpoint, _ = _proof_target(ledger, max([work.entry_seq, *transfer_seqs]))
    leaves = ledger.entry_hashes()[:size]
    transfers = [{"entry": _entry_at(ledger, t_seq), "leaf_index": t_seq - 1,
                  "proof": [p.hex() for p in merkle.inclusion_proof(leaves, t_seq - 1)]} for t_seq in transfer_seqs]
    payload = entry["payload"]
    typed = signing.typed_registration(payload["record"], payload.get("chain_id", ledger.chain_id))
    cert = {
        "format": FORMAT,
        "issued_at": utc_now(),
        "ledger_id": ledger.ledger_id,
        "work_id": work_id,
        "registration": {"domain": typed["domain"], "primaryType": typed["primaryType"], "types": typed["types"]},
        "entry": entry,
        "inclusion": {"leaf_index": entry["seq"] - 1, "tree_size": size, "root": root,
                      "proof": [p.hex() for p in merkle.inclusion_proof(leaves, entry["seq"] - 1)]},
        "checkpoint": checkpoint,
        "anchor": receipt,
        "transfers": transfers,
    }
    if "reveals" in payload:
        cert["commit"] = _commit_section(ledger, payload["reveals"]["commit_seq"])
    cert["certificate_hash"] = certificate_hash(cert)
    return cert


def _entry_at(ledger: Ledger, seq: int) -> dict:
    """Ledger entry `seq` with every field its hash covers."""
    row = ledger.conn.execute("SELECT seq, kind, work_id, recorded_at, payload, prev_hash, entry_hash FROM entries"
                              " WHERE seq = ?", (seq,)).fetchone()
    return {"seq": row[0], "kind": row[1], "work_id": row[2], "recorded_at": row[3], "payload": json.loads(row[4]),
            "prev_hash": row[5], "entry_hash": row[6]}


def checkpoint_section(ledger_id: str, size: int, root: str, chain_id: int, signer: str, signature: str,
                       contract: str | None = None) -> dict:
    """The signed checkpoint as a certificate carries it: the full EIP-712 typed data (what the signer signed,
    ready for any EIP-712 library), the signature and the signer's address."""
    typed = signing.typed_checkpoint({"ledgerId": ledger_id, "size": size, "root": root}, chain_id, contract)
    return {**typed, "signature": signature, "signer": signer}


def _proof_target(ledger: Ledger, need_seq: int) -> tuple[int, str, dict | None, dict, str | None]:
    """(size, root, receipt, signed checkpoint, checkpoint time) of the earliest signed anchor covering entries
    1..need_seq, else of the earliest signed checkpoint covering them: the earliest proves the earliest date."""
    covering = [a for a in anchoring.anchors(ledger) if a.size >= need_seq]
    signed = [a for a in covering if a.checkpoint_signature]
    if signed:
        a = min(signed, key=lambda x: (x.block_timestamp, x.size))
        size, root, recorded_at = a.size, a.root.removeprefix("0x"), None
        receipt = {"chain_id": a.chain_id, "contract": a.contract, "tx_hash": a.tx_hash,
                   "block_number": a.block_number, "block_timestamp": a.block_timestamp, "root": root, "size": a.size}
        checkpoint = checkpoint_section(ledger.ledger_id, size, root, a.chain_id, a.checkpoint_signer,
                                        a.checkpoint_signature, a.contract)
    elif covering:
        raise UsageError(f"the anchors covering ledger entry {need_seq} carry no checkpoint signature (recorded"
                         " before anchors were signed, or sent by another key)",
                         hint="run: provenance anchor (with the key that anchored them; it signs them and sends"
                              " nothing new), then issue the certificate again")
    else:
        cps = [cp for cp in ledger.checkpoints() if cp.size >= need_seq and cp.signature]
        if not cps:
            raise UsageError(f"no signed checkpoint covers ledger entry {need_seq} yet",
                             hint="sign one with: provenance ledger checkpoint")
        cp = min(cps, key=lambda c: c.size)
        size, root, receipt, recorded_at = cp.size, cp.root, None, cp.recorded_at
        checkpoint = checkpoint_section(ledger.ledger_id, size, root, ledger.chain_id, cp.signer, cp.signature)
    if merkle.root(ledger.entry_hashes()[:size]).hex() != root:
        raise UsageError(f"the first {size} ledger entries no longer have the root {root[:16]}…",
                         hint="run: provenance ledger verify")
    return size, root, receipt, checkpoint, recorded_at


def _commit_section(ledger: Ledger, commit_seq: int) -> dict:
    """The commit entry a revealed work opens, proven to the earliest signed anchor (else signed checkpoint)
    covering it: that anchor or checkpoint is the date the certificate proves for the work."""
    size, root, receipt, checkpoint, recorded_at = _proof_target(ledger, commit_seq)
    leaves = ledger.entry_hashes()[:size]
    return {
        "entry": _entry_at(ledger, commit_seq),
        "inclusion": {"leaf_index": commit_seq - 1, "tree_size": size, "root": root,
                      "proof": [p.hex() for p in merkle.inclusion_proof(leaves, commit_seq - 1)],
                      "checkpoint_recorded_at": recorded_at},
        "checkpoint": checkpoint,
        "anchor": receipt,
    }


# -- results ---------------------------------------------------------------------------------------------------
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Check:
    """The outcome of one level: passed, failed (the first policy that raised says why) or skipped (not asked)."""

    level: str
    status: str
    reason: str

    @property
    def requested(self) -> bool:
        return self.status != SKIPPED


@dataclass(frozen=True)
class VerificationResult:
    certificate_hash: str | None
    work_id: int | None
    title: str | None
    registrant: str | None
    checks: tuple[Check, ...]
    #: The owner after the certificate's transfers (the registrant when it has none); None when malformed.
    owner: str | None = None

    @property
    def ok(self) -> bool:
        """Every requested check passed (the CLI's exit code 0)."""
        return all(c.status == PASSED for c in self.checks if c.requested)

    @property
    def level(self) -> str | None:
        """The highest level reached with every level below it passed (skipped levels end the climb)."""
        reached = None
        for c in self.checks:
            if c.level == "format":
                if c.status != PASSED:
                    return None
                continue
            if c.status != PASSED:
                break
            reached = c.level
        return reached

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAILED]


# -- policies --------------------------------------------------------------------------------------------------
@dataclass
class _Context:
    image_bytes: bytes | None = None
    w3: Any = None
    rpc_url: str | None = None
    notes: dict = field(default_factory=dict)  # what passing policies found, for the success reasons


Policy = Callable[[dict, _Context], None]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX0X = re.compile(r"^0x[0-9a-fA-F]+$")


def _require(cert: dict, path: str, kind: type | tuple, pattern: re.Pattern | None = None) -> None:
    value: Any = cert
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise VerificationError(f"the certificate has no {path}")
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VerificationError(f"{path} has the wrong type ({type(value).__name__})")
    if pattern is not None and not pattern.match(value):
        raise VerificationError(f"{path} is not in the expected form ({pattern.pattern})")


def _format_version(cert: dict, ctx: _Context) -> None:
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        found = cert.get("format") if isinstance(cert, dict) else type(cert).__name__
        # /1 proved inclusion to an unsigned checkpoint root; verifying it by the old rules would let a /2
        # certificate be stripped of its checkpoint signature and still pass, so it is refused.
        hint = ("it was issued before checkpoints were signed: ask for a new certificate (provenance certificate"
                " WORK_ID)" if found == "provenance-certificate/1" else None)
        raise VerificationError(f"not a {FORMAT} certificate (format: {found!r})", hint=hint)


def _fields(cert: dict, ctx: _Context) -> None:
    for path, kind, pattern in [
        ("work_id", int, None), ("issued_at", str, None), ("ledger_id", str, None),
        ("registration.domain", dict, None), ("registration.types", dict, None),
        ("registration.primaryType", str, None),
        ("entry.seq", int, None), ("entry.kind", str, None), ("entry.recorded_at", str, None),
        ("entry.payload.record", dict, None), ("entry.payload.signature", str, _HEX0X),
        ("entry.payload.chain_id", int, None), ("entry.payload.fingerprints", list, None),
        ("entry.prev_hash", str, _HEX64), ("entry.entry_hash", str, _HEX64),
        ("inclusion.leaf_index", int, None), ("inclusion.tree_size", int, None),
        ("inclusion.root", str, _HEX64), ("inclusion.proof", list, None), ("certificate_hash", str, _HEX64),
        ("checkpoint.domain", dict, None), ("checkpoint.types", dict, None), ("checkpoint.primaryType", str, None),
        ("checkpoint.message", dict, None), ("checkpoint.signature", str, _HEX0X),
        ("checkpoint.signer", str, _HEX0X),
    ]:
        _require(cert, path, kind, pattern)
    for i, step in enumerate(cert["inclusion"]["proof"]):
        if not isinstance(step, str) or not _HEX64.match(step):
            raise VerificationError(f"inclusion.proof[{i}] is not a 64-digit lowercase hex hash")
    if cert.get("anchor") is not None:
        for path, kind, pattern in [("anchor.chain_id", int, None), ("anchor.contract", str, _HEX0X),
                                    ("anchor.tx_hash", str, _HEX0X), ("anchor.block_number", int, None),
                                    ("anchor.block_timestamp", int, None), ("anchor.root", str, _HEX64),
                                    ("anchor.size", int, None)]:
            _require(cert, path, kind, pattern)
    transfers = cert.get("transfers", [])
    if not isinstance(transfers, list):
        raise VerificationError(f"transfers has the wrong type ({type(transfers).__name__})")
    for i, t in enumerate(transfers):
        for path, kind, pattern in [
            ("entry.seq", int, None), ("entry.kind", str, None), ("entry.recorded_at", str, None),
            ("entry.payload.transfer", dict, None), ("entry.payload.signature", str, _HEX0X),
            ("entry.payload.chain_id", int, None), ("entry.prev_hash", str, _HEX64),
            ("entry.entry_hash", str, _HEX64), ("leaf_index", int, None), ("proof", list, None)]:
            try:
                _require(t, path, kind, pattern)
            except VerificationError as e:
                raise VerificationError(f"transfers[{i}]: {e.message}") from None
        missing = [f["name"] for f in signing.TRANSFER_TYPE if f["name"] not in t["entry"]["payload"]["transfer"]]
        if missing:
            raise VerificationError(f"transfers[{i}].entry.payload.transfer lacks {', '.join(missing)}")
        for j, step in enumerate(t["proof"]):
            if not isinstance(step, str) or not _HEX64.match(step):
                raise VerificationError(f"transfers[{i}].proof[{j}] is not a 64-digit lowercase hex hash")
    record = cert["entry"]["payload"]["record"]
    missing = [f["name"] for f in signing.REGISTRATION_TYPE if f["name"] not in record]
    if missing:
        raise VerificationError(f"entry.payload.record lacks {', '.join(missing)}")
    for i, f in enumerate(cert["entry"]["payload"]["fingerprints"]):
        if not isinstance(f, dict) or not isinstance(f.get("algorithm"), str) or not isinstance(f.get("value"), str):
            raise VerificationError(f"entry.payload.fingerprints[{i}] is not an {{algorithm, value}} object")


def _hash(cert: dict, ctx: _Context) -> None:
    actual = certificate_hash(cert)
    if actual != cert["certificate_hash"]:
        raise VerificationError(f"certificate_hash is {cert['certificate_hash'][:16]}… but the content hashes to"
                                f" {actual[:16]}…: the certificate was edited after it was issued")


def _domain(cert: dict, ctx: _Context) -> None:
    reg, payload = cert["registration"], cert["entry"]["payload"]
    expected = signing.typed_registration(payload["record"], payload["chain_id"])
    types = dict(expected["types"])
    domain = reg["domain"]
    if "verifyingContract" in domain:  # accepted for records signed with the registry in their domain
        types["EIP712Domain"] = [*types["EIP712Domain"], {"name": "verifyingContract", "type": "address"}]
    if reg["primaryType"] != "Registration" or reg["types"] != types:
        raise VerificationError("registration.types is not the provenance Registration type (version 1)")
    for key in ("name", "version"):
        if domain.get(key) != expected["domain"][key]:
            raise VerificationError(f"registration.domain.{key} is {domain.get(key)!r}, not"
                                    f" {expected['domain'][key]!r}")
    if domain.get("chainId") != payload["chain_id"]:
        raise VerificationError(f"registration.domain.chainId is {domain.get('chainId')}, but the ledger entry's"
                                f" signature is bound to chain {payload['chain_id']}")
    if "verifyingContract" in domain and cert.get("anchor") and \
            str(domain["verifyingContract"]).lower() != cert["anchor"]["contract"].lower():
        raise VerificationError(f"registration.domain.verifyingContract {domain['verifyingContract']} is not the"
                                f" registry {cert['anchor']['contract']} of the anchor")


def _typed_data(cert: dict) -> dict:
    reg, payload = cert["registration"], cert["entry"]["payload"]
    typed = signing.typed_registration(payload["record"], payload["chain_id"])
    return {**typed, "types": reg["types"], "domain": reg["domain"]}


def _signature(cert: dict, ctx: _Context) -> None:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    record, sig = cert["entry"]["payload"]["record"], cert["entry"]["payload"]["signature"]
    try:
        message = encode_typed_data(full_message=_typed_data(cert))
    except Exception as e:  # eth_account raises several unrelated types for values that do not fit a type
        raise VerificationError(f"entry.payload.record does not fit the Registration type ({e})") from None
    try:
        signer = Account.recover_message(message, signature=sig)
    except Exception:
        raise VerificationError("entry.payload.signature is not a 65-byte ECDSA signature") from None
    if signer.lower() != str(record["registrant"]).lower():
        raise VerificationError(f"the signature was made by {signer}, not by the registrant {record['registrant']}:"
                                " the signed record (title, artist, license, created, registeredAt, width, height,"
                                " sha256, pdq, phash, registrant) or the signature was changed")
    ctx.notes["signer"] = signer


def _signed_fingerprints(cert: dict, ctx: _Context) -> None:
    record = cert["entry"]["payload"]["record"]
    shown = {f["algorithm"]: f["value"] for f in cert["entry"]["payload"]["fingerprints"]}
    for name, algorithm in SIGNED_FINGERPRINTS.items():
        signed = str(record[name]).removeprefix("0x").lower()
        if algorithm in shown and shown[algorithm].lower() != signed:
            raise VerificationError(f"fingerprint {algorithm} is {shown[algorithm][:16]}… but the signed record"
                                    f" says {signed[:16]}…")


def _recomputed_hash(e: dict) -> str:
    """The entry hash a ledger entry's fields give, exactly as ledger.entry_hash computes it."""
    return entry_hash(e["seq"], e["kind"], e.get("work_id"), e["recorded_at"], canonical_json(e["payload"]),
                      e["prev_hash"])


def _proof_holds(e: dict, proof: dict, inc: dict) -> bool:
    """Does `proof` (leaf_index, proof steps) lead from entry `e`'s hash to the root and size of `inc`?"""
    return merkle.verify_inclusion(bytes.fromhex(e["entry_hash"]), proof["leaf_index"], inc["tree_size"],
                                   [bytes.fromhex(p) for p in proof["proof"]], bytes.fromhex(inc["root"]))


def _entry(cert: dict, ctx: _Context) -> None:
    e = cert["entry"]
    if e["kind"] != "register" or e.get("work_id") != cert["work_id"]:
        raise VerificationError(f"entry {e['seq']} is a {e['kind']!r} entry of work {e.get('work_id')}, not the"
                                f" registration of work {cert['work_id']}")
    actual = _recomputed_hash(e)
    if actual != e["entry_hash"]:
        raise VerificationError(f"entry {e['seq']} hashes to {actual[:16]}…, not its entry_hash"
                                f" {e['entry_hash'][:16]}…: a field of the entry (seq, kind, work_id, recorded_at,"
                                " payload, prev_hash) was changed")


def _inclusion(cert: dict, ctx: _Context) -> None:
    e, inc = cert["entry"], cert["inclusion"]
    if inc["leaf_index"] != e["seq"] - 1:
        raise VerificationError(f"inclusion.leaf_index is {inc['leaf_index']}, but entry {e['seq']} is at leaf_index"
                                f" {e['seq'] - 1} (leaves count from 0)")
    if not _proof_holds(e, inc, inc):
        raise VerificationError(f"the inclusion proof does not lead from entry {e['seq']}'s hash to the root"
                                f" {inc['root'][:16]}… of {inc['tree_size']} entries: a proof step, the tree"
                                " size, the root or the entry hash was changed")


def _signed_checkpoint(cert: dict, cp: dict, inc: dict, where: str) -> str:
    """`cp` (the section at `where`) is an EIP-712 Checkpoint of this ledger, for the size and root `inc` proves
    to, on the registration's chain, and its signature recovers its stated signer. Returns the signer."""
    chain_id = cert["registration"]["domain"].get("chainId")
    domain = cp["domain"]
    contract = domain.get("verifyingContract")
    expected = signing.typed_checkpoint({"ledgerId": cert["ledger_id"], "size": inc["tree_size"],
                                         "root": inc["root"]}, chain_id, contract)
    if cp["primaryType"] != "Checkpoint" or cp["types"] != expected["types"]:
        raise VerificationError(f"{where}.types is not the provenance Checkpoint type (version 1)")
    for key in ("name", "version"):
        if domain.get(key) != expected["domain"][key]:
            raise VerificationError(f"{where}.domain.{key} is {domain.get(key)!r}, not {expected['domain'][key]!r}")
    if domain.get("chainId") != chain_id:
        raise VerificationError(f"{where} is signed for chain {domain.get('chainId')}, but the registration for"
                                f" chain {chain_id}")
    if set(domain) != set(expected["domain"]):
        raise VerificationError(f"{where}.domain has fields other than name, version, chainId, verifyingContract")
    m = cp["message"]
    if m != expected["message"]:
        raise VerificationError(f"{where} is signed for {m.get('size')} entries with root"
                                f" {str(m.get('root')).removeprefix('0x')[:16]}… of ledger {m.get('ledgerId')}, not"
                                f" the {inc['tree_size']} entries with root {inc['root'][:16]}… of ledger"
                                f" {cert['ledger_id']} that the inclusion proof leads to")
    signer = signing.recover_checkpoint_signer(expected["message"], cp["signature"], chain_id, contract)
    if signer is None:
        raise VerificationError(f"{where}.signature is not a valid signature of a Checkpoint record")
    if signer.lower() != str(cp["signer"]).lower():
        raise VerificationError(f"the {where} signature was made by {signer}, not by its signer {cp['signer']}: the"
                                " checkpoint (ledgerId, size, root, domain) or its signature was changed")
    return signer


def _checkpoint(cert: dict, ctx: _Context) -> None:
    ctx.notes["checkpoint_signer"] = _signed_checkpoint(cert, cert["checkpoint"], cert["inclusion"], "checkpoint")


def _checkpoint_names_registry(cp: dict, a: dict, where: str) -> None:
    """An anchored checkpoint's signature binds its root to the receipt's registry and chain."""
    contract = cp["domain"].get("verifyingContract")
    if contract is None:
        raise VerificationError(f"the {where} signature's domain names no registry contract, so it does not bind"
                                f" the root to the anchor receipt's registry {a['contract']}")
    if str(contract).lower() != str(a["contract"]).lower():
        raise VerificationError(f"the {where} is signed for the registry {contract}, not for the anchor receipt's"
                                f" registry {a['contract']}")
    if cp["domain"].get("chainId") != a["chain_id"]:
        raise VerificationError(f"the {where} is signed for chain {cp['domain'].get('chainId')}, but the anchor"
                                f" receipt is on chain {a['chain_id']}")


def _transfer_signatures(cert: dict, ctx: _Context) -> None:
    """Each transfer is of this work, signed by its `from`, who owns the work at that point."""
    record = cert["entry"]["payload"]["record"]
    owner, sha, last_seq = str(record["registrant"]), str(record["sha256"]).removeprefix("0x").lower(), \
        cert["entry"]["seq"]
    for i, t in enumerate(cert.get("transfers", [])):
        e, p = t["entry"], t["entry"]["payload"]
        tr = p["transfer"]
        where = f"transfers[{i}] (entry {e['seq']})"
        if e["seq"] <= last_seq:
            raise VerificationError(f"{where} is not after entry {last_seq}: transfers must follow the registration"
                                    " and each other in ledger order")
        last_seq = e["seq"]
        if tr["workId"] != cert["work_id"] or str(tr["sha256"]).removeprefix("0x").lower() != sha:
            raise VerificationError(f"{where} transfers work {tr['workId']} (sha256 {str(tr['sha256'])[:16]}…), not"
                                    f" work {cert['work_id']} (sha256 {sha[:16]}…)")
        if p["chain_id"] != cert["registration"]["domain"].get("chainId"):
            raise VerificationError(f"{where} is signed for chain {p['chain_id']}, but the registration for chain"
                                    f" {cert['registration']['domain'].get('chainId')}")
        signer = signing.recover_transfer_signer(tr, p["signature"], p["chain_id"])
        if signer is None:
            raise VerificationError(f"{where}: the transfer signature is not a valid signature of a Transfer record")
        if signer.lower() != str(tr["from"]).lower():
            raise VerificationError(f"{where}: the transfer signature was made by {signer}, not by its sender"
                                    f" {tr['from']}: the transfer record (workId, sha256, from, to, transferredAt)"
                                    " or its signature was changed")
        if signer.lower() != owner.lower():
            raise VerificationError(f"{where}: {signer} transferred the work but did not own it: its owner at that"
                                    f" point was {owner}")
        owner = str(tr["to"])
    ctx.notes["owner"] = owner


def _transfer_inclusion(cert: dict, ctx: _Context) -> None:
    """Each transfer entry hashes to its entry_hash and is in the same checkpoint as the registration."""
    inc = cert["inclusion"]
    for i, t in enumerate(cert.get("transfers", [])):
        e = t["entry"]
        where = f"transfers[{i}] (entry {e['seq']})"
        if e["kind"] != "transfer" or e.get("work_id") != cert["work_id"]:
            raise VerificationError(f"{where} is a {e['kind']!r} entry of work {e.get('work_id')}, not a transfer of"
                                    f" work {cert['work_id']}")
        actual = _recomputed_hash(e)
        if actual != e["entry_hash"]:
            raise VerificationError(f"{where} hashes to {actual[:16]}…, not its entry_hash {e['entry_hash'][:16]}…:"
                                    " a field of the transfer entry was changed")
        if t["leaf_index"] != e["seq"] - 1:
            raise VerificationError(f"{where} has leaf_index {t['leaf_index']}, not {e['seq'] - 1}")
        if not _proof_holds(e, t, inc):
            raise VerificationError(f"the inclusion proof of {where} does not lead to the root {inc['root'][:16]}… of"
                                    f" {inc['tree_size']} entries: a proof step or the transfer entry was changed")


def _commit_signature(cert: dict, ctx: _Context) -> None:
    """A revealed work: the commit is signed by the registrant and the revealed record, fingerprints and salt
    recompute its commitment."""
    payload = cert["entry"]["payload"]
    if "commit" not in cert and "reveals" not in payload:
        return
    if "commit" not in cert or "reveals" not in payload:
        raise VerificationError("entry.payload.reveals and commit come together: the certificate has only one of them")
    e, reveals = cert["commit"]["entry"], payload["reveals"]
    c = e["payload"]["commit"]
    if reveals["commit_seq"] != e["seq"]:
        raise VerificationError(f"the registration reveals entry {reveals['commit_seq']}, but commit.entry is entry"
                                f" {e['seq']}")
    if e["payload"]["chain_id"] != cert["registration"]["domain"].get("chainId"):
        raise VerificationError(f"the commitment is signed for chain {e['payload']['chain_id']}, but the registration"
                                f" for chain {cert['registration']['domain'].get('chainId')}")
    signer = signing.recover_commitment_signer(c, e["payload"]["signature"], e["payload"]["chain_id"])
    if signer is None or signer.lower() != str(c["registrant"]).lower():
        raise VerificationError(f"the commitment signature was made by {signer}, not by its registrant"
                                f" {c['registrant']}: the commitment record or its signature was changed")
    if signer.lower() != str(payload["record"]["registrant"]).lower():
        raise VerificationError(f"the commitment was made by {signer}, not by the registrant"
                                f" {payload['record']['registrant']} of the revealed work")
    if commitment_of(payload["record"], payload["fingerprints"], reveals["salt"]) != c["commitment"]:
        raise VerificationError(f"the revealed record, fingerprints and salt do not recompute the commitment"
                                f" {str(c['commitment'])[:16]}… of entry {e['seq']}: one of them was changed")


def _commit_inclusion(cert: dict, ctx: _Context) -> None:
    """The commit entry hashes to its entry_hash, precedes the registration and is proven to its own root."""
    if "commit" not in cert:
        return
    e, inc = cert["commit"]["entry"], cert["commit"]["inclusion"]
    if e["kind"] != "commit" or e.get("work_id") is not None:
        raise VerificationError(f"commit.entry is a {e['kind']!r} entry, not a commitment")
    if e["seq"] >= cert["entry"]["seq"]:
        raise VerificationError(f"commit.entry {e['seq']} does not precede the registration entry"
                                f" {cert['entry']['seq']}")
    actual = _recomputed_hash(e)
    if actual != e["entry_hash"]:
        raise VerificationError(f"commit.entry hashes to {actual[:16]}…, not its entry_hash {e['entry_hash'][:16]}…:"
                                " a field of the commit entry was changed")
    if inc["leaf_index"] != e["seq"] - 1:
        raise VerificationError(f"commit.inclusion.leaf_index is {inc['leaf_index']}, not {e['seq'] - 1}")
    if not _proof_holds(e, inc, inc):
        raise VerificationError(f"the inclusion proof of commit.entry does not lead to the root {inc['root'][:16]}…"
                                f" of {inc['tree_size']} entries: a proof step or the commit entry was changed")
    _signed_checkpoint(cert, cert["commit"]["checkpoint"], inc, "commit.checkpoint")
    a = cert["commit"].get("anchor")
    if a is not None:
        if (a["root"], a["size"]) != (inc["root"], inc["tree_size"]):
            raise VerificationError("commit.anchor is not for the root and size commit.inclusion leads to")
        if a["chain_id"] != cert["registration"]["domain"].get("chainId"):
            raise VerificationError(f"commit.anchor is on chain {a['chain_id']}, but the signature is bound to chain"
                                    f" {cert['registration']['domain'].get('chainId')}")
        _checkpoint_names_registry(cert["commit"]["checkpoint"], a, "commit.checkpoint")
    when = (f"block {a['block_number']} (timestamp {a['block_timestamp']}, tx {a['tx_hash'][:18]}…)" if a else
            f"the checkpoint of {inc['tree_size']} entries (root {inc['root'][:16]}…, recorded"
            f" {inc.get('checkpoint_recorded_at')})")
    ctx.notes["committed"] = f"committed as entry {e['seq']} no later than {when}"


def _commit_on_chain(cert: dict, ctx: _Context) -> None:
    if cert.get("commit") and cert["commit"].get("anchor"):
        _on_chain({"anchor": cert["commit"]["anchor"], "checkpoint": cert["commit"]["checkpoint"]}, ctx)


def _receipt(cert: dict, ctx: _Context) -> None:
    a, inc = cert.get("anchor"), cert["inclusion"]
    if a is None:
        raise VerificationError("the certificate has no anchor receipt: the ledger was not anchored when it was"
                                " issued", hint="anchor the ledger (provenance anchor) and issue a new certificate")
    if (a["root"], a["size"]) != (inc["root"], inc["tree_size"]):
        raise VerificationError(f"the anchor receipt is for root {a['root'][:16]}… of {a['size']} entries, not the"
                                f" checkpoint root {inc['root'][:16]}… of {inc['tree_size']} entries the inclusion"
                                " proof leads to")
    chain_id = cert["registration"]["domain"].get("chainId")
    if a["chain_id"] != chain_id:
        raise VerificationError(f"the anchor receipt is on chain {a['chain_id']}, but the signature is bound to"
                                f" chain {chain_id}")
    _checkpoint_names_registry(cert["checkpoint"], a, "checkpoint")


def _on_chain(cert: dict, ctx: _Context) -> None:
    """eth_call and receipt lookups to the node given, and to no other."""
    from web3 import Web3

    from .chain import REGISTRY, artifact

    a = cert["anchor"]
    w3 = ctx.w3
    where = ctx.rpc_url or "the given node"
    try:
        if w3 is None:
            from .chain import _http_web3

            w3 = _http_web3(ctx.rpc_url)
        chain_id = w3.eth.chain_id
    except Exception as e:
        raise VerificationError(f"no Ethereum node answers at {where} ({type(e).__name__})",
                                hint="check --rpc-url, or verify offline without it") from None
    if chain_id != a["chain_id"]:
        raise VerificationError(f"the node at {where} serves chain {chain_id}, but the anchor is on chain"
                                f" {a['chain_id']}")
    try:
        receipt = w3.eth.get_transaction_receipt(a["tx_hash"])
    except Exception:  # web3 raises TransactionNotFound, or a validation error for a malformed hash
        receipt = None
    if receipt is None:
        raise VerificationError(f"transaction {a['tx_hash']} of the anchor receipt is not on chain {chain_id}")
    contract = Web3.to_checksum_address(a["contract"])
    if receipt["status"] != 1 or str(receipt.get("to") or "").lower() != contract.lower():
        raise VerificationError(f"transaction {a['tx_hash']} is not a successful call to the registry {contract}")
    signer = cert["checkpoint"]["signer"]
    if str(receipt.get("from") or "").lower() != str(signer).lower():
        raise VerificationError(f"transaction {a['tx_hash']} was sent by {receipt.get('from')}, not by the key"
                                f" {signer} that signed the anchored checkpoint")
    if receipt["blockNumber"] != a["block_number"]:
        raise VerificationError(f"transaction {a['tx_hash']} was mined in block {receipt['blockNumber']}, not in"
                                f" block {a['block_number']} as the anchor receipt says")
    registry = w3.eth.contract(address=contract, abi=artifact(REGISTRY)["abi"])
    root = bytes.fromhex(a["root"])
    events = registry.events.Anchored().process_receipt(receipt)
    if not any(bytes(ev["args"]["root"]) == root for ev in events):
        raise VerificationError(f"transaction {a['tx_hash']} did not anchor root {a['root'][:16]}…")
    anchored_at = registry.functions.anchoredAt(root).call()
    if anchored_at == 0:
        raise VerificationError(f"root {a['root'][:16]}… is not anchored in the registry {contract}")
    if anchored_at != a["block_timestamp"]:
        raise VerificationError(f"the registry dates root {a['root'][:16]}… at {anchored_at}, not at"
                                f" {a['block_timestamp']} as the anchor receipt says")
    ctx.notes["on_chain"] = True


def _image(cert: dict, ctx: _Context) -> None:
    from .index import Index
    from .matching import THRESHOLDS, find_matches

    record = cert["entry"]["payload"]["record"]
    stored = {f["algorithm"]: Fingerprint(f["algorithm"], f["value"], f.get("quality"))
              for f in cert["entry"]["payload"]["fingerprints"]}
    signed_sha = str(record["sha256"]).removeprefix("0x").lower()
    if hashlib.sha256(ctx.image_bytes).hexdigest() == signed_sha:
        ctx.notes["image"] = "identical file bytes (SHA-256)"
        return
    try:
        query = fingerprint(ctx.image_bytes, variants=True)
    except ProvenanceError as e:
        raise VerificationError(f"the image cannot be read: {e.message}") from None
    work = Work(cert["work_id"], signed_sha, record["title"], record["artist"], record["license"], record["width"],
                record["height"], record["created"], "", record["registrant"], "", cert["entry"]["seq"], stored)
    matches = find_matches(query, Index([work]))
    if matches:
        from .matching import explain

        ctx.notes["image"] = explain(matches[0])
        return
    distances = []
    for algorithm, variants in ((PDQ, query.pdq_variants), (PHASH, query.phash_variants)):
        if algorithm in stored:
            d = min(hamming(v, stored[algorithm].value) for v in variants)
            distances.append(f"{algorithm} distance {d}/{BITS[algorithm]}, threshold {THRESHOLDS[algorithm]}")
    raise VerificationError(f"the image is not work #{cert['work_id']}: its SHA-256 differs and no fingerprint is"
                            f" close enough ({'; '.join(distances) or 'no comparable fingerprint'})")


FORMAT_POLICIES: tuple[Policy, ...] = (_format_version, _fields, _hash)
POLICIES: dict[str, tuple[Policy, ...]] = {
    "signed": (_domain, _signature, _signed_fingerprints, _transfer_signatures, _commit_signature),
    "included": (_entry, _inclusion, _checkpoint, _transfer_inclusion, _commit_inclusion),
    "anchored": (_receipt,),
    "image": (_image,),
}


def _run(policies: tuple[Policy, ...], cert: dict, ctx: _Context) -> str | None:
    """None when every policy passed, else the failure message. An empty policy set is an error, not a pass."""
    if not policies:
        raise ValueError("an empty policy set verifies nothing")
    for policy in policies:
        try:
            policy(cert, ctx)
        except VerificationError as e:
            return e.diagnostics()
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a value of the wrong shape inside a field
            return f"the certificate holds a malformed value ({type(e).__name__}: {e})"
    return None


def _success(level: str, cert: dict, ctx: _Context) -> str:
    e, inc, a = cert["entry"], cert["inclusion"], cert.get("anchor")
    if level == "signed":
        n = len(cert.get("transfers", []))
        owned = (f"; {n} transfer{'s' if n > 1 else ''}, each signed by the owner, to the current owner"
                 f" {ctx.notes['owner']}" if n else "")
        return (f"EIP-712 signature by the registrant {ctx.notes['signer']}, bound to chain"
                f" {cert['registration']['domain']['chainId']}{owned}")
    if level == "included":
        n = len(cert.get("transfers", []))
        also = f" (and its {n} transfer entr{'ies' if n > 1 else 'y'})" if n else ""
        committed = f"; {ctx.notes['committed']}" if ctx.notes.get("committed") else ""
        return (f"entry {e['seq']}{also} is leaf {inc['leaf_index'] + 1} of {inc['tree_size']} under root"
                f" {inc['root'][:16]}…, checkpoint signed by {ctx.notes['checkpoint_signer']}{committed}")
    if level == "anchored":
        where = (f"root {a['root'][:16]}… anchored in block {a['block_number']} (tx {a['tx_hash'][:18]}…) on chain"
                 f" {a['chain_id']}, in the registry {a['contract']} that the checkpoint signature names")
        return (f"found on chain: {where}" if ctx.notes.get("on_chain") else
                f"receipt consistent: {where}; not checked on chain (give an RPC URL)")
    return ctx.notes["image"]


def verify_certificate(cert: Any, *, image_bytes: bytes | None = None, rpc_url: str | None = None,
                       w3=None) -> VerificationResult:
    """Check a certificate offline, and on chain when `rpc_url` (or a web3 instance `w3`) is given.

    Never raises for a bad certificate: every failure is a failed check naming what is wrong. The anchored level
    is checked when the certificate carries a receipt or a chain is given; the image level when bytes are given.
    """
    ctx = _Context(image_bytes=image_bytes, w3=w3, rpc_url=rpc_url)
    failure = _run(FORMAT_POLICIES, cert, ctx)
    if failure:
        checks = (Check("format", FAILED, failure),
                  *(Check(level, SKIPPED, "not checked: the certificate is malformed") for level in LEVELS))
        return VerificationResult(None, None, None, None, checks)
    online = rpc_url is not None or w3 is not None
    requested = {"signed": True, "included": True, "anchored": cert.get("anchor") is not None or online,
                 "image": image_bytes is not None}
    skipped = {"anchored": "not anchored: the certificate has no anchor receipt",
               "image": "not requested (give an image)"}
    checks = [Check("format", PASSED, f"{FORMAT}, certificate hash {cert['certificate_hash'][:16]}…")]
    for level in LEVELS:
        if not requested[level]:
            checks.append(Check(level, SKIPPED, skipped[level]))
            continue
        policies = POLICIES[level] + ((_on_chain, _commit_on_chain) if level == "anchored" and online else ())
        failure = _run(policies, cert, ctx)
        checks.append(Check(level, FAILED, failure) if failure else Check(level, PASSED, _success(level, cert, ctx)))
    record = cert["entry"]["payload"]["record"]
    signed_ok = any(c.level == "signed" and c.status == PASSED for c in checks)
    owner = ctx.notes.get("owner") if signed_ok else None
    return VerificationResult(cert["certificate_hash"], cert["work_id"], record.get("title"),
                              record.get("registrant"), tuple(checks), owner)
