"""Evidence packets: the files and their hashes, the certificate, the ledger timestamp, idempotence, tampering.
On both backends (`scanned`); tampering is done past provenance (dbhelp.raw_connection)."""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest
from click.testing import CliRunner

from cli.main import cli
from provenance import merkle
from provenance.certificates import VerificationError, verify_certificate
from provenance.errors import TamperedLedgerError, UsageError
from provenance.evidence import make_evidence, verify_evidence
from provenance.ledger import canonical_json
from provenance.scanlog import ScanLog
from provenance.signing import sign_checkpoint

from dbhelp import db_args, raw_connection


def _match(led, name: str):
    log = ScanLog(led)
    try:
        return next(m for m in log.matches() if m.item.endswith(name))
    finally:
        log.close()


def _evidence_entries(led) -> list:
    return led.conn.execute("SELECT seq, payload FROM entries WHERE kind = 'evidence'").fetchall()


def test_packet_files_hashes_certificate_and_timestamp(scanned, tmp_path, feed_dir):
    m = _match(scanned, "post_04.jpg")  # Brush Abstract, flipped
    before = scanned.size()
    p = make_evidence(scanned, m.id, tmp_path / "ev")
    d = tmp_path / "ev"

    copy = (feed_dir / "post_04.jpg").read_bytes()
    assert p.files[f"{m.sha256}.jpg"] == m.sha256 == hashlib.sha256(copy).hexdigest()
    assert (d / f"{m.sha256}.jpg").read_bytes() == copy
    manifest_bytes = (d / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert manifest_bytes == canonical_json(manifest).encode()
    assert sorted(f["name"] for f in manifest["files"]) == sorted([f"{m.sha256}.jpg", "certificate.json",
                                                                   "match.json", "notice.txt"])
    for f in manifest["files"]:
        body = (d / f["name"]).read_bytes()
        assert (hashlib.sha256(body).hexdigest(), len(body)) == (f["sha256"], f["bytes"])
    assert p.packet_sha256 == hashlib.sha256(manifest_bytes).hexdigest()

    facts = json.loads((d / "match.json").read_text())
    assert facts["match"]["explanation"] == "flipped horizontally: pHash distance 0/64 (threshold 6)"
    assert facts["work"]["title"] == "Brush Abstract" and facts["found"]["item"].endswith("post_04.jpg")
    cert = json.loads((d / "certificate.json").read_text())
    result = verify_certificate(cert, image_bytes=copy)
    assert result.ok and result.work_id == m.work_id and result.level == "included"  # not anchored yet
    assert [c.status for c in result.checks if c.level == "image"] == ["passed"]  # the copy is the work

    assert scanned.size() == before + 1
    [(seq, payload)] = _evidence_entries(scanned)
    assert json.loads(payload) == {"packet_sha256": p.packet_sha256, "match_id": m.id, "work_id": m.work_id}
    assert scanned.verify().entries == seq == p.entry_seq
    stamp = json.loads((d / "timestamp.json").read_text())
    inc = stamp["inclusion"]
    assert stamp["anchor"] is None and "run `provenance anchor`" in stamp["note"]
    assert merkle.verify_inclusion(bytes.fromhex(p.entry_hash), inc["leaf_index"], inc["tree_size"],
                                   [bytes.fromhex(x) for x in inc["proof"]], bytes.fromhex(inc["root"]))
    assert inc["root"] == scanned.checkpoints()[-1].root  # checkpointed right away
    assert "timestamp.json" not in p.files
    assert verify_evidence(d)[0].startswith("files     4 files")


def test_notice_is_filled_in_with_placeholders_for_the_rest(scanned, tmp_path):
    m = _match(scanned, "post_04.jpg")
    make_evidence(scanned, m.id, tmp_path)
    notice = (tmp_path / "notice.txt").read_text()
    work = scanned.work(m.work_id)

    for fact in (work.title, work.artist, work.registrant, work.registered_at, scanned.ledger_id, m.sha256,
                 "flipped horizontally", "good faith belief", "under penalty of perjury"):
        assert fact in notice
    assert notice.count("[EDIT ME") >= 6 and "Signature: [EDIT ME" in notice
    assert "post_04.jpg" in notice and "WARNING" not in notice


def test_making_it_again_is_idempotent_even_after_anchoring(scanned, tmp_path, account):
    m = _match(scanned, "post_04.jpg")
    first = make_evidence(scanned, m.id, tmp_path / "a")
    again = make_evidence(scanned, m.id, tmp_path / "b")
    assert (again.packet_sha256, again.entry_seq, again.created) == (first.packet_sha256, first.entry_seq, False)
    assert len(_evidence_entries(scanned)) == 1

    # A mined anchor over every entry (as `provenance anchor` records it): the packet stays, the timestamp gains it.
    size, root = scanned.size(), merkle.root(scanned.entry_hashes()).hex()
    scanned.ensure_chain_tables()
    contract = "0x" + "c0" * 20
    signature = sign_checkpoint(account, {"ledgerId": scanned.ledger_id, "size": size, "root": root}, 31337, contract)
    scanned.conn.execute("INSERT INTO anchors (chain_id, instance, contract, root, size, first_entry, tx_hash,"
                         " block_number, block_timestamp, sender, recorded_at, checkpoint_signer, checkpoint_signature)"
                         " VALUES (31337, 'test', ?, ?, ?, 1, ?, 7, 1767225600, ?, 'now', ?, ?)",
                         (contract, "0x" + root, size, "0x" + secrets.token_hex(32), account.address, account.address,
                          signature))
    anchored = make_evidence(scanned, m.id, tmp_path / "a")
    assert (anchored.packet_sha256, anchored.created) == (first.packet_sha256, False)
    stamp = json.loads((tmp_path / "a" / "timestamp.json").read_text())
    assert stamp["anchor"]["block_number"] == 7 and stamp["inclusion"]["root"] == root
    assert any(line.startswith("anchored  root anchored in block 7") for line in verify_evidence(tmp_path / "a"))
    scanned.verify()


def test_tampering_with_the_evidence_entry_is_caught(scanned, tmp_path):
    m = _match(scanned, "post_04.jpg")
    p = make_evidence(scanned, m.id, tmp_path)
    payload = json.loads(_evidence_entries(scanned)[0][1])
    payload["packet_sha256"] = "ab" * 32
    with raw_connection(scanned) as conn:  # PostgreSQL's append-only rule refuses provenance's own connection
        conn.execute("UPDATE entries SET payload = ? WHERE seq = ?", (canonical_json(payload), p.entry_seq))

    with pytest.raises(TamperedLedgerError, match=f"entry {p.entry_seq} was edited"):
        scanned.verify()


def test_a_malformed_evidence_entry_is_caught_even_with_a_good_hash(scanned):
    from provenance.ledger import entry_hash

    c = scanned.conn
    seq, prev = scanned.size() + 1, c.execute("SELECT entry_hash FROM entries ORDER BY seq DESC").fetchone()[0]
    text = canonical_json({"packet_sha256": "not hex", "match_id": 1, "work_id": 1})
    c.execute("INSERT INTO entries VALUES (?, 'evidence', 1, 'now', ?, ?, ?)",
              (seq, text, prev, entry_hash(seq, "evidence", 1, "now", text, prev)))
    with pytest.raises(TamperedLedgerError, match=f"entry {seq}: an evidence entry holds exactly"):
        scanned.verify()


def test_tampering_with_a_packet_file_is_caught(scanned, tmp_path):
    m = _match(scanned, "post_04.jpg")
    make_evidence(scanned, m.id, tmp_path)
    notice = tmp_path / "notice.txt"
    notice.write_text(notice.read_text().replace("Brush Abstract", "Something Else"))

    with pytest.raises(VerificationError, match="notice.txt was changed"):
        verify_evidence(tmp_path)


def test_an_allowed_match_is_refused_unless_forced(scanned, tmp_path):
    m = _match(scanned, "post_08.jpg")
    assert m.allowed_by == 1
    with pytest.raises(UsageError, match=f"match {m.id} is an allowed use, not a copy: rule #1"):
        make_evidence(scanned, m.id, tmp_path / "no")
    assert not (tmp_path / "no").exists() and _evidence_entries(scanned) == []

    p = make_evidence(scanned, m.id, tmp_path / "yes", force_allowed=True)
    assert p.allowed_by == 1
    assert (tmp_path / "yes" / "notice.txt").read_text().startswith("!! WARNING: your allow rule #1")
    assert json.loads((tmp_path / "yes" / "match.json").read_text())["match"]["allowed_by"]["note"] == "my own repost"


def test_cli_evidence(scanned, tmp_path):
    runner = CliRunner()
    m = _match(scanned, "post_04.jpg")
    base = [*db_args(scanned), "evidence"]
    r = runner.invoke(cli, [*base, str(m.id), "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert f"wrote evidence packet of match {m.id} (work #{m.work_id})" in r.output
    assert "appended as ledger entry" in r.output and "not anchored yet" in r.output

    r = runner.invoke(cli, [*base, str(m.id), "-o", str(tmp_path / "ev"), "--json"])
    out = json.loads(r.output)
    assert r.exit_code == 0 and out["created"] is False and out["match_id"] == m.id

    r = runner.invoke(cli, [*base, "999", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "error: no match with id 999" in r.output and "Traceback" not in r.output
    allowed = _match(scanned, "post_08.jpg")
    r = runner.invoke(cli, [*base, str(allowed.id), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "is an allowed use" in r.output and "--force" in r.output
    r = runner.invoke(cli, [*base, str(allowed.id), "-o", str(tmp_path / "x"), "--force"])
    assert r.exit_code == 0 and "warning: match" in r.output


def test_every_new_command_has_help():
    runner = CliRunner()
    for cmd in ("report", "evidence", "matches"):
        r = runner.invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0 and len(r.output) > 100
