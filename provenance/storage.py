"""Where a ledger lives: a SQLite file (the default) or a PostgreSQL database, behind one small interface.

`connect(target)` takes a file path or a `postgresql://` URL and returns a `Database`. Every module writes its SQL
once, in the subset both engines share (`?` parameters, `INSERT ... ON CONFLICT`, `RETURNING id` instead of
`lastrowid`, `CREATE TABLE IF NOT EXISTS`); the few real differences are methods here (`has_table`, `columns`,
`json_text`, `now_epoch`, `skip_locked`, `create`) rather than string rewrites scattered over the code.

Locking. `transaction()` is the one write path. On SQLite it is `BEGIN IMMEDIATE` (one writer per file, as
before). On PostgreSQL it is `BEGIN` plus a transaction-scoped advisory lock named after the schema, taken before
the first read: the hash chain's read-last-entry-then-append stays serial across processes and machines exactly
as it is on SQLite, while readers never wait. `transaction(serial=False)` skips that lock where rows, not the
chain, are what is contended (the scan record, the job queue: those rely on `ON CONFLICT` and row locks).
"""
from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from .errors import LedgerError

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str | Path) -> bool:
    """True for a PostgreSQL URL; anything else is a SQLite file path."""
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def describe(target: str | Path) -> str:
    """`target` for messages: a path as it is, a URL without its password."""
    if not is_url(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Database:
    """One connection to a ledger database. The methods are the whole interface modules may use."""

    dialect: str
    #: The engine's error base class, for `except db.Error`.
    Error: type[Exception]
    IntegrityError: type[Exception]

    def execute(self, sql: str, params: Sequence[Any] = ()):
        """Run one statement with `?` parameters; returns a cursor (fetchone, fetchall, iteration, rowcount)."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self, serial: bool = True) -> Iterator["Database"]:
        raise NotImplementedError
        yield self

    #: Starts a read-only transaction that sees one state of the database from its first read to its end.
    _BEGIN_SNAPSHOT = "BEGIN"
    _reading = False

    @contextmanager
    def snapshot(self) -> Iterator["Database"]:
        """Several reads that must agree with each other (verify, the index's rows and the entry they cover)
        while other processes append. SQLite: a deferred transaction, whose WAL snapshot is taken at the first
        read. PostgreSQL: REPEATABLE READ (its default, READ COMMITTED, gives each statement a newer state).
        Re-entrant; not inside transaction()."""
        if self._reading:
            yield self
            return
        self.execute(self._BEGIN_SNAPSHOT)
        self._reading = True
        try:
            yield self
        finally:
            self._reading = False
            self.execute("COMMIT")  # read only: nothing to keep or lose, even after an error

    def create(self, statements: Sequence[str]) -> None:
        """Run `CREATE TABLE/INDEX` statements written for SQLite (`INTEGER PRIMARY KEY` numbering rows, BLOB,
        REAL); PostgreSQL gets identity columns, BIGINT, BYTEA and DOUBLE PRECISION."""
        for sql in statements:
            self.execute(sql)

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def tables(self) -> list[str]:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        """The column names of `table`, in order."""
        return [d[0] for d in self.execute(f"SELECT * FROM {table} LIMIT 0").description]

    def json_text(self, column: str, key: str) -> str:
        """An SQL expression for the top-level `key` of the JSON text in `column`, as text (compare with str)."""
        raise NotImplementedError

    def now_epoch(self) -> str:
        """An SQL expression for the database server's clock, in Unix seconds (shared by every worker)."""
        raise NotImplementedError

    #: Appended to a `SELECT ... LIMIT n` that picks rows to claim: other claimers skip them instead of waiting.
    skip_locked = ""

    def ensure_schema(self) -> None:
        """Create the namespace the tables go in, if the target names one (PostgreSQL `?schema=`)."""

    def append_only(self, table: str, settable_once: tuple[str, ...] = ()) -> None:
        """Have the server itself refuse UPDATE and DELETE on `table` (PostgreSQL; a SQLite file is as
        writable as its owner makes it, and `verify()` is the check there)."""

    def reset_ids(self, table: str) -> None:
        """After rows were copied in with their ids, let new rows be numbered after them."""

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(Database):
    dialect = "sqlite"
    Error = sqlite3.Error
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: str | Path, durable: bool = True):
        try:
            self.conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL for the ledger's entries; NORMAL (WAL: a power cut may lose the last commits, never corrupts)
            # for the scan record, which does not pay an fsync per image.
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.conn.execute("PRAGMA busy_timeout=60000")
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open ledger {path}: {e}") from None

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params)

    def executemany(self, sql, rows):
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self, serial: bool = True):
        """An IMMEDIATE transaction: takes the write lock up front, so read-then-write cannot race."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def has_table(self, name):
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    def tables(self):
        return [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                                " AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def json_text(self, column, key):
        return f"CAST(json_extract({column}, '$.{key}') AS TEXT)"

    def now_epoch(self):
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def close(self):
        self.conn.close()


def connect(target: str | Path, *, durable: bool = True) -> Database:
    """Open the ledger database at `target`: a `postgresql://` URL, else a SQLite file path.

    `durable=False` trades the last commits before a power cut for speed (the scan record, never entries)."""
    if is_url(target):
        from . import _pg

        return _pg.PostgresDatabase(str(target), durable=durable)
    return SQLiteDatabase(target, durable=durable)


_INTEGER_KEY = re.compile(r"\b(\w+) INTEGER PRIMARY KEY\b(?!\s*\()")


def postgres_ddl(sql: str) -> str:
    """A SQLite `CREATE` statement in PostgreSQL's types (see Database.create)."""
    sql = _INTEGER_KEY.sub(r"\1 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)
