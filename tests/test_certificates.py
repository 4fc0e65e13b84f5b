"""Ownership certificates: issued from a real ledger, verified without it, and every tampering named.

The bad certificates under tests/assets/certificates/ are made by make_bad.py there (good.json with one change,
re-hashed as a forger would). Changes only a chain can refute (the receipt's transaction, block, time) are applied
by the same script's functions to a live certificate anchored on the in-process EVM. Live certificates are issued
from ledgers on both storage backends (`setup`).
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from chainhelp import add_works, cli_home, evm_chain, evm_web3, fund, managed_w3  # noqa: F401
from click.testing import CliRunner

from cli.main import cli
from provenance import anchoring, certificates
from provenance.certificates import FORMAT, issue_certificate, verify_certificate
from provenance.errors import TamperedLedgerError, UsageError
from provenance.ledger import Ledger

import dbhelp
from dbhelp import raw_connection

ASSETS = Path(__file__).parent / "assets" / "certificates"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_spec = importlib.util.spec_from_file_location("make_bad", ASSETS / "make_bad.py")
make_bad = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_bad)


def load(name: str) -> dict:
    return json.loads((ASSETS / f"{name}.json").read_text())


def statuses(result) -> dict[str, str]:
    return {c.level: c.status for c in result.checks}


def reason(result, level: str) -> str:
    return next(c.reason for c in result.checks if c.level == level)


GOOD = load("good")
SIG_CHAIN = GOOD["registration"]["domain"]["chainId"]
ROOT = GOOD["inclusion"]["root"]
KEEPER = GOOD["checkpoint"]["signer"]  # the key that registered, checkpointed and anchored (make_bad.KEY)
REGISTRY = GOOD["anchor"]["contract"]
SIGNED_RECORD = ("the signed record (title, artist, license, created, registeredAt, width, height, sha256, pdq,"
                 " phash, registrant) or the signature was changed")
ENTRY_FIELDS = "a field of the entry (seq, kind, work_id, recorded_at, payload, prev_hash) was changed"


# -- the committed good certificates ------------------------------------------------------------------------------
def test_anchored_certificate_verifies_offline_at_the_anchored_level():
    r = verify_certificate(GOOD)
    assert r.ok and r.level == "anchored" and r.work_id == 2 and r.title == "Brush Abstract"
    assert statuses(r) == {"format": "passed", "signed": "passed", "included": "passed", "anchored": "passed",
                           "image": "skipped"}
    registrant = GOOD["entry"]["payload"]["record"]["registrant"]
    assert reason(r, "signed") == f"EIP-712 signature by the registrant {registrant}, bound to chain {SIG_CHAIN}"
    assert reason(r, "included") == f"entry 2 is leaf 2 of 3 under root {ROOT[:16]}…, checkpoint signed by {KEEPER}"
    a = GOOD["anchor"]
    assert reason(r, "anchored") == (f"receipt consistent: root {ROOT[:16]}… anchored in block {a['block_number']}"
                                     f" (tx {a['tx_hash'][:18]}…) on chain {a['chain_id']}, in the registry"
                                     f" {REGISTRY} that the checkpoint signature names; not checked on chain"
                                     " (give an RPC URL)")


def test_the_anchored_checkpoint_is_signed_in_a_domain_naming_the_registry():
    cp = GOOD["checkpoint"]
    assert cp["primaryType"] == "Checkpoint" and cp["signer"] == GOOD["entry"]["payload"]["record"]["registrant"]
    assert cp["domain"] == {"name": "provenance", "version": "1", "chainId": SIG_CHAIN, "verifyingContract": REGISTRY}
    assert cp["message"] == {"ledgerId": GOOD["ledger_id"], "size": 3, "root": "0x" + ROOT}
    unanchored = load("good-unanchored")["checkpoint"]
    assert "verifyingContract" not in unanchored["domain"]


def test_unanchored_certificate_verifies_at_the_included_level_without_a_chain():
    r = verify_certificate(load("good-unanchored"))
    assert r.ok and r.level == "included"
    assert reason(r, "anchored") == "not anchored: the certificate has no anchor receipt"


# -- the committed bad certificates: each fails with a message naming what is wrong -------------------------------
def _bad_cases():
    rec = GOOD["entry"]["payload"]["record"]
    pdq = next(f["value"] for f in GOOD["entry"]["payload"]["fingerprints"] if f["algorithm"] == "pdq/1")
    no_path = (f"the inclusion proof does not lead from entry 2's hash to the root {{root}} of 3 entries: a proof"
               " step, the tree size, the root or the entry hash was changed")
    return {
        "title": ("signed", f"the signature was made by {{signer}}, not by the registrant {rec['registrant']}:"
                            f" {SIGNED_RECORD}"),
        "registrant": ("signed", f"the signature was made by {{signer}}, not by the registrant {make_bad.OTHER}:"
                                 f" {SIGNED_RECORD}"),
        "registered-at": ("signed", f"the signature was made by {{signer}}, not by the registrant"
                                    f" {rec['registrant']}: {SIGNED_RECORD}"),
        "fingerprint": ("signed", f"fingerprint pdq/1 is {make_bad._flip(pdq)[:16]}… but the signed record says"
                                  f" {pdq[:16]}…"),
        "chain-id": ("signed", f"registration.domain.chainId is 1, but the ledger entry's signature is bound to"
                               f" chain {SIG_CHAIN}"),
        "prev-hash": ("included", f"entry 2 hashes to {{actual}}, not its entry_hash"
                                  f" {GOOD['entry']['entry_hash'][:16]}…: {ENTRY_FIELDS}"),
        "fingerprint-rehashed": ("included", no_path.format(root=f"{ROOT[:16]}…")),
        "proof-step": ("included", no_path.format(root=f"{ROOT[:16]}…")),
        "root": ("included", no_path.format(root=f"{make_bad._flip(ROOT)[:16]}…")),
        "leaf-index": ("included", "inclusion.leaf_index is 2, but entry 2 is at leaf_index 1 (leaves count from 0)"),
        "receipt-root": ("anchored", f"the anchor receipt is for root {make_bad._flip(ROOT)[:16]}… of 3 entries,"
                                     f" not the checkpoint root {ROOT[:16]}… of 3 entries the inclusion proof leads"
                                     " to"),
        "receipt-chain": ("anchored", f"the anchor receipt is on chain 1, but the signature is bound to chain"
                                      f" {SIG_CHAIN}"),
        "format": ("format", f"not a {FORMAT} certificate (format: 'provenance-certificate/9')"),
        "checkpoint-signature": ("included", f"the checkpoint signature was made by {make_bad.OTHER}, not by its"
                                             f" signer {KEEPER}: the checkpoint (ledgerId, size, root, domain) or its"
                                             " signature was changed"),
        "checkpoint-other-size": ("included", f"checkpoint is signed for 2 entries with root {make_bad._flip(ROOT)[:16]}…"
                                              f" of ledger {GOOD['ledger_id']}, not the 3 entries with root"
                                              f" {ROOT[:16]}… of ledger {GOOD['ledger_id']} that the inclusion proof"
                                              " leads to"),
        "checkpoint-registry": ("anchored", f"the checkpoint is signed for the registry {make_bad.OTHER_REGISTRY},"
                                            f" not for the anchor receipt's registry {REGISTRY}"),
        "checkpoint-unbound": ("anchored", "the checkpoint signature's domain names no registry contract, so it does"
                                           f" not bind the root to the anchor receipt's registry {REGISTRY}"),
        "stale-hash": ("format", f"certificate_hash is {GOOD['certificate_hash'][:16]}… but the content hashes to"
                                 f" {{actual_cert}}: the certificate was edited after it was issued"),
    }


def _derived(cert: dict) -> dict:
    """What the expected messages quote but only a computation gives: the address the changed record recovers,
    the changed entry's hash, the changed certificate's hash."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from provenance.ledger import canonical_json, entry_hash

    e = cert["entry"]
    try:
        signer = Account.recover_message(encode_typed_data(full_message=certificates._typed_data(cert)),
                                         signature=e["payload"]["signature"])
    except Exception:
        signer = None
    actual = entry_hash(e["seq"], e["kind"], e["work_id"], e["recorded_at"], canonical_json(e["payload"]),
                        e["prev_hash"])
    return {"signer": signer, "actual": actual[:16] + "…", "actual_cert": certificates.certificate_hash(cert)[:16] + "…"}


def test_every_committed_bad_certificate_is_tested():
    on_disk = {p.stem.removeprefix("bad-") for p in ASSETS.glob("bad-*.json")}
    assert on_disk == set(_bad_cases()) == set(make_bad.TAMPERS) | {"stale-hash"}


@pytest.mark.parametrize("name", sorted(_bad_cases()))
def test_bad_certificate_fails_naming_what_is_wrong(name):
    level, expected = _bad_cases()[name]
    cert = load(f"bad-{name}")
    r = verify_certificate(cert)
    assert not r.ok
    failed = [c for c in r.checks if c.status == "failed"]
    first = failed[0]
    assert first.level == level, r.checks
    assert first.reason == expected.format(**_derived(cert))
    if level == "format":
        assert r.level is None and all(c.status == "skipped" for c in r.checks[1:])


def test_a_changed_record_fails_both_the_signature_and_the_entry_hash():
    r = verify_certificate(load("bad-title"))
    assert statuses(r) == {"format": "passed", "signed": "failed", "included": "failed", "anchored": "passed",
                           "image": "skipped"}
    assert r.level is None and "was changed" in reason(r, "included")


def test_malformed_certificates_are_named_not_tracebacks():
    broken = json.loads(json.dumps(GOOD))
    del broken["entry"]["entry_hash"]
    assert reason(verify_certificate(broken), "format") == "the certificate has no entry.entry_hash"
    broken = json.loads(json.dumps(GOOD))
    broken["inclusion"]["proof"][0] = "xyz"
    assert reason(verify_certificate(broken), "format") == "inclusion.proof[0] is not a 64-digit lowercase hex hash"
    assert reason(verify_certificate([1, 2]), "format") == f"not a {FORMAT} certificate (format: 'list')"


def test_a_value_of_the_wrong_shape_fails_its_level():
    broken = json.loads(json.dumps(GOOD))
    broken["entry"]["payload"]["record"]["width"] = "wide"
    broken["certificate_hash"] = certificates.certificate_hash(broken)
    r = verify_certificate(broken)
    assert not r.ok and reason(r, "signed").startswith("entry.payload.record does not fit the Registration type (")
    broken = json.loads(json.dumps(GOOD))
    broken["entry"]["payload"]["signature"] = "0x1234"
    broken["certificate_hash"] = certificates.certificate_hash(broken)
    assert reason(verify_certificate(broken), "signed") == "entry.payload.signature is not a 65-byte ECDSA signature"


def test_an_unreachable_node_fails_the_anchored_level():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    r = verify_certificate(GOOD, rpc_url=url)
    assert not r.ok and r.level == "included"
    assert reason(r, "anchored") == (f"no Ethereum node answers at {url} (ConnectionError)\n"
                                     "  hint: check --rpc-url, or verify offline without it")


def test_a_version_1_certificate_is_refused_with_what_to_do():
    old = json.loads(json.dumps(GOOD))
    old["format"] = "provenance-certificate/1"
    del old["checkpoint"]
    old["certificate_hash"] = certificates.certificate_hash(old)
    r = verify_certificate(old)
    assert r.level is None and reason(r, "format") == (
        f"not a {FORMAT} certificate (format: 'provenance-certificate/1')\n  hint: it was issued before checkpoints"
        " were signed: ask for a new certificate (provenance certificate WORK_ID)")


@pytest.mark.parametrize("cli_home", dbhelp.BACKENDS, indirect=True)
def test_cli_ledger_checkpoint_signs_the_latest_state(cli_home):
    from chainhelp import home_account

    from provenance import config

    r = _run("ledger", "checkpoint")
    assert r.exit_code == 0 and "nothing to sign" in r.output, r.output
    with Ledger.open(config.ledger_target()) as led:
        add_works(led, home_account(), 1, start=5)
    r = _run("ledger", "checkpoint", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["signed"] and out["checkpoint"]["size"] == 5 and out["checkpoint"]["signer"] == home_account().address


def test_the_certificate_hash_does_not_depend_on_layout():
    assert certificates.certificate_hash(json.loads(json.dumps(GOOD))) == GOOD["certificate_hash"]
    assert GOOD["certificate_hash"] == certificates.certificate_hash(load("good"))


def test_an_empty_policy_set_is_an_error():
    with pytest.raises(ValueError, match="an empty policy set verifies nothing"):
        certificates._run((), GOOD, certificates._Context())


# -- images ---------------------------------------------------------------------------------------------------
def test_the_registered_file_matches_exactly():
    r = verify_certificate(GOOD, image_bytes=(EXAMPLES / "works" / "brush-abstract.jpg").read_bytes())
    assert r.ok and r.level == "image" and reason(r, "image") == "identical file bytes (SHA-256)"


def test_a_flipped_copy_matches_perceptually_with_distance_and_transform():
    r = verify_certificate(GOOD, image_bytes=(EXAMPLES / "feed" / "post_04.jpg").read_bytes())
    assert r.ok and r.level == "image"
    assert reason(r, "image").startswith("flipped horizontally: ") and "distance" in reason(r, "image")


def test_an_unrelated_image_fails_with_its_distances():
    r = verify_certificate(GOOD, image_bytes=(EXAMPLES / "feed" / "post_03.jpg").read_bytes())
    assert not r.ok and r.level == "anchored"
    assert reason(r, "image").startswith("the image is not work #2: its SHA-256 differs and no fingerprint is close"
                                         " enough (pdq/1 distance ")
    assert re.search(r"pdq/1 distance \d+/256, threshold 40; phash/1 distance \d+/64, threshold 6\)$", reason(r, "image"))


def test_a_file_that_is_no_image_fails_the_image_level():
    r = verify_certificate(GOOD, image_bytes=b"not an image at all")
    assert reason(r, "image").startswith("the image cannot be read: ") and not r.ok


# -- issued from a live ledger, checked on the in-process EVM ----------------------------------------------------
@pytest.fixture
def w3():
    return evm_web3()


@pytest.fixture
def setup(backend, w3, account):
    """A ledger of 5 works, checkpointed, on each backend, and the in-process EVM."""
    fund(w3, account.address)
    with Ledger.create(backend, chain_id=w3.eth.chain_id) as led:
        add_works(led, account, 5)
        led.checkpoint(signer=account)  # as register does at the end of a batch
        yield led, evm_chain(w3, led, account)


def test_issued_before_anchoring_included_then_anchored_on_chain(setup, w3):
    ledger, chain = setup
    early = issue_certificate(ledger, 3)
    assert early["anchor"] is None and early["inclusion"]["tree_size"] == 5
    r = verify_certificate(early)
    assert r.ok and r.level == "included"
    r = verify_certificate(early, w3=w3)  # a chain was asked for: no receipt is a failure
    assert not r.ok and reason(r, "anchored").startswith("the certificate has no anchor receipt")

    a = anchoring.anchor(ledger, chain).anchor
    cert = issue_certificate(ledger, 3)
    assert cert["anchor"]["tx_hash"] == a.tx_hash and cert["anchor"]["root"] == a.root[2:]
    r = verify_certificate(cert, w3=w3)
    assert r.ok and r.level == "anchored"
    assert reason(r, "anchored").startswith(f"found on chain: root {a.root[2:18]}… anchored in block"
                                            f" {a.block_number}")


@pytest.mark.parametrize("name, expected", [
    ("receipt-tx", "transaction 0x" + "ab" * 32 + " of the anchor receipt is not on chain {chain}"),
    ("receipt-block", "transaction {tx} was mined in block {block}, not in block {block5} as the anchor receipt"
                      " says"),
    ("receipt-timestamp", "the registry dates root {root}… at {ts}, not at {ts_1h} as the anchor receipt says"),
], ids=["tx", "block", "timestamp"])
def test_a_changed_receipt_is_refuted_on_chain(setup, w3, name, expected):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    cert = issue_certificate(ledger, 2)
    a = cert["anchor"]
    bad = make_bad.tampered(cert, name)
    assert verify_certificate(bad).ok  # offline, a receipt is only checked against the proof: consistent
    r = verify_certificate(bad, w3=w3)
    assert not r.ok and r.level == "included"
    assert reason(r, "anchored") == expected.format(chain=a["chain_id"], tx=a["tx_hash"], block=a["block_number"],
                                                    block5=a["block_number"] + 5, root=a["root"][:16],
                                                    ts=a["block_timestamp"], ts_1h=a["block_timestamp"] - 3600)


def test_a_root_missing_on_a_fresh_chain_fails_online(setup, account):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    cert = issue_certificate(ledger, 1)
    fresh = evm_web3()  # the same chain id, started from scratch: the transaction is not there
    r = verify_certificate(cert, w3=fresh)
    assert not r.ok and reason(r, "anchored") == (f"transaction {cert['anchor']['tx_hash']} of the anchor receipt"
                                                  f" is not on chain {cert['anchor']['chain_id']}")


def test_an_anchored_checkpoint_signed_by_another_key_than_the_sender_fails_online(setup, w3):
    ledger, chain = setup
    anchoring.anchor(ledger, chain)
    bad = json.loads(json.dumps(issue_certificate(ledger, 2)))
    make_bad._resign_checkpoint(bad, key=make_bad.OTHER_KEY)
    bad["checkpoint"]["signer"] = make_bad.OTHER
    bad["certificate_hash"] = certificates.certificate_hash(bad)
    assert verify_certificate(bad).ok  # offline, any key may vouch for a checkpoint: it is named
    r = verify_certificate(bad, w3=w3)
    assert reason(r, "anchored") == (f"transaction {bad['anchor']['tx_hash']} was sent by {chain.address}, not by"
                                     f" the key {make_bad.OTHER} that signed the anchored checkpoint")


def test_no_certificate_without_a_signed_checkpoint(tmp_path, account):
    """A ledger from before signed checkpoints (tests/assets/ledgers/schema1-anchored.db): its unsigned anchor
    and checkpoints prove nothing, so issuing says what to do; a signed checkpoint makes work 1 certifiable.
    SQLite only: the old ledger is a committed file (schema 1 predates PostgreSQL support)."""
    import shutil

    path = tmp_path / "old.db"
    shutil.copy(ASSETS.parent / "ledgers" / "schema1-anchored.db", path)
    with Ledger.open(path) as old:
        with pytest.raises(UsageError, match=r"the anchors covering ledger entry 2 carry no checkpoint signature \(recorded"
                                             r" before anchors were signed, or sent by another key\)") as info:
            issue_certificate(old, 2)
        assert "provenance anchor" in info.value.hint
        with pytest.raises(UsageError, match="no signed checkpoint covers ledger entry 4 yet") as info:
            issue_certificate(old, 1)  # transferred after the anchor
        assert info.value.hint == "sign one with: provenance ledger checkpoint"
        old.checkpoint(signer=account)
        r = verify_certificate(issue_certificate(old, 1))
        assert r.ok and r.level == "included" and reason(r, "included").endswith(f"signed by {account.address}")


def test_a_tampered_ledger_issues_no_certificate(setup):
    ledger, _ = setup
    with raw_connection(ledger) as conn:  # past PostgreSQL's append-only rule, as a superuser could
        conn.execute("UPDATE works SET title = 'Mine now' WHERE id = 2")
    with pytest.raises(TamperedLedgerError, match=r"works row 2 was edited \(title\)"):
        issue_certificate(ledger, 2)


# -- CLI ------------------------------------------------------------------------------------------------------
def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_certificate_and_verify_offline_and_on_the_managed_chain(cli_home, tmp_path):
    out = tmp_path / "cert.json"
    r = _run("certificate", "2", "-o", str(out))
    assert r.exit_code == 0 and "not anchored yet" in r.output, r.output
    r = _run("verify", str(out))
    assert r.exit_code == 0 and "verified: level reached: included" in r.output, r.output

    assert _run("anchor").exit_code == 0
    r = _run("certificate", "2", "-o", str(out))
    assert r.exit_code == 0 and "anchored in block 2 on chain 31337" in r.output, r.output
    r = _run("verify", str(out), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["level"] == "anchored"
    node, _ = managed_w3(cli_home)
    try:
        r = _run("verify", str(out), "--rpc-url", node.url)
    finally:
        node.stop()
    assert r.exit_code == 0 and "ok   anchored  found on chain: root" in r.output, r.output


def test_cli_verify_bad_certificate_and_image(tmp_path):
    r = _run("verify", str(ASSETS / "bad-proof-step.json"))
    assert r.exit_code == 1 and "FAIL included  the inclusion proof does not lead" in r.output
    assert "NOT verified: level reached: signed" in r.output
    r = _run("verify", str(ASSETS / "good.json"), "--image", str(EXAMPLES / "feed" / "post_04.jpg"))
    assert r.exit_code == 0 and "ok   image     flipped horizontally" in r.output, r.output
    r = _run("verify", str(ASSETS / "good.json"), "--image", str(EXAMPLES / "feed" / "post_03.jpg"))
    assert r.exit_code == 1 and "FAIL image" in r.output and "verified: level reached: anchored" in r.output
    (tmp_path / "junk.json").write_text("{not json")
    r = _run("verify", str(tmp_path / "junk.json"))
    assert r.exit_code == 2 and "is not a readable JSON certificate" in r.output and "Traceback" not in r.output
