"""Commit-reveal for unpublished work: `register --private` records only a salted, signed commitment; `reveal`
publishes the registration with the salt, verify() and certificates tie it to the earlier commitment.

Forgeries are made as an attacker with the file (or a PostgreSQL superuser) would: raw SQL, with the hash chain
recomputed. The library tests run on both backends (`ledger` here is `any_ledger`)."""
from __future__ import annotations

import json
import os
import stat

import pytest
from chainhelp import add_works, cli_home, evm_chain, evm_web3, fund, run  # noqa: F401

from provenance import anchoring, config, register, reveal
from provenance.certificates import certificate_hash, issue_certificate, verify_certificate
from provenance.errors import TamperedLedgerError, UsageError
from provenance.ledger import Ledger, canonical_json, commitment_of, entry_hash

import dbhelp
from dbhelp import raw_connection


@pytest.fixture
def ledger(any_ledger) -> Ledger:
    return any_ledger


def commit_privately(ledger, account, works_dir, tmp_path, name="brush-abstract.jpg"):
    results = list(register(ledger, [works_dir / name], account, artist="Aigerim", title="Secret Study",
                            private=True, private_dir=tmp_path / "private").results)
    assert len(results) == 1 and results[0].error is None and results[0].commitment
    return results[0]


def rewrite_payload(ledger: Ledger, seq: int, edit) -> None:
    """A careful forger: edit the payload of entry `seq` and recompute the hash chain from there."""
    with raw_connection(ledger) as conn:
        rows = conn.execute("SELECT seq, kind, work_id, recorded_at, payload FROM entries ORDER BY seq").fetchall()
        prev = "00" * 32
        for s, kind, work_id, at, text in rows:
            if s == seq:
                payload = json.loads(text)
                edit(payload)
                text = canonical_json(payload)
            digest = entry_hash(s, kind, work_id, at, text, prev)
            conn.execute("UPDATE entries SET payload = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                         (text, prev, digest, s))
            prev = digest
        conn.execute("DELETE FROM checkpoints")


def _stored_bytes(ledger: Ledger) -> bytes:
    """Everything the database holds: the SQLite file (and its WAL), or every row of every table as text."""
    if ledger.path is not None:
        ledger.close()
        return b"".join(p.read_bytes() for p in ledger.path.parent.glob(ledger.path.name + "*"))
    return "\n".join(str(tuple(row)) for t in ledger.conn.tables()
                     for row in ledger.conn.execute(f"SELECT * FROM {t}")).encode()


def test_a_private_registration_leaks_nothing(ledger, account, works_dir, tmp_path):
    add_works(ledger, account, 1)
    r = commit_privately(ledger, account, works_dir, tmp_path)
    secret_file = tmp_path / "private" / f"{r.commitment}.json"
    secret = json.loads(secret_file.read_text())
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert secret["record"]["title"] == "Secret Study" and len(secret["salt"]) == 64
    assert commitment_of(secret["record"], secret["fingerprints"], secret["salt"]) == r.commitment
    ledger.verify()
    assert len(ledger.works()) == 1  # the private work is no work yet
    kind, work_id, payload = ledger.conn.execute("SELECT kind, work_id, payload FROM entries WHERE seq = ?",
                                                 (r.commit_seq,)).fetchone()
    assert kind == "commit" and work_id is None
    assert set(json.loads(payload)) == {"commit", "signature", "chain_id"}
    assert set(json.loads(payload)["commit"]) == {"commitment", "registrant", "committedAt"}
    raw = _stored_bytes(ledger)
    secrets = [secret["record"]["title"], secret["record"]["sha256"], secret["record"]["pdq"],
               secret["record"]["phash"], secret["salt"], *(f["value"] for f in secret["fingerprints"])]
    for s in secrets:
        assert s.encode() not in raw, s
    assert r.commitment.encode() in raw


def test_reveal_links_the_registration_to_the_commit(ledger, account, works_dir, tmp_path):
    r = commit_privately(ledger, account, works_dir, tmp_path)
    add_works(ledger, account, 2)  # others register in between
    out = reveal(ledger, r.commit_seq, account, private_dir=tmp_path / "private")
    assert out.created and out.commit_seq == r.commit_seq and out.commitment == r.commitment
    work = ledger.work(out.work_id)
    assert work.title == "Secret Study" and work.entry_seq > r.commit_seq
    payload = json.loads(ledger.conn.execute("SELECT payload FROM entries WHERE seq = ?",
                                             (work.entry_seq,)).fetchone()[0])
    assert payload["reveals"]["commit_seq"] == r.commit_seq
    assert commitment_of(payload["record"], payload["fingerprints"], payload["reveals"]["salt"]) == r.commitment
    assert ledger.local_features("orb/5").get(out.work_id) is not None
    assert ledger.verify().works == 3
    assert not reveal(ledger, r.commitment, account, private_dir=tmp_path / "private").created  # idempotent


def test_reveal_of_an_unknown_commitment_is_a_usage_error(ledger, account, tmp_path):
    add_works(ledger, account, 1)
    with pytest.raises(UsageError, match="not a commitment"):
        reveal(ledger, 1, account, private_dir=tmp_path)
    with pytest.raises(UsageError, match="no private record"):
        reveal(ledger, "ab" * 32, account, private_dir=tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["reveals"].update(salt="00" * 32), "do not recompute the commitment of entry 1"),
    (lambda p: p["fingerprints"].pop(), "do not recompute the commitment of entry 1"),
    (lambda p: p["reveals"].update(commit_seq=2), "reveals entry 2, which is not an earlier commitment"),
], ids=["salt", "fingerprints", "commit-seq"])
def test_a_tampered_reveal_is_caught(ledger, account, works_dir, tmp_path, edit, message):
    r = commit_privately(ledger, account, works_dir, tmp_path)
    seq = ledger.work(reveal(ledger, r.commitment, account, private_dir=tmp_path / "private").work_id).entry_seq
    ledger.verify()
    rewrite_payload(ledger, seq, edit)
    with pytest.raises(TamperedLedgerError, match=message):
        ledger.verify()


def test_a_second_reveal_of_one_commitment_is_caught(ledger, account, works_dir, tmp_path):
    """A forger copies the reveal as a new work: it opens the commitment too, but one commitment dates one work."""
    r = commit_privately(ledger, account, works_dir, tmp_path)
    first = ledger.work(reveal(ledger, r.commitment, account, private_dir=tmp_path / "private").work_id)
    seq, text, prev = ledger.conn.execute("SELECT e.seq, e.payload, e.entry_hash FROM entries e WHERE seq ="
                                          " (SELECT MAX(seq) FROM entries)").fetchone()
    assert seq == first.entry_seq
    at = "2026-01-01T00:00:00Z"
    with raw_connection(ledger) as conn:
        conn.execute("INSERT INTO entries VALUES (?, 'register', ?, ?, ?, ?, ?)",
                     (seq + 1, first.id + 1, at, text, prev,
                      entry_hash(seq + 1, "register", first.id + 1, at, text, prev)))
    with pytest.raises(TamperedLedgerError, match=rf"^entry {seq + 1} reveals the commitment of entry {r.commit_seq}"
                                                  rf" again \(entry {seq} revealed it already\)$"):
        ledger.verify()


def test_a_re_signed_record_does_not_open_the_commitment(ledger, account, works_dir, tmp_path):
    """Even a forger with the key cannot move the date: a changed title is signed again but the salt does not fit."""
    from provenance.signing import sign_registration

    r = commit_privately(ledger, account, works_dir, tmp_path)
    seq = ledger.work(reveal(ledger, r.commitment, account, private_dir=tmp_path / "private").work_id).entry_seq

    def retitle(p):
        p["record"]["title"] = "Another Title"
        p["signature"] = sign_registration(account, p["record"], ledger.chain_id)
    rewrite_payload(ledger, seq, retitle)
    with raw_connection(ledger) as conn:
        conn.execute("UPDATE works SET title = 'Another Title'")
    with pytest.raises(TamperedLedgerError, match="do not recompute the commitment of entry 1"):
        ledger.verify()


def test_a_commit_signed_by_another_key_is_caught(ledger, account, other_account, works_dir, tmp_path):
    from provenance.signing import sign_commitment

    commit_privately(ledger, account, works_dir, tmp_path)

    def resign(p):
        p["signature"] = sign_commitment(other_account, p["commit"], ledger.chain_id)
    rewrite_payload(ledger, 1, resign)
    with pytest.raises(TamperedLedgerError, match="entry 1: commitment signature does not match the registrant"):
        ledger.verify()


# -- certificates ------------------------------------------------------------------------------------------------
@pytest.fixture
def w3():
    return evm_web3()


def test_the_certificate_of_a_revealed_work_proves_the_earlier_date(backend, tmp_path, w3, account, works_dir):
    fund(w3, account.address)
    with Ledger.create(backend, chain_id=w3.eth.chain_id) as ledger:
        chain = evm_chain(w3, ledger, account)
        add_works(ledger, account, 1)
        r = commit_privately(ledger, account, works_dir, tmp_path)
        early = anchoring.anchor(ledger, chain).anchor  # the commitment is anchored while the work is unpublished
        add_works(ledger, account, 2, start=2)
        out = reveal(ledger, r.commitment, account, private_dir=tmp_path / "private")
        late = anchoring.anchor(ledger, chain).anchor
        cert = issue_certificate(ledger, out.work_id)

    assert cert["commit"]["entry"]["seq"] == r.commit_seq == 2
    assert cert["commit"]["anchor"]["tx_hash"] == early.tx_hash and cert["anchor"]["tx_hash"] == late.tx_hash
    assert cert["commit"]["inclusion"]["tree_size"] == 2 < cert["inclusion"]["tree_size"]
    for result in (verify_certificate(cert), verify_certificate(cert, w3=w3)):
        assert result.ok and result.level == "anchored", result.checks
        included = next(c for c in result.checks if c.level == "included").reason
        assert f"committed as entry 2 no later than block {early.block_number}" in included

    def forged(edit):
        bad = json.loads(json.dumps(cert))
        edit(bad)
        bad["certificate_hash"] = certificate_hash(bad)
        return verify_certificate(bad)

    bad = forged(lambda c: c["entry"]["payload"]["reveals"].update(salt="11" * 32))
    assert not bad.ok and "do not recompute the commitment" in next(c for c in bad.checks if c.level == "signed").reason
    bad = forged(lambda c: c["commit"]["inclusion"]["proof"].reverse() or c["commit"]["inclusion"].update(
        proof=["00" * 32, *c["commit"]["inclusion"]["proof"][1:]]))
    assert not bad.ok and "inclusion proof of commit.entry" in next(c for c in bad.checks
                                                                    if c.level == "included").reason
    bad = forged(lambda c: c.pop("commit"))
    assert not bad.ok and "come together" in next(c for c in bad.checks if c.level == "signed").reason


@pytest.mark.parametrize("cli_home", dbhelp.BACKENDS, indirect=True)
def test_cli_register_private_then_reveal(cli_home, works_dir):
    res = run("register", str(works_dir / "flow-field.png"), "--private", "--json")
    assert res.exit_code == 0, res.output
    line = json.loads(res.output.splitlines()[0])
    assert line["commitment"] and line["work_id"] is None
    assert (config.data_dir() / "private" / f"{line['commitment']}.json").exists()
    res = run("reveal", line["commitment"], "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["work_id"] == 5 and out["commit_seq"] == line["commit_seq"] and out["created"]
    assert run("ledger", "verify").exit_code == 0
