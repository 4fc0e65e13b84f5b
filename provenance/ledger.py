"""The append-only, tamper-evident ledger: a plain SQLite file you can open in Datasette, or a PostgreSQL
database shared by many artists and workers (see storage.py: the same tables and SQL on both).

Tables
  entries      the log itself: one row per event, each hashing its predecessor (a hash chain). Kinds:
               `register` (a signed registration) and `transfer` (the current owner's signed hand-over of a
               work to a new address; the owner is derived from these entries, `works.registrant` never changes)
               `commit` (commit-reveal: only a salted commitment to an unpublished registration, signed by its
               registrant; a later `register` entry with `reveals` publishes the record, fingerprints and salt)
               `evidence` (the SHA-256 of an evidence packet about a found copy of a registered work, see
               evidence.py: unsigned, it is a timestamp — the packet existed when the entry was chained and, once
               anchored, no later than the anchor's block — not a claim by anyone)
  works        one row per registered work, a projection of its `register` entry (for humans and queries)
  fingerprints one row per (work, algorithm id)
  local_features the ORB blob of each work; its SHA-256 is the `orb/5` (older: `orb/4`, `orb/3`, `orb/2`)
               fingerprint value in the entry
  checkpoints  (size, Merkle root, signer, signature) after each batch: RFC 6962 roots over entry hashes, each
               signed as an EIP-712 Checkpoint {ledgerId, size, root} by the key that made it, later anchored
  meta         ledger id, schema version, chain id
  deployments  contract addresses per chain (chain id + instance: genesis hash, or the managed node's id), written by `chain`
  anchors      receipts of mined anchor transactions (root, size, tx, block), written by `anchoring`, with the
               anchoring key's signature of the Checkpoint in a domain that names the registry contract
  pending_txs  transactions signed and sent but not yet seen mined; never counted as anchors or tokens
  tokens       minted NFTs with their metadata JSON (its CID is the token URI), written by `nft`

Only `entries` is authoritative. `verify()` recomputes the chain, the checkpoint roots and every signature
(entries, checkpoints, anchors), and checks that the `works` and `fingerprints` rows still say what their entries say.

Every append is one serial transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a per-registry advisory lock
held to COMMIT), so a killed process leaves either the whole work or nothing, and several processes - on
PostgreSQL, several machines - can append at once: the writers are serialised, readers go on.

Many artists in one registry: each `register` entry carries its registrant's signature over the record, checked
before it is appended and again by verify(); a `transfer` must be signed by the current owner. On PostgreSQL the
server also refuses UPDATE, DELETE and TRUNCATE on entries, works, fingerprints and local_features (triggers; a
checkpoint may only gain its signature, once), so no artist's client can alter or delete another's records;
whoever can bypass that (a superuser) is still caught by verify().
"""
from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import merkle, storage
from .errors import LedgerError, TamperedLedgerError, UsageError
from .fingerprints import Fingerprint
from .signing import (DEFAULT_CHAIN_ID, recover_checkpoint_signer, recover_commitment_signer, recover_registrant,
                      recover_transfer_signer, sign_checkpoint, sign_transfer)

#: 2: checkpoints and anchors carry a Checkpoint signature (a schema 1 ledger is upgraded when opened).
SCHEMA_VERSION = 2
#: Signals stored as blobs in `local_features`; the entry records their SHA-256 as the fingerprint value.
BLOB_ALGORITHMS = ("orb/5", "orb/4", "orb/3", "orb/2")
GENESIS = "00" * 32


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8: identical to RFC 8785 (JCS) for the strings/ints/bools we store."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(seq: int, kind: str, work_id: int | None, recorded_at: str, payload: str, prev_hash: str) -> str:
    body = {"seq": seq, "kind": kind, "work_id": work_id, "recorded_at": recorded_at,
            "payload": json.loads(payload), "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def commitment_of(record: dict, fingerprints: list[dict], salt: str) -> str:
    """The salted commitment to an unpublished registration: SHA-256 (hex) of the canonical JSON of
    {"record", "fingerprints", "salt"}. Anyone holding the revealed record, fingerprints and salt can recompute it."""
    body = {"record": record, "fingerprints": fingerprints, "salt": salt}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Work:
    id: int
    sha256: str
    title: str
    artist: str
    license: str
    width: int
    height: int
    created: str
    registered_at: str
    registrant: str
    signature: str
    entry_seq: int
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    prior_claims: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Transfer:
    """One signed hand-over of a work, as recorded in a `transfer` entry."""
    work_id: int
    entry_seq: int
    from_address: str
    to_address: str
    transferred_at: int  # Unix seconds, signed
    recorded_at: str
    signature: str


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str
    recorded_at: str
    signer: str | None = None  # None: made without a key (a dry run, or a ledger from before signed checkpoints)
    signature: str | None = None  # EIP-712 Checkpoint {ledgerId, size, root}, domain without a contract

    def record(self, ledger_id: str) -> dict:
        """The signed Checkpoint message (see signing.CHECKPOINT_TYPE)."""
        return {"ledgerId": ledger_id, "size": self.size, "root": self.root}


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    works: int
    checkpoints: int
    root: str  # Merkle root over every entry


@dataclass(frozen=True)
class Appended:
    work_id: int
    created: bool  # False when these bytes were already registered by this registrant


def _work_row(work_id: int, seq: int, payload: dict) -> dict:
    """The `works` row an entry's payload implies. verify() compares stored rows against this."""
    r = payload["record"]
    return {
        "id": work_id, "sha256": r["sha256"], "title": r["title"], "artist": r["artist"], "license": r["license"],
        "width": r["width"], "height": r["height"], "created": r["created"],
        "registered_at": datetime.fromtimestamp(r["registeredAt"], timezone.utc).isoformat().replace("+00:00", "Z"),
        "registrant": r["registrant"], "signature": payload["signature"],
        "prior_claims": canonical_json(payload.get("prior_claims", [])), "entry_seq": seq,
    }


def _check_evidence_payload(seq: int, work_id, payload) -> None:
    """An `evidence` payload is exactly {packet_sha256 (64 hex), match_id, work_id (the entry's)}."""
    ok = (isinstance(payload, dict) and set(payload) == {"packet_sha256", "match_id", "work_id"}
          and isinstance(payload["packet_sha256"], str) and len(payload["packet_sha256"]) == 64
          and all(ch in "0123456789abcdef" for ch in payload["packet_sha256"])
          and type(payload["match_id"]) is int and type(payload["work_id"]) is int and payload["work_id"] == work_id)
    if not ok:
        raise TamperedLedgerError(f"entry {seq}: an evidence entry holds exactly a packet SHA-256, a match id and"
                                  f" the id of the work it is about", seq)


_CORE_TABLES = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE entries (seq INTEGER PRIMARY KEY, kind TEXT, work_id INTEGER, recorded_at TEXT, payload TEXT,
       prev_hash TEXT, entry_hash TEXT)""",
    """CREATE TABLE works (id INTEGER PRIMARY KEY, sha256 TEXT, title TEXT, artist TEXT, license TEXT,
       width INTEGER, height INTEGER, created TEXT, registered_at TEXT, registrant TEXT, signature TEXT,
       prior_claims TEXT, entry_seq INTEGER REFERENCES entries(seq))""",
    "CREATE UNIQUE INDEX idx_works_sha256_registrant ON works (sha256, registrant)",
    """CREATE TABLE fingerprints (work_id INTEGER REFERENCES works(id), algorithm TEXT, value TEXT,
       quality INTEGER, PRIMARY KEY (work_id, algorithm))""",
    """CREATE TABLE local_features (work_id INTEGER REFERENCES works(id), algorithm TEXT, data BLOB,
       PRIMARY KEY (work_id, algorithm))""",
    """CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, root TEXT, recorded_at TEXT, signer TEXT,
       signature TEXT)""",
]
#: Rows no one may change or delete once written (enforced by the PostgreSQL server; verify() checks them all).
_APPEND_ONLY = ("entries", "works", "fingerprints", "local_features")

_CHAIN_TABLES = [
    """CREATE TABLE IF NOT EXISTS deployments (chain_id INTEGER, instance TEXT, name TEXT, address TEXT,
       tx_hash TEXT, block_number INTEGER, recorded_at TEXT, PRIMARY KEY (chain_id, instance, name))""",
    """CREATE TABLE IF NOT EXISTS anchors (id INTEGER PRIMARY KEY, chain_id INTEGER, instance TEXT,
       contract TEXT, root TEXT, size INTEGER, first_entry INTEGER, tx_hash TEXT, block_number INTEGER,
       block_timestamp INTEGER, sender TEXT, recorded_at TEXT, checkpoint_signer TEXT, checkpoint_signature TEXT,
       UNIQUE (chain_id, instance, contract, root))""",
    """CREATE TABLE IF NOT EXISTS pending_txs (tx_hash TEXT PRIMARY KEY, kind TEXT, chain_id INTEGER,
       instance TEXT, contract TEXT, detail TEXT, sent_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS tokens (chain_id INTEGER, instance TEXT, contract TEXT, token_id INTEGER,
       work_id INTEGER, cid TEXT, metadata TEXT, royalty_bps INTEGER, owner TEXT, tx_hash TEXT,
       block_number INTEGER, recorded_at TEXT, PRIMARY KEY (chain_id, instance, contract, token_id))""",
]


class Ledger:
    """A ledger: a SQLite file or a `postgresql://` URL. Use `Ledger.create(target)` once, then `Ledger.open`."""

    def __init__(self, target: Path | str, conn: storage.Database):
        self.target = target  # what storage.connect opens: a Path, or a URL
        self.path: Path | None = None if storage.is_url(target) else Path(target)  # the SQLite file
        self.location = storage.describe(target)  # for messages (a URL without its password)
        self.conn = conn

    @property
    def name(self) -> str:
        """A short name for pages and messages: the file name, or the URL."""
        return self.path.name if self.path is not None else self.location

    def index_folder(self) -> Path:
        """Where this ledger's global-hash index (a cache, see index.open_index) is kept: beside the file
        (`ledger.db.index/`), or - a PostgreSQL registry has no file - in this machine's data directory, one folder
        per server, database and schema (`DATA_DIR/index/<hash of the URL without its password>/`)."""
        if self.path is not None:
            return Path(f"{self.path}.index")
        from . import config

        folder = config.data_dir() / "index" / hashlib.sha256(self.location.encode()).hexdigest()[:16]
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # open_index then keeps the index in memory
        return folder

    # -- opening -------------------------------------------------------------------------------------------------
    @staticmethod
    def _target(target: Path | str) -> Path | str:
        return target if storage.is_url(target) else Path(target)

    @classmethod
    def create(cls, target: Path | str, chain_id: int = DEFAULT_CHAIN_ID) -> "Ledger":
        """Create a new empty ledger at `target` (a file, whose folder is created, or a PostgreSQL URL). Refuses
        to overwrite an existing one."""
        target = cls._target(target)
        where = storage.describe(target)
        if isinstance(target, Path):
            if target.exists() and target.stat().st_size > 0:
                raise UsageError(f"a ledger already exists at {where}",
                                 hint="use it as it is, or choose another --ledger")
            target.parent.mkdir(parents=True, exist_ok=True)
        conn = storage.connect(target)
        if not isinstance(target, Path):
            conn.ensure_schema()
            if conn.has_table("meta"):
                conn.close()
                raise UsageError(f"a ledger already exists at {where}",
                                 hint="use it as it is, or name another database or ?schema= in --db")
        ledger = cls(target, conn)
        with ledger.transaction():
            ledger._create_schema(chain_id)
        return ledger

    @classmethod
    def open(cls, target: Path | str) -> "Ledger":
        target = cls._target(target)
        path = storage.describe(target)
        if isinstance(target, Path) and not target.exists():
            raise UsageError(f"no ledger at {path}", hint="create one with: provenance init")
        ledger = cls(target, storage.connect(target))
        try:
            version = ledger.meta("schema_version") if ledger.conn.has_table("meta") else None
        except ledger.conn.Error as e:
            raise LedgerError(f"{path} is not a provenance ledger ({e})") from None
        if version is None:
            raise LedgerError(f"{path} is not a provenance ledger (no meta table)")
        if int(version) > SCHEMA_VERSION:
            raise LedgerError(f"{path} was written by a newer provenance (schema {version})",
                              hint="upgrade provenance to read it")
        if int(version) < SCHEMA_VERSION:
            ledger._upgrade(path)
        return ledger

    #: Columns added by schema 2, per table (anchors: only where the chain tables exist already).
    _SIGNATURE_COLUMNS = {"checkpoints": ("signer", "signature"),
                          "anchors": ("checkpoint_signer", "checkpoint_signature")}

    def _upgrade(self, path: str) -> None:
        """Schema 1 -> 2: add the (empty) signature columns. Old rows stay unsigned and verify as before; the
        next signed checkpoint, or `provenance anchor`, signs the latest state."""
        try:
            with self.transaction() as c:
                for table, columns in self._SIGNATURE_COLUMNS.items():
                    have = set(c.columns(table)) if c.has_table(table) else set()
                    for column in columns if have else ():
                        if column not in have:
                            c.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except self.conn.Error as e:
            raise LedgerError(f"cannot upgrade ledger {path} to schema {SCHEMA_VERSION}: {e}",
                              hint="open it once where the file is writable") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _create_schema(self, chain_id: int, meta: bool = True) -> None:
        """The core tables (and, unless `meta` is false - a migration copies it - this ledger's meta rows)."""
        self.conn.create(_CORE_TABLES)
        for table in _APPEND_ONLY:
            self.conn.append_only(table)
        self.conn.append_only("checkpoints", settable_once=("signer", "signature"))
        for key, value in {} if not meta else {"schema_version": SCHEMA_VERSION, "ledger_id": str(uuid.uuid4()),
                           "chain_id": chain_id, "created_at": utc_now()}.items():
            self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def ensure_chain_tables(self) -> None:
        """Create the chain tables on first use, so ledgers made before chain support keep working unchanged."""
        if self.conn.has_table("tokens"):
            return
        with self.transaction() as c:
            if not c.has_table("tokens"):
                c.create(_CHAIN_TABLES)

    # -- small reads -------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def chain_id(self) -> int:
        return int(self.meta("chain_id"))

    @property
    def ledger_id(self) -> str:
        return self.meta("ledger_id")

    def size(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[storage.Database]:
        """A serial write transaction: takes the write lock up front, so read-then-append cannot race."""
        with self.conn.transaction() as c:
            yield c

    # -- appending ---------------------------------------------------------------------------------------------
    def append_work(self, record: dict, signature: str, fingerprints: list[dict],
                    prior_claims: list[dict] | None = None, blobs: dict[str, bytes] | None = None,
                    reveals: dict | None = None) -> Appended:
        """Append a signed registration. Idempotent: the same bytes by the same registrant return the old work.

        `blobs` holds bulky signals (local features) by algorithm id; the entry records only their SHA-256, as
        the value of the fingerprint with that algorithm id. `reveals` ({"commit_seq", "salt"}) makes this the
        reveal of an earlier `commit` entry: the record and fingerprints must recompute its commitment.
        """
        with self.transaction() as c:
            if reveals is not None:
                row = c.execute("SELECT kind, payload FROM entries WHERE seq = ?", (reveals["commit_seq"],)).fetchone()
                if row is None or row[0] != "commit":
                    raise UsageError(f"ledger entry {reveals['commit_seq']} is not a commitment")
                commit = json.loads(row[1])["commit"]
                if str(commit["registrant"]).lower() != str(record["registrant"]).lower() or \
                        commitment_of(record, fingerprints, reveals["salt"]) != commit["commitment"]:
                    raise UsageError(f"this record does not open the commitment of entry {reveals['commit_seq']}")
            row = c.execute("SELECT id FROM works WHERE sha256 = ? AND registrant = ?",
                            (record["sha256"], record["registrant"])).fetchone()
            if row:
                return Appended(row[0], created=False)
            work_id = c.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM works").fetchone()[0]
            payload = {"record": record, "signature": signature, "chain_id": self.chain_id,
                       "fingerprints": fingerprints, "prior_claims": prior_claims or []}
            if reveals is not None:
                payload["reveals"] = {"commit_seq": reveals["commit_seq"], "salt": reveals["salt"]}
            seq = self._append_entry(c, "register", work_id, payload)
            row = _work_row(work_id, seq, payload)
            c.execute(f"INSERT INTO works ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                      tuple(row.values()))
            c.executemany("INSERT INTO fingerprints VALUES (?, ?, ?, ?)",
                          [(work_id, f["algorithm"], f["value"], f.get("quality")) for f in fingerprints])
            c.executemany("INSERT INTO local_features VALUES (?, ?, ?)",
                          [(work_id, alg, data) for alg, data in (blobs or {}).items()])
            return Appended(work_id, created=True)

    def append_transfer(self, work_id: int, to_address: str, signer_account) -> Transfer:
        """Transfer `work_id` to `to_address`, signed by `signer_account`, which must be the work's current owner
        (its registrant, or the recipient of its latest transfer). One IMMEDIATE transaction: the owner check and
        the append cannot race another transfer. Ends with a checkpoint signed by `signer_account`."""
        from eth_utils import is_address, to_checksum_address

        if not isinstance(to_address, str) or not is_address(to_address):
            raise UsageError(f"{to_address!r} is not an Ethereum address", hint="give --to 0x followed by 40 hex digits")
        to = to_checksum_address(to_address)
        with self.transaction() as c:
            row = c.execute("SELECT sha256, registrant FROM works WHERE id = ?", (work_id,)).fetchone()
            if row is None:
                raise UsageError(f"no work with id {work_id}", hint="list works with: provenance works list")
            sha256, registrant = row
            current = self._owner(c, work_id, registrant)
            signer = signer_account.address
            if signer.lower() != current.lower():
                raise UsageError(f"key {signer} does not own work #{work_id}: its current owner is {current}",
                                 hint="only the current owner's key can transfer it")
            if to.lower() == current.lower():
                raise UsageError(f"work #{work_id} already belongs to {current}")
            record = {"workId": work_id, "sha256": sha256, "from": to_checksum_address(current), "to": to,
                      "transferredAt": int(datetime.now(timezone.utc).timestamp())}
            signature = sign_transfer(signer_account, record, self.chain_id)
            payload = {"transfer": record, "signature": signature, "chain_id": self.chain_id}
            seq = self._append_entry(c, "transfer", work_id, payload)
            at = c.execute("SELECT recorded_at FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
        self.checkpoint(signer=signer_account)
        return Transfer(work_id, seq, record["from"], to, record["transferredAt"], at, signature)

    def append_commit(self, commitment: str, signer_account, committed_at: int | None = None) -> int:
        """Append a `commit` entry: only `commitment` (see commitment_of), the registrant and the time, signed by
        `signer_account` as an EIP-712 Commitment. Returns the entry's seq."""
        from .signing import sign_commitment

        record = {"commitment": commitment, "registrant": signer_account.address,
                  "committedAt": int(committed_at if committed_at is not None
                                     else datetime.now(timezone.utc).timestamp())}
        payload = {"commit": record, "signature": sign_commitment(signer_account, record, self.chain_id),
                   "chain_id": self.chain_id}
        with self.transaction() as c:
            return self._append_entry(c, "commit", None, payload)

    def append_evidence(self, packet_sha256: str, match_id: int, work_id: int) -> tuple[int, bool]:
        """Append an `evidence` entry holding an evidence packet's hash, unless one with that hash exists.
        Returns (seq, created). One IMMEDIATE transaction: two runs cannot both append the same packet."""
        payload = {"packet_sha256": packet_sha256, "match_id": match_id, "work_id": work_id}
        _check_evidence_payload(0, work_id, payload)  # raises on a malformed payload: never chain one
        with self.transaction() as c:
            for seq, text in c.execute("SELECT seq, payload FROM entries WHERE kind = 'evidence' ORDER BY seq"):
                if json.loads(text).get("packet_sha256") == packet_sha256:
                    return seq, False
            if not c.execute("SELECT 1 FROM works WHERE id = ?", (work_id,)).fetchone():
                raise UsageError(f"no work with id {work_id}", hint="list works with: provenance works list")
            return self._append_entry(c, "evidence", work_id, payload), True

    def commit_seq(self, commitment: str) -> int | None:
        """The seq of the `commit` entry holding `commitment`, if any."""
        for seq, text in self.conn.execute("SELECT seq, payload FROM entries WHERE kind = 'commit' ORDER BY seq"):
            if json.loads(text)["commit"]["commitment"] == commitment:
                return seq
        return None

    @staticmethod
    def _owner(c: storage.Database, work_id: int, registrant: str) -> str:
        row = c.execute("SELECT payload FROM entries WHERE kind = 'transfer' AND work_id = ? ORDER BY seq DESC"
                        " LIMIT 1", (work_id,)).fetchone()
        return json.loads(row[0])["transfer"]["to"] if row else registrant

    def owner(self, work_id: int) -> str:
        """The work's current owner: the `to` of its latest transfer, else its registrant."""
        return self._owner(self.conn, work_id, self.work(work_id).registrant)

    def history(self, work_id: int) -> list[Transfer]:
        """The work's transfers, oldest first."""
        self.work(work_id)  # a UsageError for an unknown work
        out = []
        for seq, at, text in self.conn.execute("SELECT seq, recorded_at, payload FROM entries WHERE kind = 'transfer'"
                                               " AND work_id = ? ORDER BY seq", (work_id,)):
            p = json.loads(text)
            t = p["transfer"]
            out.append(Transfer(work_id, seq, t["from"], t["to"], t["transferredAt"], at, p["signature"]))
        return out

    def _append_entry(self, c: storage.Database, kind: str, work_id: int | None, payload: dict) -> int:
        last = c.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        text, at = canonical_json(payload), utc_now()
        c.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (seq, kind, work_id, at, text, prev, entry_hash(seq, kind, work_id, at, text, prev)))
        return seq

    def checkpoint(self, signer=None) -> Checkpoint | None:
        """Record the Merkle root over all entries, if entries were added since the last checkpoint, signed by
        `signer` (an eth_account LocalAccount) when one is given. With a signer and nothing new, the latest
        checkpoint is signed if it is not yet (made by a dry run, or before checkpoints were signed).
        Returns the checkpoint recorded or signed, else None."""
        with self.transaction() as c:
            hashes = [bytes.fromhex(h) for (h,) in c.execute("SELECT entry_hash FROM entries ORDER BY seq")]
            last = c.execute("SELECT size, root, recorded_at, signer, signature FROM checkpoints ORDER BY size DESC"
                             " LIMIT 1").fetchone()
            if last and len(hashes) <= last[0]:
                if signer is None or last[4] is not None:
                    return None
                if len(hashes) < last[0] or merkle.root(hashes[:last[0]]).hex() != last[1]:
                    raise TamperedLedgerError(f"the first {last[0]} entries no longer have the Merkle root recorded"
                                              f" in checkpoint {last[0]}: it cannot be signed", last[0])
                cp = Checkpoint(*last[:3])
            elif not hashes:
                return None
            else:
                cp = Checkpoint(len(hashes), merkle.root(hashes).hex(), utc_now())
                c.execute("INSERT INTO checkpoints (size, root, recorded_at) VALUES (?, ?, ?)",
                          (cp.size, cp.root, cp.recorded_at))
            if signer is None:
                return cp
            signed = Checkpoint(cp.size, cp.root, cp.recorded_at, signer.address,
                                sign_checkpoint(signer, cp.record(self.ledger_id), self.chain_id))
            c.execute("UPDATE checkpoints SET signer = ?, signature = ? WHERE size = ?",
                      (signed.signer, signed.signature, cp.size))
            return signed

    # -- reading works -----------------------------------------------------------------------------------------
    def works(self, where: str = "", params: tuple = ()) -> list[Work]:
        fps: dict[int, dict[str, Fingerprint]] = {}
        sub = f"SELECT id FROM works {where}"
        for work_id, alg, value, quality in self.conn.execute(
                f"SELECT * FROM fingerprints WHERE work_id IN ({sub})" if where else "SELECT * FROM fingerprints",
                params):
            fps.setdefault(work_id, {})[alg] = Fingerprint(alg, value, quality)
        rows = self.conn.execute(f"SELECT * FROM works {where} ORDER BY id", params)
        cols = [d[0] for d in rows.description]
        out = []
        for row in rows:
            d = dict(zip(cols, row))
            d["prior_claims"] = json.loads(d["prior_claims"] or "[]")
            out.append(Work(**d, fingerprints=fps.get(d["id"], {})))
        return out

    def work(self, work_id: int) -> Work:
        found = self.works("WHERE id = ?", (work_id,))
        if not found:
            raise UsageError(f"no work with id {work_id}", hint="list works with: provenance works list")
        return found[0]

    def registrants(self, work_ids: list[int]) -> dict[int, str]:
        """work id -> registrant address, for a few works."""
        marks = ",".join("?" * len(work_ids))
        return dict(self.conn.execute(f"SELECT id, registrant FROM works WHERE id IN ({marks})", list(work_ids)))

    def fingerprint_rows(self, algorithms: tuple[str, ...], after_id: int = 0) -> tuple[list[tuple], int, str, int]:
        """Only what a search index needs, for works with an id above `after_id`: rows of (id, sha256, then
        value and quality per algorithm, None where missing), in id order, with the last entry's seq and hash and
        the number of works. One read transaction, so the rows are exactly the works of entries 1..seq (work ids grow with entries:
        append_work numbers them in the transaction that appends the entry)."""
        joins = "".join(f" LEFT JOIN fingerprints f{i} ON f{i}.work_id = w.id AND f{i}.algorithm = ?"
                        for i in range(len(algorithms)))
        cols = "".join(f", f{i}.value, f{i}.quality" for i in range(len(algorithms)))
        with self.conn.snapshot() as c:
            last = c.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            rows = c.execute(f"SELECT w.id, w.sha256{cols} FROM works w{joins} WHERE w.id > ?"
                             " ORDER BY w.id", (*algorithms, after_id)).fetchall()
            count = c.execute("SELECT COUNT(*) FROM works").fetchone()[0]
        seq, digest = last if last else (0, GENESIS)
        return rows, seq, digest, count

    def entry_hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        row = self.conn.execute("SELECT entry_hash FROM entries WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def local_features(self, *algorithms: str) -> dict[int, bytes]:
        """work id -> stored blob of the first of `algorithms` the work has (list newest versions first)."""
        out: dict[int, bytes] = {}
        for algorithm in algorithms:
            rows = self.conn.execute("SELECT work_id, data FROM local_features WHERE algorithm = ?", (algorithm,))
            for work_id, data in rows:
                out.setdefault(work_id, data)
        return out

    def local_features_of(self, work_ids, *algorithms: str) -> dict[int, bytes]:
        """Like local_features, for only these works (the few candidates a bounded local index shortlists)."""
        ids = sorted({int(i) for i in work_ids})
        if not ids or not algorithms:
            return {}
        rank = {a: k for k, a in enumerate(algorithms)}
        best: dict[int, tuple[int, bytes]] = {}
        for at in range(0, len(ids), 500):  # SQLite's default limit is 999 parameters
            part = ids[at:at + 500]
            rows = self.conn.execute(f"SELECT work_id, algorithm, data FROM local_features WHERE work_id IN"
                                     f" ({','.join('?' * len(part))}) AND algorithm IN"
                                     f" ({','.join('?' * len(algorithms))})", (*part, *algorithms))
            for work_id, algorithm, data in rows:
                if work_id not in best or rank[algorithm] < best[work_id][0]:
                    best[work_id] = rank[algorithm], bytes(data)
        return {w: data for w, (_, data) in best.items()}

    def local_feature_state(self, algorithms: tuple[str, ...], through_id: int) -> tuple[int, str, int, int]:
        """One snapshot, for an index of the blobs: the last entry's seq and hash, the highest work id with a blob
        of `algorithms`, and how many works with an id <= `through_id` have one (work ids grow with entries, and
        a work's blob is written in the transaction of its entry)."""
        marks = ",".join("?" * len(algorithms))
        with self.conn.snapshot() as c:
            last = c.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            top = c.execute(f"SELECT MAX(work_id) FROM local_features WHERE algorithm IN ({marks})",
                            algorithms).fetchone()[0]
            count = c.execute(f"SELECT COUNT(DISTINCT work_id) FROM local_features WHERE algorithm IN ({marks})"
                              " AND work_id <= ?", (*algorithms, through_id)).fetchone()[0]
        seq, digest = last if last else (0, GENESIS)
        return seq, digest, int(top or 0), int(count)

    def local_feature_batches(self, algorithms: tuple[str, ...], after_id: int, through_id: int,
                              size: int = 256):
        """(work id, blob) of every work with after_id < id <= through_id, in id order, `size` works per read:
        streamed, never all in memory."""
        marks = ",".join("?" * len(algorithms))
        while True:
            ids = [r[0] for r in self.conn.execute(
                f"SELECT DISTINCT work_id FROM local_features WHERE work_id > ? AND work_id <= ? AND algorithm IN"
                f" ({marks}) ORDER BY work_id LIMIT ?", (after_id, through_id, *algorithms, size))]
            if not ids:
                return
            blobs = self.local_features_of(ids, *algorithms)
            yield [(i, blobs[i]) for i in ids if i in blobs]
            after_id = ids[-1]

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint(*r) for r in self.conn.execute("SELECT size, root, recorded_at, signer, signature"
                                                          " FROM checkpoints ORDER BY size")]

    def entry_hashes(self) -> list[bytes]:
        return [bytes.fromhex(h) for (h,) in self.conn.execute("SELECT entry_hash FROM entries ORDER BY seq")]

    # -- verification ------------------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Recompute everything derivable. Raises TamperedLedgerError naming the first bad row. Reads one state
        of the ledger (a snapshot): appends committed meanwhile by other processes are not half seen."""
        with self.conn.snapshot():
            return self._verify()

    def _verify(self) -> VerifyReport:
        chain_id = self.chain_id
        prev, expected_seq, leaves = GENESIS, 1, []
        work_entries: dict[int, tuple[int, dict]] = {}
        owners: dict[int, str] = {}
        commits: dict[int, dict] = {}
        revealed: dict[int, int] = {}  # commit seq -> the seq of the entry that revealed it
        rows = self.conn.execute("SELECT seq, kind, work_id, recorded_at, payload, prev_hash, entry_hash"
                                 " FROM entries ORDER BY seq")
        for seq, kind, work_id, at, text, prev_hash, stored in rows:
            if seq != expected_seq:
                raise TamperedLedgerError(f"entry {expected_seq} is missing (deleted or renumbered)", expected_seq)
            if prev_hash != prev:
                raise TamperedLedgerError(f"entry {seq} does not follow entry {seq - 1}: hash chain broken"
                                          " (an entry was deleted, reordered or edited)", seq)
            try:
                payload = json.loads(text)
                digest = entry_hash(seq, kind, work_id, at, text, prev_hash)
            except (ValueError, TypeError):
                raise TamperedLedgerError(f"entry {seq} has an unreadable payload (edited)", seq) from None
            if digest != stored:
                raise TamperedLedgerError(f"entry {seq} was edited: its content no longer matches its hash", seq)
            if kind == "register":
                # append_work numbers works densely; a second entry for an id would silently take the work over.
                if work_id in work_entries:
                    raise TamperedLedgerError(f"entry {seq} re-registers work {work_id} (already entry"
                                              f" {work_entries[work_id][0]})", seq)
                if work_id != len(work_entries) + 1:
                    raise TamperedLedgerError(f"entry {seq} registers work {work_id}, expected work"
                                              f" {len(work_entries) + 1}", seq)
                self._verify_registration(seq, payload, chain_id)
                if "reveals" in payload:
                    self._verify_reveal(seq, payload, commits, revealed)
                work_entries[work_id] = (seq, payload)
                owners[work_id] = str(payload["record"]["registrant"])
            elif kind == "commit":
                commits[seq] = self._verify_commit(seq, work_id, payload, chain_id)
            elif kind == "transfer":
                owners[work_id] = self._verify_transfer(seq, work_id, payload, chain_id, work_entries, owners)
            elif kind == "evidence":
                if work_id not in work_entries:
                    raise TamperedLedgerError(f"entry {seq} holds evidence about work {work_id}, which is not"
                                              " registered before it", seq)
                _check_evidence_payload(seq, work_id, payload)
            else:
                raise TamperedLedgerError(f"entry {seq} has unknown kind {kind!r} (added outside provenance)", seq)
            prev, expected_seq = stored, expected_seq + 1
            leaves.append(bytes.fromhex(stored))

        checkpoints = self.checkpoints()
        for cp in checkpoints:
            if cp.size > len(leaves):
                raise TamperedLedgerError(f"checkpoint {cp.size} covers {cp.size} entries but only {len(leaves)} exist"
                                          " (entries were deleted from the end)", len(leaves) + 1)
            if merkle.root(leaves[: cp.size]).hex() != cp.root:
                raise TamperedLedgerError(f"the first {cp.size} entries no longer have the Merkle root recorded in"
                                          f" checkpoint {cp.size}", cp.size)
            self._verify_checkpoint_signature(f"checkpoint {cp.size}", cp.record(self.ledger_id), cp.signer,
                                              cp.signature, chain_id, None, cp.size)
        self._verify_projection(work_entries)
        self._verify_chain_records(leaves)
        return VerifyReport(len(leaves), len(work_entries), len(checkpoints), merkle.root(leaves).hex())

    def _verify_chain_records(self, leaves: list[bytes]) -> None:
        """Anchors must be roots of this ledger's entries; tokens must point at the metadata stored with them."""
        if not self.conn.has_table("tokens"):
            return
        for size, root, tx, chain_id, contract, signer, signature in self.conn.execute(
                "SELECT size, root, tx_hash, chain_id, contract, checkpoint_signer, checkpoint_signature FROM anchors"
                " ORDER BY size"):
            if size > len(leaves) or merkle.root(leaves[:size]).hex() != root.removeprefix("0x"):
                raise TamperedLedgerError(f"the anchor in transaction {tx} covers {size} entries whose Merkle root is"
                                          " no longer what was anchored (entries were edited or deleted)",
                                          min(size, len(leaves) + 1))
            record = {"ledgerId": self.ledger_id, "size": size, "root": root.removeprefix("0x")}
            self._verify_checkpoint_signature(f"the anchor in transaction {tx}", record, signer, signature, chain_id,
                                              contract, size)
        from .nft import cid_of  # late: nft builds on the ledger

        for token_id, metadata, cid in self.conn.execute("SELECT token_id, metadata, cid FROM tokens"):
            if cid_of(metadata.encode()) != cid:
                raise TamperedLedgerError(f"the metadata of token {token_id} was edited: it no longer has the CID"
                                          f" {cid} that the token points at")

    @staticmethod
    def _verify_checkpoint_signature(what: str, record: dict, signer: str | None, signature: str | None,
                                     chain_id: int, contract: str | None, seq: int) -> None:
        """A signed checkpoint (or anchor) must recover its stated signer; an unsigned one is allowed (made by a
        dry run, or before checkpoints were signed) and simply proves nothing in a certificate."""
        if signer is None and signature is None:
            return
        actual = recover_checkpoint_signer(record, signature or "", chain_id, contract)
        if actual is None or signer is None or actual.lower() != signer.lower():
            raise TamperedLedgerError(f"{what}: the checkpoint signature does not match its signer {signer} (the"
                                      " checkpoint, its signer or its signature was edited)", seq)

    @staticmethod
    def _verify_registration(seq: int, payload: dict, chain_id: int) -> None:
        record = payload.get("record", {})
        try:
            signer = recover_registrant(record, payload.get("signature", ""), payload.get("chain_id", chain_id))
        except (KeyError, TypeError, ValueError):
            signer = None
        if signer is None or signer.lower() != str(record.get("registrant", "")).lower():
            raise TamperedLedgerError(f"entry {seq}: signature does not match the registrant", seq)

    @staticmethod
    def _verify_commit(seq: int, work_id, payload: dict, chain_id: int) -> dict:
        commit = payload.get("commit")
        if work_id is not None or not isinstance(commit, dict) or set(commit) != {"commitment", "registrant",
                                                                                   "committedAt"}:
            raise TamperedLedgerError(f"entry {seq}: a commit entry holds exactly a commitment, its registrant and"
                                      " its time, and no work id", seq)
        signer = recover_commitment_signer(commit, payload.get("signature", ""), payload.get("chain_id", chain_id))
        if signer is None or signer.lower() != str(commit["registrant"]).lower():
            raise TamperedLedgerError(f"entry {seq}: commitment signature does not match the registrant", seq)
        return commit

    @staticmethod
    def _verify_reveal(seq: int, payload: dict, commits: dict[int, dict], revealed: dict[int, int]) -> None:
        reveals = payload["reveals"]
        commit_seq = reveals.get("commit_seq") if isinstance(reveals, dict) else None
        if commit_seq not in commits:
            raise TamperedLedgerError(f"entry {seq} reveals entry {commit_seq}, which is not an earlier commitment",
                                      seq)
        if commit_seq in revealed:
            # One commitment dates one registration: a second reveal would borrow the earlier date for another work.
            raise TamperedLedgerError(f"entry {seq} reveals the commitment of entry {commit_seq} again (entry"
                                      f" {revealed[commit_seq]} revealed it already)", seq)
        revealed[commit_seq] = seq
        commit, record = commits[commit_seq], payload["record"]
        if str(commit["registrant"]).lower() != str(record.get("registrant", "")).lower():
            raise TamperedLedgerError(f"entry {seq} reveals the commitment of entry {commit_seq}, made by"
                                      f" {commit['registrant']}, not by the registrant {record.get('registrant')}", seq)
        try:
            actual = commitment_of(record, payload["fingerprints"], reveals["salt"])
        except (KeyError, TypeError):
            actual = None
        if actual != commit["commitment"]:
            raise TamperedLedgerError(f"entry {seq}: the revealed record, fingerprints and salt do not recompute the"
                                      f" commitment of entry {commit_seq} (the reveal was edited)", seq)

    @staticmethod
    def _verify_transfer(seq: int, work_id, payload: dict, chain_id: int, work_entries: dict,
                         owners: dict[int, str]) -> str:
        """Check a transfer entry against the chain so far; returns the new owner."""
        if work_id not in work_entries:
            raise TamperedLedgerError(f"entry {seq} transfers work {work_id}, which is not registered before it", seq)
        t = payload.get("transfer")
        if not isinstance(t, dict) or t.get("workId") != work_id:
            raise TamperedLedgerError(f"entry {seq}: the transfer record is not for work {work_id}", seq)
        registered = str(work_entries[work_id][1]["record"]["sha256"]).removeprefix("0x").lower()
        if str(t.get("sha256", "")).removeprefix("0x").lower() != registered:
            raise TamperedLedgerError(f"entry {seq}: the transfer names sha256 {str(t.get('sha256'))[:16]}…, not"
                                      f" that of work {work_id}", seq)
        signer = recover_transfer_signer(t, payload.get("signature", ""), payload.get("chain_id", chain_id))
        if signer is None or signer.lower() != str(t.get("from", "")).lower():
            raise TamperedLedgerError(f"entry {seq}: transfer signature does not match its sender {t.get('from')}",
                                      seq)
        if signer.lower() != owners[work_id].lower():
            raise TamperedLedgerError(f"entry {seq}: work {work_id} is transferred by {signer}, who does not own it"
                                      f" (its owner at that point is {owners[work_id]})", seq)
        return str(t["to"])

    def _verify_projection(self, work_entries: dict[int, tuple[int, dict]]) -> None:
        rows = self.conn.execute("SELECT * FROM works ORDER BY id")
        cols = [d[0] for d in rows.description]
        seen = set()
        for row in rows:
            stored = dict(zip(cols, row))
            work_id = stored["id"]
            if work_id not in work_entries:
                raise TamperedLedgerError(f"works row {work_id} has no ledger entry (added outside provenance)")
            seq, payload = work_entries[work_id]
            expected = _work_row(work_id, seq, payload)
            changed = sorted(k for k in expected if stored.get(k) != expected[k])
            if changed:
                raise TamperedLedgerError(f"works row {work_id} was edited ({', '.join(changed)}) and no longer"
                                          f" matches ledger entry {seq}", seq)
            seen.add(work_id)
        missing = sorted(set(work_entries) - seen)
        if missing:
            raise TamperedLedgerError(f"works row {missing[0]} was deleted (ledger entry"
                                      f" {work_entries[missing[0]][0]} still records it)", work_entries[missing[0]][0])
        stored_fps: dict[int, list] = {}
        for work_id, alg, value, quality in self.conn.execute("SELECT * FROM fingerprints ORDER BY work_id, algorithm"):
            stored_fps.setdefault(work_id, []).append((alg, value, quality))
        for work_id, (seq, payload) in sorted(work_entries.items()):
            expected = sorted((f["algorithm"], f["value"], f.get("quality")) for f in payload["fingerprints"])
            # sorted here, not by ORDER BY: a PostgreSQL collation may order algorithm ids differently
            if sorted(stored_fps.pop(work_id, []), key=lambda r: (r[0], r[1])) != expected:
                raise TamperedLedgerError(f"fingerprints of work {work_id} were edited and no longer match ledger"
                                          f" entry {seq}", seq)
        if stored_fps:
            raise TamperedLedgerError(f"fingerprints rows for unknown work {min(stored_fps)} (added outside provenance)")
        blobs = {(w, alg): data for w, alg, data in self.conn.execute("SELECT work_id, algorithm, data FROM local_features")}
        for work_id, alg in sorted(blobs):
            if work_id not in work_entries:
                raise TamperedLedgerError(f"{alg} features for unknown work {work_id} (added outside provenance)")
        for work_id, (seq, payload) in sorted(work_entries.items()):
            for f in payload["fingerprints"]:
                if f["algorithm"] not in BLOB_ALGORITHMS:
                    continue
                data = blobs.get((work_id, f["algorithm"]))
                if data is None:
                    raise TamperedLedgerError(f"{f['algorithm']} features of work {work_id} were deleted (ledger"
                                              f" entry {seq} records them)", seq)
                if hashlib.sha256(data).hexdigest() != f["value"]:
                    raise TamperedLedgerError(f"{f['algorithm']} features of work {work_id} were edited and no longer"
                                              f" match their hash in ledger entry {seq}", seq)

