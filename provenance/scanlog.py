"""The scan record: what each scan looked at, what it found, and what the artist has allowed.

Kept in the ledger's database (SQLite file or PostgreSQL) beside the (authoritative, signed) entries, but not part of them: it is the
artist's working memory, not a claim. Tables (created on first use, so older ledgers open unchanged):

  scan_runs     one row per `scan`: sources, start/finish time, counts
  scan_items    one row per item a run looked at: source, image URL or path, page URL, HTTP status and response
                headers, fetch time, content hash, outcome ('matched', 'allowed', 'clean', 'failed') and error
  scan_matches  one row per (item, work) match: the match id an artist quotes (`evidence MATCH_ID`), the signal,
                distance, transform, geometry, score, and the allow rule that covers it, if any
  found_images  the bytes of every matched copy, by SHA-256, so the evidence survives the post being deleted
  seen          per remote URL: ETag, Last-Modified, content hash and outcome of the last successful check; a
                re-scan skips what it has seen (feeds: a 304 skips the whole feed), `--full` ignores it
  allow_rules   licensed uses and the artist's own reposts: (work, URL pattern, note)

Every item is recorded in its own transaction as soon as it is checked, so an interrupted scan keeps what it did
and a re-run goes on from there.
"""
from __future__ import annotations

import fnmatch
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import storage
from .errors import UsageError
from .ledger import Ledger, canonical_json, utc_now

_TABLES = [
    """CREATE TABLE IF NOT EXISTS scan_runs (id INTEGER PRIMARY KEY, started_at TEXT, finished_at TEXT,
       sources TEXT, "full" INTEGER, counts TEXT)""",
    """CREATE TABLE IF NOT EXISTS scan_items (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES scan_runs(id),
       source TEXT, item TEXT, url TEXT, page_url TEXT, title TEXT, published TEXT, status TEXT, error TEXT,
       sha256 TEXT, http_status INTEGER, headers TEXT, fetched_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS scan_items_run ON scan_items (run_id)",
    """CREATE TABLE IF NOT EXISTS scan_matches (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES scan_items(id),
       run_id INTEGER, work_id INTEGER, signal TEXT, distance INTEGER, transform TEXT, score REAL,
       confidence TEXT, sha256_exact INTEGER, geometry TEXT, allowed_by INTEGER, found_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS scan_matches_work ON scan_matches (work_id)",
    "CREATE TABLE IF NOT EXISTS found_images (sha256 TEXT PRIMARY KEY, data BLOB)",
    """CREATE TABLE IF NOT EXISTS seen (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, sha256 TEXT,
       status TEXT, item_id INTEGER, checked_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS allow_rules (id INTEGER PRIMARY KEY, work_id INTEGER, pattern TEXT, note TEXT,
       created_at TEXT)""",
]


@dataclass(frozen=True)
class AllowRule:
    """A use of `work_id` the artist allows: any copy whose image, page or source URL matches `pattern`
    (a shell-style pattern, e.g. `https://www.instagram.com/aigerim.art/*`). `work_id` None: every work."""

    id: int
    work_id: int | None
    pattern: str
    note: str
    created_at: str

    def covers(self, work_id: int, urls: Iterable[str | None]) -> bool:
        if self.work_id is not None and self.work_id != work_id:
            return False
        return any(u and fnmatch.fnmatchcase(u, self.pattern) for u in urls)


@dataclass(frozen=True)
class Seen:
    url: str
    etag: str | None
    last_modified: str | None
    sha256: str | None
    status: str
    checked_at: str


@dataclass(frozen=True)
class MatchRecord:
    """A recorded match, with everything the report and the evidence packet need about where it was found."""

    id: int
    run_id: int
    item_id: int
    work_id: int
    signal: str
    distance: int | None
    transform: str
    score: float
    confidence: str
    sha256_exact: bool
    geometry: dict | None
    allowed_by: int | None
    found_at: str
    item: str  # what the user sees: the image URL or the file path
    source: str | None
    url: str | None  # the image URL (None for local files)
    page_url: str | None
    sha256: str
    http_status: int | None
    headers: dict | None
    fetched_at: str | None


_REMEMBER = """INSERT INTO seen VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET etag = excluded.etag,
    last_modified = excluded.last_modified, sha256 = excluded.sha256, status = excluded.status,
    item_id = excluded.item_id, checked_at = excluded.checked_at"""

_MATCH_SQL = """SELECT m.id, m.run_id, m.item_id, m.work_id, m.signal, m.distance, m.transform, m.score,
    m.confidence, m.sha256_exact, m.geometry, m.allowed_by, m.found_at, i.item, i.source, i.url, i.page_url,
    i.sha256, i.http_status, i.headers, i.fetched_at
    FROM scan_matches m JOIN scan_items i ON i.id = m.item_id"""


def _match_record(row) -> MatchRecord:
    r = list(row)
    r[9] = bool(r[9])
    r[10] = json.loads(r[10]) if r[10] else None
    r[19] = json.loads(r[19]) if r[19] else None
    return MatchRecord(*r)


class ScanLog:
    """The scan tables of one ledger file."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        # A connection of its own that is not durable (SQLite: synchronous=NORMAL, PostgreSQL: synchronous_commit
        # off): a power cut may lose the last items recorded (the re-run checks them again) but never corrupts
        # anything, and a scan does not pay an fsync per image. The ledger's own connection stays durable.
        self.conn = ledger.conn if str(ledger.target) == ":memory:" else storage.connect(ledger.target,
                                                                                          durable=False)
        if not self.conn.has_table("allow_rules"):
            with self.conn.transaction() as c:  # serial: two workers starting at once create the tables once
                if not c.has_table("allow_rules"):
                    c.create(_TABLES)

    @contextmanager
    def transaction(self) -> Iterator[storage.Database]:
        """Rows of the scan record, not the hash chain: on PostgreSQL no registry-wide lock is needed."""
        with self.conn.transaction(serial=False) as c:
            yield c

    def close(self) -> None:
        if self.conn is not self.ledger.conn:
            self.conn.close()

    # -- runs ----------------------------------------------------------------------------------------------------
    def start_run(self, sources: list[str], full: bool) -> int:
        with self.transaction() as c:
            return c.execute("INSERT INTO scan_runs (started_at, sources, \"full\") VALUES (?, ?, ?) RETURNING id",
                             (utc_now(), canonical_json(sources), int(full))).fetchone()[0]

    def finish_run(self, run_id: int, counts: dict[str, int]) -> None:
        with self.transaction() as c:
            c.execute("UPDATE scan_runs SET finished_at = ?, counts = ? WHERE id = ?",
                      (utc_now(), canonical_json(counts), run_id))

    # -- items ---------------------------------------------------------------------------------------------------
    def record(self, run_id: int, *, source: str | None, item: str, url: str | None = None,
               page_url: str | None = None, title: str | None = None, published: str | None = None,
               status: str, error: str | None = None, sha256: str | None = None, http_status: int | None = None,
               headers: dict | None = None, fetched_at: str | None = None, matches: list = (),
               allowed: dict[int, int] | None = None, data: bytes | None = None, etag: str | None = None,
               last_modified: str | None = None) -> list[int]:
        """Record one checked item (and its matches, and the bytes of a matched copy) in one transaction.
        `allowed` maps work id -> allow rule id. Returns the match ids, in the order of `matches`."""
        allowed = allowed or {}
        now = utc_now()
        with self.transaction() as c:
            item_id = c.execute(
                "INSERT INTO scan_items (run_id, source, item, url, page_url, title, published, status, error,"
                " sha256, http_status, headers, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (run_id, source, item, url, page_url, title, published, status, error, sha256, http_status,
                 canonical_json(headers) if headers is not None else None, fetched_at)).fetchone()[0]
            ids = []
            for m in matches:
                ids.append(c.execute(
                    "INSERT INTO scan_matches (item_id, run_id, work_id, signal, distance, transform, score,"
                    " confidence, sha256_exact, geometry, allowed_by, found_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (item_id, run_id, m.work_id, m.signal, m.distance, m.transform, m.score, m.confidence,
                     int(m.sha256_exact), canonical_json(m.geometry) if m.geometry is not None else None,
                     allowed.get(m.work_id), now)).fetchone()[0])
            if matches and data is not None and sha256:
                c.execute("INSERT INTO found_images VALUES (?, ?) ON CONFLICT DO NOTHING", (sha256, data))
            if url is not None and status != "failed":
                c.execute(_REMEMBER, (url, etag, last_modified, sha256, status, item_id, now))
            return ids

    def seen(self, url: str) -> Seen | None:
        row = self.conn.execute("SELECT url, etag, last_modified, sha256, status, checked_at FROM seen"
                                " WHERE url = ?", (url,)).fetchone()
        return Seen(*row) if row else None

    # -- matches -------------------------------------------------------------------------------------------------
    def match(self, match_id: int) -> MatchRecord:
        row = self.conn.execute(_MATCH_SQL + " WHERE m.id = ?", (match_id,)).fetchone()
        if row is None:
            raise UsageError(f"no match with id {match_id}", hint="match ids are shown by: provenance matches")
        return _match_record(row)

    def matches(self, *, run_id: int | None = None, work_id: int | None = None,
                include_allowed: bool = True) -> list[MatchRecord]:
        where, args = [], []
        if run_id is not None:
            where.append("m.run_id = ?"); args.append(run_id)
        if work_id is not None:
            where.append("m.work_id = ?"); args.append(work_id)
        if not include_allowed:
            where.append("m.allowed_by IS NULL")
        sql = _MATCH_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY m.id"
        return [_match_record(r) for r in self.conn.execute(sql, args)]

    def last_run(self) -> int | None:
        return self.conn.execute("SELECT MAX(id) FROM scan_runs").fetchone()[0]

    def run(self, run_id: int) -> dict | None:
        """One scan run: id, started_at, finished_at, sources (list) and counts (dict; None while running)."""
        row = self.conn.execute("SELECT id, started_at, finished_at, sources, counts FROM scan_runs WHERE id = ?",
                                (run_id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "started_at": row[1], "finished_at": row[2], "sources": json.loads(row[3] or "[]"),
                "counts": json.loads(row[4]) if row[4] else None}

    def post(self, item_id: int) -> tuple[str | None, str | None]:
        """The (title, published date) of the feed entry or page an item came from; (None, None) for files."""
        row = self.conn.execute("SELECT title, published FROM scan_items WHERE id = ?", (item_id,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def found_bytes(self, sha256: str) -> bytes | None:
        row = self.conn.execute("SELECT data FROM found_images WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None

    # -- allow-list ----------------------------------------------------------------------------------------------
    def allow(self, work_id: int | None, pattern: str, note: str = "") -> AllowRule:
        """Allow copies of `work_id` (None: of every work) found at URLs matching `pattern`."""
        if work_id is not None:
            self.ledger.work(work_id)  # raises UsageError naming the unknown id
        if not pattern.strip():
            raise UsageError("an allow rule needs a --source URL pattern, e.g. 'https://example.com/gallery/*'")
        at = utc_now()
        with self.transaction() as c:
            rule_id = c.execute("INSERT INTO allow_rules (work_id, pattern, note, created_at) VALUES (?, ?, ?, ?)"
                                " RETURNING id", (work_id, pattern, note, at)).fetchone()[0]
        return AllowRule(rule_id, work_id, pattern, note, at)

    def allow_rules(self) -> list[AllowRule]:
        return [AllowRule(*r) for r in self.conn.execute(
            "SELECT id, work_id, pattern, note, created_at FROM allow_rules ORDER BY id")]

    def disallow(self, rule_id: int) -> None:
        with self.transaction() as c:
            if not c.execute("DELETE FROM allow_rules WHERE id = ?", (rule_id,)).rowcount:
                raise UsageError(f"no allow rule with id {rule_id}", hint="list them with: provenance allow --list")


def allowed_by(rules: list[AllowRule], work_id: int, urls: Iterable[str | None]) -> int | None:
    """The id of the first rule that allows this copy of `work_id`, or None."""
    urls = list(urls)
    return next((r.id for r in rules if r.covers(work_id, urls)), None)
