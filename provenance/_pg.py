"""PostgreSQL plumbing for storage.Database (psycopg 3, the optional `postgres` extra).

A URL may name a schema: `postgresql://host/db?schema=artists` keeps the registry in that schema (created by
`provenance init`), so one database can hold several registries; without it the tables go in `public`.
"""
from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import LedgerError, UsageError
from .storage import Database, describe, postgres_ddl

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresDatabase(Database):
    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    _BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

    def __init__(self, url: str, durable: bool = True):
        if psycopg is None:
            raise UsageError("a postgresql:// ledger needs the PostgreSQL driver (psycopg 3)",
                             hint="pip install 'provenance[postgres]'")
        self.Error = psycopg.Error
        self.IntegrityError = psycopg.IntegrityError
        self.url = url
        conninfo, self.schema = _split_schema(url)
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=30)
        except psycopg.Error as e:
            raise LedgerError(f"cannot connect to {describe(url)}: {str(e).strip()}",
                              hint="check the URL, and that the server is running and accepts you") from None
        if self.schema is not None:
            self.conn.execute(f"SET search_path TO {_ident(self.schema)}")
        if not durable:
            self.conn.execute("SET synchronous_commit TO off")
        self._sql: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:  # `?` never occurs in our literals; `%` must be doubled for psycopg's placeholders
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, sql, params=()):
        return self.conn.execute(self._translate(sql), tuple(params))

    def executemany(self, sql, rows):
        rows = [tuple(r) for r in rows]
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._translate(sql), rows)

    @contextmanager
    def transaction(self, serial: bool = True):
        """BEGIN, and for `serial` an advisory lock for this schema, held to COMMIT (see storage)."""
        self.conn.execute("BEGIN")
        try:
            if serial:
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('provenance:' ||"
                                  " current_schema(), 0))")
            yield self
        except BaseException:
            if not self.conn.closed:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def ensure_schema(self) -> None:
        if self.schema is not None:
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")

    def create(self, statements):
        for sql in statements:
            self.conn.execute(postgres_ddl(sql))

    def has_table(self, name):
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]

    def tables(self):
        return [r[0] for r in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE' ORDER BY table_name")]

    def json_text(self, column, key):
        return f"(({column})::jsonb ->> '{key}')"

    def now_epoch(self):
        return "extract(epoch from clock_timestamp())::double precision"

    def reset_ids(self, table: str) -> None:
        """After rows were copied in with their ids: let the identity column go on after the largest."""
        for (column,) in self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s AND is_identity = 'YES'", (table,)).fetchall():
            self.conn.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST(COALESCE(MAX({column}), 0), 1),"
                              f" MAX({column}) IS NOT NULL) FROM {table}", (table, column))

    def append_only(self, table: str, settable_once: tuple[str, ...] = ()) -> None:
        """Make the server refuse to change or delete rows of `table` (and TRUNCATE it), whoever asks; only
        the columns `settable_once` may be filled in, once, while they are all NULL."""
        keep = [c for c in self.columns(table) if c not in settable_once]
        unset = " AND ".join(f"OLD.{c} IS NULL" for c in settable_once) or "FALSE"
        same = f"ROW({', '.join('NEW.' + c for c in keep)}) IS NOT DISTINCT FROM ROW({', '.join('OLD.' + c for c in keep)})"
        self.conn.execute(f"""
            CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'UPDATE' AND {unset} AND {same} THEN
                RETURN NEW;
              END IF;
              RAISE EXCEPTION 'provenance: rows of {table} are append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
            END $$""")
        self.conn.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                          f" FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
        self.conn.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                          f" FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()")

    def close(self):
        self.conn.close()


def is_refused(error: Exception) -> bool:
    """True when `error` is an append-only trigger's refusal."""
    return psycopg is not None and isinstance(error, pg_errors.InsufficientPrivilege)
