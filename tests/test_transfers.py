"""Transfers of a registration to a new owner: signed by the current owner, checked by verify() and certificates.

Forgeries are made as an attacker with the file (or a PostgreSQL superuser) would: raw SQL, with the hash chain
recomputed. On both backends (`ledger` here is `any_ledger`; the CLI test through cli_home's PROVENANCE_DB)."""
from __future__ import annotations

import json

import pytest
from chainhelp import add_works, cli_home, home_account, run  # noqa: F401
from eth_account import Account

from provenance import config
from provenance.certificates import certificate_hash, issue_certificate, verify_certificate
from provenance.errors import TamperedLedgerError, UsageError
from provenance.ledger import Ledger, canonical_json, entry_hash
from provenance.signing import recover_transfer_signer, sign_transfer

import dbhelp
from dbhelp import raw_connection

THIRD = Account.from_key("0x" + "33" * 32)


@pytest.fixture
def ledger(any_ledger) -> Ledger:
    return any_ledger


@pytest.fixture
def two_works(ledger, account) -> Ledger:
    add_works(ledger, account, 2)
    return ledger


def insert_entry(ledger: Ledger, at_seq: int, kind: str, work_id: int, payload: dict) -> None:
    """A careful forger: insert an entry at `at_seq`, renumber the ones after it, recompute the hash chain."""
    with raw_connection(ledger) as conn:  # PostgreSQL: replica mode skips the foreign-key checks too
        rows = [tuple(r) for r in conn.execute("SELECT seq, kind, work_id, recorded_at, payload FROM entries"
                                               " ORDER BY seq").fetchall()]
        rows.insert(at_seq - 1, (at_seq, kind, work_id, rows[-1][3], canonical_json(payload)))
        if ledger.path is not None:
            conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DELETE FROM entries")
        prev = "00" * 32
        for seq, (_, k, w, at, text) in enumerate(rows, start=1):
            digest = entry_hash(seq, k, w, at, text, prev)
            conn.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", (seq, k, w, at, text, prev, digest))
            prev = digest
        conn.execute("UPDATE works SET entry_seq = entry_seq + 1 WHERE entry_seq >= ?", (at_seq,))


def transfer_payload(ledger: Ledger, work_id: int, sender: str, to: str, signer) -> dict:
    record = {"workId": work_id, "sha256": ledger.work(work_id).sha256, "from": sender, "to": to,
              "transferredAt": 1_800_000_000}
    return {"transfer": record, "signature": sign_transfer(signer, record, ledger.chain_id),
            "chain_id": ledger.chain_id}


# -- signing -----------------------------------------------------------------------------------------------------
def test_transfer_signature_recovers_the_signer(account, other_account):
    record = {"workId": 1, "sha256": "ab" * 32, "from": account.address, "to": other_account.address,
              "transferredAt": 1}
    sig = sign_transfer(account, record, 31337)
    assert recover_transfer_signer(record, sig, 31337) == account.address
    assert recover_transfer_signer(record, sig, 1) != account.address  # bound to the chain id
    assert recover_transfer_signer({**record, "to": THIRD.address}, sig, 31337) != account.address
    assert recover_transfer_signer(record, "0x1234", 31337) is None


# -- the ledger --------------------------------------------------------------------------------------------------
def test_owner_transfers_and_the_new_owner_transfers_on(two_works, account, other_account):
    led = two_works
    assert led.owner(1) == account.address and led.history(1) == []
    t = led.append_transfer(1, other_account.address.lower(), account)
    assert (t.work_id, t.entry_seq, t.from_address, t.to_address) == (1, 3, account.address, other_account.address)
    assert led.owner(1) == other_account.address and led.owner(2) == account.address
    led.append_transfer(1, THIRD.address, other_account)
    assert led.owner(1) == THIRD.address
    assert [(h.from_address, h.to_address) for h in led.history(1)] == [
        (account.address, other_account.address), (other_account.address, THIRD.address)]
    assert led.work(1).registrant == account.address  # the works row keeps the original registrant
    report = led.verify()
    assert (report.entries, report.works) == (4, 2)


def test_a_non_owner_cannot_transfer(two_works, account, other_account):
    led = two_works
    with pytest.raises(UsageError, match=f"its current owner is {account.address}"):
        led.append_transfer(1, THIRD.address, other_account)
    led.append_transfer(1, other_account.address, account)
    with pytest.raises(UsageError, match=f"its current owner is {other_account.address}"):
        led.append_transfer(1, THIRD.address, account)  # the registrant no longer owns it
    assert led.size() == 3 and led.owner(1) == other_account.address


def test_transfer_refuses_bad_input(two_works, account):
    with pytest.raises(UsageError, match="not an Ethereum address"):
        two_works.append_transfer(1, "0x1234", account)
    with pytest.raises(UsageError, match="no work with id 9"):
        two_works.append_transfer(9, THIRD.address, account)
    with pytest.raises(UsageError, match="already belongs"):
        two_works.append_transfer(1, account.address, account)
    assert two_works.size() == 2


def test_forged_transfer_by_a_non_owner_is_caught(two_works, other_account):
    led = two_works
    # Mallory signs, honestly naming herself as sender, a transfer of work 1 to herself... of someone else's work.
    insert_entry(led, 2, "transfer", 1, transfer_payload(led, 1, other_account.address, THIRD.address, other_account))
    with pytest.raises(TamperedLedgerError, match="who does not own it") as info:
        led.verify()
    assert info.value.seq == 2
    assert str(info.value).endswith(f"(its owner at that point is {led.work(1).registrant})")


def test_forged_transfer_claiming_the_owner_as_sender_is_caught(two_works, account, other_account):
    led = two_works
    insert_entry(led, 3, "transfer", 2, transfer_payload(led, 2, account.address, other_account.address,
                                                         other_account))
    with pytest.raises(TamperedLedgerError, match="entry 3: transfer signature does not match its sender"):
        led.verify()


def test_transfer_of_the_wrong_bytes_or_an_unknown_work_is_caught(two_works, account, other_account):
    led = two_works
    payload = transfer_payload(led, 1, account.address, other_account.address, account)
    payload["transfer"]["sha256"] = "cd" * 32
    payload["signature"] = sign_transfer(account, payload["transfer"], led.chain_id)
    insert_entry(led, 3, "transfer", 1, payload)
    with pytest.raises(TamperedLedgerError, match="not that of work 1"):
        led.verify()


def test_transfer_before_the_registration_is_caught(two_works, account, other_account):
    led = two_works
    insert_entry(led, 1, "transfer", 2, transfer_payload(led, 2, account.address, other_account.address, account))
    with pytest.raises(TamperedLedgerError, match="entry 1 transfers work 2, which is not registered before it"):
        led.verify()


# -- certificates ------------------------------------------------------------------------------------------------
@pytest.fixture
def transferred(two_works, account, other_account) -> Ledger:
    two_works.checkpoint()  # a checkpoint before the transfer: the certificate must prove to a later one
    two_works.append_transfer(1, other_account.address, account)
    two_works.append_transfer(1, THIRD.address, other_account)
    return two_works


def rehash(cert: dict) -> dict:
    cert["certificate_hash"] = certificate_hash(cert)
    return cert


def reason(result, level: str) -> str:
    return next(c.reason for c in result.checks if c.level == level)


def test_certificate_holds_and_verifies_the_transfer_history(transferred, account):
    cert = issue_certificate(transferred, 1)
    assert [t["entry"]["seq"] for t in cert["transfers"]] == [3, 4]
    assert cert["inclusion"]["tree_size"] == 4
    r = verify_certificate(json.loads(json.dumps(cert)))
    assert r.ok and r.level == "included", r.checks
    assert r.registrant == account.address and r.owner == THIRD.address
    assert reason(r, "signed").endswith(f"; 2 transfers, each signed by the owner, to the current owner {THIRD.address}")
    assert "(and its 2 transfer entries)" in reason(r, "included")


def test_certificate_without_transfers_names_the_registrant_as_owner(transferred, account):
    cert = issue_certificate(transferred, 2)
    assert cert["transfers"] == []
    r = verify_certificate(cert)
    assert r.ok and r.owner == account.address


def test_certificate_with_a_changed_recipient_fails(transferred, other_account):
    cert = issue_certificate(transferred, 1)
    cert["transfers"][1]["entry"]["payload"]["transfer"]["to"] = other_account.address
    r = verify_certificate(rehash(cert))
    assert not r.ok and r.owner is None
    assert reason(r, "signed").startswith("transfers[1] (entry 4): the transfer signature was made by 0x")
    assert reason(r, "signed").endswith(f"not by its sender {other_account.address}: the transfer record (workId,"
                                        " sha256, from, to, transferredAt) or its signature was changed")


def test_certificate_with_a_transfer_re_signed_by_a_non_owner_fails(transferred):
    cert = issue_certificate(transferred, 1)
    p = cert["transfers"][0]["entry"]["payload"]
    p["transfer"]["from"] = THIRD.address
    p["signature"] = sign_transfer(THIRD, p["transfer"], p["chain_id"])
    r = verify_certificate(rehash(cert))
    assert reason(r, "signed") == (f"transfers[0] (entry 3): {THIRD.address} transferred the work but did not own"
                                   f" it: its owner at that point was {cert['entry']['payload']['record']['registrant']}")
    # and the entry no longer hashes to what the proof covers
    assert reason(r, "included").startswith("transfers[0] (entry 3) hashes to ")


def test_certificate_with_a_bad_transfer_proof_fails(transferred):
    cert = issue_certificate(transferred, 1)
    step = cert["transfers"][0]["proof"][0]
    cert["transfers"][0]["proof"][0] = ("0" if step[0] != "0" else "1") + step[1:]
    r = verify_certificate(rehash(cert))
    assert [c.status for c in r.checks] == ["passed", "passed", "failed", "skipped", "skipped"]
    assert reason(r, "included") == (f"the inclusion proof of transfers[0] (entry 3) does not lead to the root"
                                     f" {cert['inclusion']['root'][:16]}… of 4 entries: a proof step or the"
                                     " transfer entry was changed")


def test_certificate_with_a_dropped_field_fails_the_format_check(transferred):
    cert = issue_certificate(transferred, 1)
    del cert["transfers"][0]["entry"]["payload"]["transfer"]["to"]
    r = verify_certificate(rehash(cert))
    assert reason(r, "format") == "transfers[0].entry.payload.transfer lacks to"


# -- the CLI -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cli_home", dbhelp.BACKENDS, indirect=True)
def test_cli_transfer_shows_in_works_show_and_the_certificate(cli_home, tmp_path, other_account):  # noqa: F811
    me = home_account().address
    result = run("transfer", "2", "--to", other_account.address)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"transferred work #2 from {me} to {other_account.address} (ledger entry 5)"
    shown = run("works", "show", "2").stdout
    assert f"registrant: {me}" in shown and f"owner: {other_account.address}" in shown
    assert f"transfer: {me} -> {other_account.address} at " in shown
    data = json.loads(run("works", "show", "2", "--json").stdout)
    assert data["owner"] == other_account.address and data["transfers"][0]["entry_seq"] == 5
    assert f"owner: {me}" in run("works", "show", "1").stdout

    again = run("transfer", "2", "--to", THIRD.address)  # the key no longer owns work 2
    assert again.exit_code == 2
    assert f"its current owner is {other_account.address}" in again.output

    cert_path = tmp_path / "cert.json"
    assert run("certificate", "2", "-o", str(cert_path)).exit_code == 0
    cert = json.loads(cert_path.read_text())
    assert [t["entry"]["payload"]["transfer"]["to"] for t in cert["transfers"]] == [other_account.address]
    verified = run("verify", str(cert_path))
    assert verified.exit_code == 0, verified.output
    assert f"owner (after the certificate's transfers): {other_account.address}" in verified.stdout
    with Ledger.open(config.ledger_target()) as led:
        assert led.verify().entries == 5


def test_a_certificate_shows_the_state_it_verified_while_another_process_transfers_the_work(two_works, account,
                                                                                            other_account):
    """Another connection transfers the work (and signs a checkpoint covering it) just after issue_certificate's
    verify: the certificate is issued from the verified state, without the transfer verify never checked; the next
    one carries it."""
    led = two_works
    led.checkpoint(account)
    verify = led.verify

    def verify_then_transfer():
        report = verify()
        with Ledger.open(led.target) as other:
            other.append_transfer(1, other_account.address, account)
            other.checkpoint(account)
        return report

    led.verify = verify_then_transfer
    cert = issue_certificate(led, 1)
    del led.verify
    assert cert["transfers"] == [] and cert["inclusion"]["tree_size"] == 2
    r = verify_certificate(json.loads(json.dumps(cert)))
    assert r.ok and r.owner == account.address
    later = issue_certificate(led, 1)
    assert [t["entry"]["seq"] for t in later["transfers"]] == [3] and later["inclusion"]["tree_size"] == 3
    assert verify_certificate(later).owner == other_account.address
