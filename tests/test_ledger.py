"""Tests for provenance.ledger: registration into a real SQLite file and a real PostgreSQL schema (the `ledger`
fixture here runs each test on both backends), tamper detection, idempotence, prior claims, checkpoints and
opening errors. Every tamper is done the way an attacker would: raw SQL on the file, or as a PostgreSQL
superuser who switches the append-only triggers off."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest

from provenance.sources import display
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

import provenance
from provenance import merkle
from provenance.errors import LedgerError, TamperedLedgerError, UsageError
from provenance.fingerprints import ALGORITHMS, ORB, PDQ, PHASH, SHA256, fingerprint
from provenance.ledger import Ledger, canonical_json, entry_hash
from provenance.signing import sign_registration

from dbhelp import raw_connection

N_WORKS = 6  # files in examples/works


def register_all(ledger, paths, account, **kw):
    kw.setdefault("artist", "Aigerim")
    kw.setdefault("license", "CC BY-NC 4.0")
    return list(provenance.register(ledger, [Path(p) for p in paths], account, workers=1, **kw).results)


@pytest.fixture
def ledger(any_ledger) -> Ledger:
    return any_ledger


def raw(ledger: Ledger, *statements: tuple) -> None:
    """Run SQL on the ledger through a separate connection, as someone with the file (or a superuser) would."""
    with raw_connection(ledger) as conn:
        for sql, *params in statements:
            conn.execute(sql, *params)


def count(ledger: Ledger, table: str) -> int:
    return ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def rewrite_entry(ledger: Ledger, seq: int, edit) -> None:
    """A careful forger: edit entry `seq`'s payload and recompute the hash chain from there on.

    Only what the chain cannot protect is left to catch it: signatures and checkpoints.
    """
    with raw_connection(ledger) as conn:
        rows = conn.execute("SELECT seq, kind, work_id, recorded_at, payload, prev_hash FROM entries"
                            " WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
        prev = rows[0][5]
        for s, kind, work_id, at, text, _ in rows:
            if s == seq:
                payload = json.loads(text)
                edit(payload)
                text = canonical_json(payload)
            digest = entry_hash(s, kind, work_id, at, text, prev)
            conn.execute("UPDATE entries SET payload = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                         (text, prev, digest, s))
            prev = digest


@pytest.fixture
def registered(ledger, works_dir, account) -> Ledger:
    results = register_all(ledger, [works_dir], account)
    assert [r.error for r in results] == [None] * N_WORKS
    return ledger


# -- registration ------------------------------------------------------------------------------------------------

def test_register_examples_then_verify(ledger, works_dir, account):
    results = register_all(ledger, [works_dir], account)

    assert len(results) == N_WORKS
    assert all(r.created and r.error is None for r in results)
    assert sorted(r.work_id for r in results) == list(range(1, N_WORKS + 1))
    assert {Path(r.item).name for r in results} == {p.name for p in works_dir.iterdir()}

    works = ledger.works()
    by_title = {w.title: w for w in works}
    blobs = ledger.local_features(ORB)
    assert sorted(blobs) == [w.id for w in works]
    for r in results:
        w = by_title[r.title]
        data = Path(r.item).read_bytes()
        assert w.sha256 == hashlib.sha256(data).hexdigest()
        assert w.registrant == account.address
        assert (w.artist, w.license) == ("Aigerim", "CC BY-NC 4.0")
        assert set(w.fingerprints) == set(ALGORITHMS)
        # The stored fingerprints are exactly what the pure function computes from the file.
        fresh = fingerprint(data)
        assert {a: f.value for a, f in w.fingerprints.items()} == {f.algorithm: f.value for f in fresh.fingerprints}
        assert (w.width, w.height) == (fresh.width, fresh.height)
        # The local features are kept beside the entry, which records their hash.
        assert blobs[w.id] == fresh.local_features
        assert hashlib.sha256(blobs[w.id]).hexdigest() == w.fingerprints[ORB].value

    report = ledger.verify()
    assert (report.entries, report.works, report.checkpoints) == (N_WORKS, N_WORKS, 1)


def test_register_is_idempotent(registered, works_dir, account):
    before = registered.works()
    checkpoints = registered.checkpoints()

    again = register_all(registered, [works_dir], account, license="a different licence")

    assert len(again) == N_WORKS
    assert all(r.created is False and r.error is None for r in again)
    assert sorted(r.work_id for r in again) == [w.id for w in before]
    assert registered.works() == before  # same rows: nothing re-registered, the licence did not change
    assert count(registered, "entries") == N_WORKS
    assert registered.checkpoints() == checkpoints  # nothing new, so no new checkpoint
    registered.verify()


def test_file_name_that_is_not_utf8_does_not_end_the_batch(ledger, works_dir, account, tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    names = ["a.png", os.fsdecode(b"\xffold-archive.png"), "\uff3a-last.png"]  # sorted: the odd one is mid-batch
    for name, src in zip(names, ["flow-field.png", "tiled-mandala.png", "geometric-poster.png"]):
        (folder / name).write_bytes((works_dir / src).read_bytes())

    results = register_all(ledger, [folder], account)

    # Items are printable text: the undecodable byte is shown as U+FFFD, never as a lone surrogate.
    assert sorted(Path(r.item).name for r in results) == sorted(display(n) for n in names)
    assert "\ufffdold-archive.png" in {Path(r.item).name for r in results}
    ok = [r for r in results if r.error is None]
    assert {Path(r.item).name for r in ok} >= {"a.png", "\uff3a-last.png"}
    assert len(ledger.works()) == len(ok)
    ledger.verify()


# -- prior claims --------------------------------------------------------------------------------------------------

def _flipped_copy(src: Path, dest: Path) -> Path:
    with Image.open(src) as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(dest)
    return dest


def test_flipped_copy_by_another_key_records_prior_claim(registered, works_dir, other_account, tmp_path):
    original = next(w for w in registered.works() if w.title == "brush-abstract.jpg")
    copy = _flipped_copy(works_dir / "brush-abstract.jpg", tmp_path / "flipped.png")

    [result] = register_all(registered, [copy], other_account, artist="Someone else")

    assert result.created
    assert [(c["work_id"], c["transform"]) for c in result.prior_claims] == [(original.id, "flipped horizontally")]
    # The claim is part of the signed ledger entry, not just of this return value.
    assert registered.work(result.work_id).prior_claims == result.prior_claims
    registered.verify()


def test_flipped_copy_by_same_key_is_no_prior_claim(registered, works_dir, account, tmp_path):
    copy = _flipped_copy(works_dir / "brush-abstract.jpg", tmp_path / "brush-mirrored.png")

    [result] = register_all(registered, [copy], account)

    assert result.created and result.work_id == N_WORKS + 1
    assert result.prior_claims == []
    assert registered.work(result.work_id).prior_claims == []


def test_same_bytes_by_another_key_is_a_new_work_with_prior_claim(registered, works_dir, other_account):
    original = next(w for w in registered.works() if w.title == "sunset-hills.jpg")

    [result] = register_all(registered, [works_dir / "sunset-hills.jpg"], other_account)

    assert result.created and result.work_id == N_WORKS + 1
    [claim] = result.prior_claims
    assert claim["work_id"] == original.id
    assert claim["signal"] in ("sha256/1", "pdq/1")
    assert claim["distance"] == 0
    new = registered.work(result.work_id)
    assert (new.sha256, new.registrant) == (original.sha256, other_account.address)
    assert registered.verify().works == N_WORKS + 1


# -- tampering -----------------------------------------------------------------------------------------------------

def _edit_payload_title(led):
    text = led.conn.execute("SELECT payload FROM entries WHERE seq = 3").fetchone()[0]
    payload = json.loads(text)
    payload["record"]["title"] = "Stolen"
    raw(led, ("UPDATE entries SET payload = ? WHERE seq = 3", (canonical_json(payload),)))


def _swap_entries(led):
    raw(led, ("UPDATE entries SET seq = -1 WHERE seq = 2",), ("UPDATE entries SET seq = 2 WHERE seq = 4",),
        ("UPDATE entries SET seq = 4 WHERE seq = -1",))


def _insert_work_without_entry(led):
    w = led.work(1)
    raw(led, ("INSERT INTO works VALUES (7, ?, 'Fake', 'Mallory', 'CC0', 10, 10, '2024-01-01',"
              " '2024-01-01T00:00:00Z', ?, ?, '[]', 6)", ("ab" * 32, w.registrant, w.signature)))


def _delete_last_entry_and_its_rows(led):
    # A consistent truncation: the chain, the works and the fingerprints all still agree; only the checkpoint knows.
    raw(led, ("DELETE FROM entries WHERE seq = 6",), ("DELETE FROM fingerprints WHERE work_id = 6",),
        ("DELETE FROM local_features WHERE work_id = 6",), ("DELETE FROM works WHERE id = 6",))


def _edit_fingerprint(led):
    value = led.conn.execute("SELECT value FROM fingerprints WHERE work_id = 4 AND algorithm = 'pdq/1'").fetchone()[0]
    flipped = format(int(value, 16) ^ 1, "064x")
    raw(led, ("UPDATE fingerprints SET value = ? WHERE work_id = 4 AND algorithm = 'pdq/1'", (flipped,)))


def _edit_local_features(led):
    blob = led.local_features(ORB)[3]
    raw(led, ("UPDATE local_features SET data = ? WHERE work_id = 3", (blob[:-1] + bytes([blob[-1] ^ 1]),)))


def _swap_local_features(led):
    # Two genuine blobs, each under the other's work: every blob still decodes, only the entry hashes disagree.
    blobs = led.local_features(ORB)
    raw(led, ("UPDATE local_features SET data = ? WHERE work_id = 2", (blobs[5],)),
        ("UPDATE local_features SET data = ? WHERE work_id = 5", (blobs[2],)))


TAMPERS = {
    "edit entry payload": (_edit_payload_title, "entry 3 was edited", 3),
    "edit works title": (lambda led: raw(led, ("UPDATE works SET title = 'Stolen' WHERE id = 2",)),
                         "works row 2 was edited (title)", 2),
    "edit fingerprint": (_edit_fingerprint, "fingerprints of work 4 were edited", 4),
    "edit local features": (_edit_local_features, "orb/5 features of work 3 were edited", 3),
    "swap local features": (_swap_local_features, "orb/5 features of work 2 were edited", 2),
    "delete middle entry": (lambda led: raw(led, ("DELETE FROM entries WHERE seq = 3",)), "entry 3 is missing", 3),
    "delete last entry": (_delete_last_entry_and_its_rows, "checkpoint 6 covers 6 entries but only 5 exist", 6),
    "reorder entries": (_swap_entries, "entry 2 does not follow entry 1", 2),
    "insert works row": (_insert_work_without_entry, "works row 7 has no ledger entry", None),
    "delete works row": (lambda led: raw(led, ("DELETE FROM works WHERE id = 5",)), "works row 5 was deleted", 5),
    "edit checkpoint root": (lambda led: raw(led, ("UPDATE checkpoints SET root = ?", ("00" * 32,))),
                             "no longer have the Merkle root recorded in checkpoint 6", 6),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_is_detected_and_named(registered, tamper):
    registered.verify()
    edit, message, seq = TAMPERS[tamper]

    edit(registered)

    with pytest.raises(TamperedLedgerError, match=re.escape(message)) as info:
        registered.verify()
    assert info.value.seq == seq


def test_deleted_local_features_are_detected(registered):
    raw(registered, ("DELETE FROM local_features WHERE work_id = 4",))

    with pytest.raises(TamperedLedgerError, match="work 4") as info:
        registered.verify()
    assert info.value.seq == 4


def test_signature_by_another_key_is_detected(registered, other_account):
    """Another valid key's signature over the very same record, with the hash chain recomputed around it."""
    work = registered.work(3)
    payload = json.loads(registered.conn.execute("SELECT payload FROM entries WHERE seq = 3").fetchone()[0])
    forged = sign_registration(other_account, payload["record"], registered.chain_id)
    assert forged != work.signature

    def swap_signature(p):
        p["signature"] = forged

    rewrite_entry(registered, 3, swap_signature)
    raw(registered, ("UPDATE works SET signature = ? WHERE id = 3", (forged,)))

    with pytest.raises(TamperedLedgerError, match="entry 3: signature does not match the registrant") as info:
        registered.verify()
    assert info.value.seq == 3


def test_edited_title_with_recomputed_chain_is_caught_by_signature(registered):
    def retitle(p):
        p["record"]["title"] = "Stolen"

    rewrite_entry(registered, 2, retitle)
    raw(registered, ("UPDATE works SET title = 'Stolen' WHERE id = 2",))

    with pytest.raises(TamperedLedgerError, match="entry 2: signature does not match") as info:
        registered.verify()
    assert info.value.seq == 2


def test_resigned_entry_with_recomputed_chain_is_caught_by_checkpoint(registered, other_account):
    """A forger who re-signs a work as their own and rewrites the chain and projection: only the checkpoint knows."""
    def steal(p):
        p["record"]["registrant"] = other_account.address
        p["signature"] = sign_registration(other_account, p["record"], registered.chain_id)

    rewrite_entry(registered, 5, steal)
    payload = json.loads(registered.conn.execute("SELECT payload FROM entries WHERE seq = 5").fetchone()[0])
    raw(registered, ("UPDATE works SET registrant = ?, signature = ? WHERE id = 5",
                     (other_account.address, payload["signature"])))

    with pytest.raises(TamperedLedgerError, match="Merkle root recorded in checkpoint 6") as info:
        registered.verify()
    assert info.value.seq == 6


def test_deleting_only_the_last_entry_is_reported_by_the_checkpoint(registered):
    raw(registered, ("DELETE FROM entries WHERE seq = 6",))

    with pytest.raises(TamperedLedgerError, match="checkpoint 6 covers 6 entries but only 5 exist") as info:
        registered.verify()
    assert info.value.seq == 6


def test_second_entry_for_an_existing_work_id_is_detected(registered, other_account):
    """Anyone may append; nobody may re-register work 3 under its id: that would rewrite whose work it is."""
    with raw_connection(registered) as conn:
        last_seq, prev = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        [[at, text]] = conn.execute("SELECT recorded_at, payload FROM entries WHERE seq = 3").fetchall()
        payload = json.loads(text)
        payload["record"].update(registrant=other_account.address, artist="Mallory")
        payload["signature"] = sign_registration(other_account, payload["record"], registered.chain_id)
        seq, text = last_seq + 1, canonical_json(payload)
        conn.execute("INSERT INTO entries VALUES (?, 'register', 3, ?, ?, ?, ?)",
                     (seq, at, text, prev, entry_hash(seq, "register", 3, at, text, prev)))
        conn.execute("UPDATE works SET registrant = ?, artist = 'Mallory', signature = ?, entry_seq = ? WHERE id = 3",
                     (other_account.address, payload["signature"], seq))
    assert registered.work(3).artist == "Mallory"

    with pytest.raises(TamperedLedgerError, match="work 3|work id 3") as info:
        registered.verify()
    assert info.value.seq == seq


# -- round trip ----------------------------------------------------------------------------------------------------

_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["🎨 Sunset 🌅", 'say "hi"', "it's", "line one\nline two\r\n", "back\\slash", "\t\x00\x7f", ""]),
)


@pytest.fixture(scope="module")
def sample_fps(works_dir):
    return fingerprint((works_dir / "flow-field.png").read_bytes())


@settings(max_examples=40, deadline=None)
@given(title=_text, artist=_text, license=_text, created=_text)
@example(title="Nuit étoilée 🌌 \"quoted\"\n2nd line", artist="Айгерім 'A'", license="CC BY-NC 4.0 ©",
         created="2024-05-01")
def test_text_fields_round_trip(title, artist, license, created, account, sample_fps):
    record = {"sha256": sample_fps.sha256, "pdq": sample_fps.pdq.value, "phash": sample_fps.get(PHASH).value,
              "title": title, "artist": artist, "license": license, "created": created,
              "registeredAt": 1_714_521_600, "width": sample_fps.width, "height": sample_fps.height,
              "registrant": account.address}
    fps = [{"algorithm": SHA256, "value": sample_fps.sha256, "quality": None},
           {"algorithm": PDQ, "value": sample_fps.pdq.value, "quality": sample_fps.pdq.quality}]
    with tempfile.TemporaryDirectory() as d, Ledger.create(Path(d) / "ledger.db") as led:
        appended = led.append_work(record, sign_registration(account, record, led.chain_id), fps)
        led.checkpoint()

        [w] = led.works()
        assert appended.created and w.id == appended.work_id
        assert (w.title, w.artist, w.license, w.created) == (title, artist, license, created)
        assert w.registered_at == "2024-05-01T00:00:00Z"
        assert {a: (f.value, f.quality) for a, f in w.fingerprints.items()} == {
            f["algorithm"]: (f["value"], f["quality"]) for f in fps}
        assert led.verify().works == 1


# -- checkpoints ---------------------------------------------------------------------------------------------------

def test_checkpoint_roots_and_inclusion_proofs(ledger, works_dir, account):
    files = sorted(works_dir.iterdir())
    register_all(ledger, files[:3], account)
    register_all(ledger, files, account)  # 3 new, 3 already there

    hashes = ledger.entry_hashes()
    assert len(hashes) == N_WORKS
    assert [cp.size for cp in ledger.checkpoints()] == [3, N_WORKS]
    for cp in ledger.checkpoints():
        assert cp.root == merkle.root(hashes[: cp.size]).hex()
    root = merkle.root(hashes)
    assert ledger.verify().root == root.hex()

    for i, leaf in enumerate(hashes):
        proof = merkle.inclusion_proof(hashes, i)
        assert merkle.verify_inclusion(leaf, i, len(hashes), proof, root)
        assert not merkle.verify_inclusion(hashes[(i + 1) % len(hashes)], i, len(hashes), proof, root)
    old = ledger.checkpoints()[0]
    assert merkle.verify_consistency(old.size, len(hashes), bytes.fromhex(old.root), root,
                                     merkle.consistency_proof(hashes, old.size))


def test_checkpoints_are_signed_by_the_registering_key(ledger, works_dir, account, other_account):
    from provenance.signing import recover_checkpoint_signer, sign_checkpoint

    register_all(ledger, sorted(works_dir.iterdir())[:2], account)
    [cp] = ledger.checkpoints()
    assert cp.signer == account.address
    assert recover_checkpoint_signer(cp.record(ledger.ledger_id), cp.signature, ledger.chain_id) == account.address

    forged = sign_checkpoint(other_account, {**cp.record(ledger.ledger_id), "size": 1}, ledger.chain_id)
    raw(ledger, ("UPDATE checkpoints SET signature = ?", (forged,)))
    with pytest.raises(TamperedLedgerError, match=re.escape(f"checkpoint 2: the checkpoint signature does not match"
                                                            f" its signer {account.address}")) as info:
        ledger.verify()
    assert info.value.seq == 2
    raw(ledger, ("UPDATE checkpoints SET signature = ?, signer = ?", (cp.signature, other_account.address)))
    with pytest.raises(TamperedLedgerError, match=f"does not match its signer {other_account.address}"):
        ledger.verify()


def test_an_unsigned_checkpoint_is_signed_by_the_next_signer(ledger, account):
    from chainhelp import add_works

    add_works(ledger, account, 2)
    unsigned = ledger.checkpoint()
    assert unsigned.size == 2 and unsigned.signer is None
    signed = ledger.checkpoint(signer=account)
    assert (signed.size, signed.root, signed.signer) == (2, unsigned.root, account.address)
    assert ledger.checkpoints() == [signed] and ledger.checkpoint(signer=account) is None
    ledger.verify()


def test_a_schema_1_ledger_opens_upgraded_and_verifies(tmp_path):
    """tests/assets/ledgers/schema1-anchored.db was written by the provenance before signed checkpoints (3 works,
    anchored on an in-process EVM, then work 1 transferred): it must open, be upgraded in place, and verify."""
    import shutil

    path = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "assets" / "ledgers" / "schema1-anchored.db", path)
    with Ledger.open(path) as old:
        assert old.meta("schema_version") == "2"
        report = old.verify()
        assert (report.entries, report.works, report.checkpoints) == (4, 3, 2)
        assert [(cp.size, cp.signer) for cp in old.checkpoints()] == [(3, None), (4, None)]
    with Ledger.open(path) as again:  # upgraded once
        assert again.verify() == report


# -- opening and creating ------------------------------------------------------------------------------------------

def test_open_missing_file_hints_at_init(tmp_path):
    with pytest.raises(UsageError) as info:
        Ledger.open(tmp_path / "nope.db")
    assert "provenance init" in info.value.hint
    assert not (tmp_path / "nope.db").exists()


def test_open_sqlite_file_that_is_not_a_ledger(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()

    with pytest.raises(LedgerError, match="is not a provenance ledger"):
        Ledger.open(path)


def test_open_random_bytes_file(tmp_path):
    path = tmp_path / "noise.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(LedgerError, match=str(path)):
        Ledger.open(path)


def test_open_ledger_from_a_newer_version(tmp_path):
    Ledger.create(tmp_path / "ledger.db").close()
    conn = sqlite3.connect(tmp_path / "ledger.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer provenance") as info:
        Ledger.open(tmp_path / "ledger.db")
    assert "upgrade" in info.value.hint


def test_create_refuses_to_overwrite(registered, tmp_path):
    with pytest.raises(UsageError, match="already exists"):
        Ledger.create(registered.target)
    assert len(Ledger.open(registered.target).works()) == N_WORKS

    other = tmp_path / "notes.txt"
    other.write_text("not a ledger, but mine")
    with pytest.raises(UsageError, match="already exists"):
        Ledger.create(other)
    assert other.read_text() == "not a ledger, but mine"


def test_reopened_ledger_reads_the_same(registered):
    with Ledger.open(registered.target) as again:
        assert again.works() == registered.works()
        assert again.ledger_id == registered.ledger_id
        assert again.verify() == registered.verify()


# -- many artists in one registry (PostgreSQL) ---------------------------------------------------------------------

@pytest.mark.parametrize("sql", ["UPDATE entries SET payload = '{}' WHERE seq = 3", "DELETE FROM entries WHERE seq = 6",
                                 "UPDATE works SET registrant = '0x0' WHERE id = 2", "DELETE FROM fingerprints",
                                 "DELETE FROM local_features WHERE work_id = 1", "TRUNCATE entries CASCADE",
                                 "UPDATE checkpoints SET root = 'ff'", "DELETE FROM checkpoints"])
def test_the_server_refuses_to_change_or_delete_records(registered, sql):
    """On a shared PostgreSQL registry no client - another artist's, a buggy one - can rewrite what was appended."""
    if registered.path is not None:
        pytest.skip("a SQLite file is as writable as its owner makes it; verify() is the check there")
    with pytest.raises(registered.conn.Error, match="append-only"):
        registered.conn.execute(sql)
    assert registered.verify().entries == N_WORKS


def test_a_checkpoint_is_signed_once_on_the_server(ledger, account, other_account):
    from chainhelp import add_works

    add_works(ledger, account, 2)
    ledger.checkpoint()
    ledger.checkpoint(signer=account)
    if ledger.path is not None:
        pytest.skip("the rule is the server's (PostgreSQL)")
    with pytest.raises(ledger.conn.Error, match="append-only"):
        ledger.conn.execute("UPDATE checkpoints SET signer = ?, signature = NULL", (other_account.address,))
    ledger.verify()


# -- reads while others append -----------------------------------------------------------------------------------
def _another_writer(ledger: Ledger, account):
    """Another process registering one work and checkpointing it (its own connection, as `register` would)."""
    from chainhelp import add_works

    def append():
        with Ledger.open(ledger.target) as other:
            add_works(other, account, 1, start=100 + other.size())
            other.checkpoint()
    return append


def test_verify_reads_one_state_while_another_process_appends(ledger, account, monkeypatch):
    from chainhelp import add_works

    add_works(ledger, account, 2)
    ledger.checkpoint()
    append, checkpoints = _another_writer(ledger, account), ledger.checkpoints

    def appended_meanwhile():  # between verify's read of the entries and of the checkpoints and works
        append()
        return checkpoints()
    monkeypatch.setattr(ledger, "checkpoints", appended_meanwhile)
    report = ledger.verify()  # was: "checkpoint 3 covers 3 entries but only 2 exist", a false alarm
    assert (report.entries, report.works, report.checkpoints) == (2, 2, 1)
    monkeypatch.undo()
    assert ledger.verify().entries == 3


def test_the_index_rows_are_those_of_the_entries_they_claim_to_cover(ledger, account, monkeypatch):
    from chainhelp import add_works

    add_works(ledger, account, 2)
    append, execute = _another_writer(ledger, account), ledger.conn.execute

    class Read:
        def __init__(self, row):
            self.fetchone = lambda: row

    def execute_then_append(sql, params=()):
        if not sql.startswith("SELECT seq, entry_hash FROM entries"):
            return execute(sql, params)
        read = Read(execute(sql, params).fetchone())
        append()  # a registration commits between the statements of fingerprint_rows
        return read
    monkeypatch.setattr(ledger.conn, "execute", execute_then_append)
    rows, seq, digest, count = ledger.fingerprint_rows(ALGORITHMS)
    monkeypatch.undo()
    assert (len(rows), seq, count) == (2, 2, 2)
    assert digest == ledger.entry_hash_at(2)
