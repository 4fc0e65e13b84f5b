"""The two storage backends for shared tests: a SQLite file, and a fresh schema on the PostgreSQL server named by
$PROVENANCE_TEST_PG (`.ci/run` starts one; without it the PostgreSQL cases are skipped, saying why)."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest

PG = os.environ.get("PROVENANCE_TEST_PG")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG, reason="no PostgreSQL server: set PROVENANCE_TEST_PG=postgresql://... (.ci/run does)"))]


def new_schema_url() -> str:
    """A URL of a schema nobody has used (created by Ledger.create, dropped by drop_schema)."""
    sep = "&" if "?" in PG else "?"
    return f"{PG}{sep}schema=t_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str) -> None:
    import psycopg

    from provenance._pg import _ident, _split_schema

    conninfo, schema = _split_schema(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE")


@contextmanager
def raw_connection(ledger):
    """A connection past provenance, as someone holding the file - or a PostgreSQL superuser, who can switch the
    append-only triggers off (session_replication_role) - would use. `?` parameters; committed at the end."""
    if ledger.path is not None:
        import sqlite3

        conn = sqlite3.connect(ledger.path)
        try:
            yield conn
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    from provenance._pg import _ident, _split_schema

    conninfo, schema = _split_schema(ledger.target)

    class Raw:
        def __init__(self, c):
            self.c = c

        def execute(self, sql, params=()):
            return self.c.execute(sql.replace("?", "%s"), tuple(params))

    with psycopg.connect(conninfo) as conn:
        conn.execute(f"SET search_path TO {_ident(schema)}")
        conn.execute("SET session_replication_role = replica")
        yield Raw(conn)
        conn.commit()


def clone_schema(src_url: str, dst_url: str) -> None:
    """Copy the ledger in schema `src_url` into the new schema `dst_url` on the same server, row for row, with
    the same tables, append-only triggers and identity numbering (provenance.migrate's copy, but server-side:
    `INSERT INTO dst.t SELECT ... FROM src.t`, no rows through Python). For per-test copies of a template."""
    from provenance import migrate, storage
    from provenance._pg import _ident, _split_schema
    from provenance.ledger import Ledger

    src = _ident(_split_schema(src_url)[1])
    db = storage.connect(dst_url)
    try:
        db.ensure_schema()
        have = set(r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (_split_schema(src_url)[1],)))
        chain_id = int(db.execute(f"SELECT value FROM {src}.meta WHERE key = 'chain_id'").fetchone()[0])
        schemas, made = migrate._schemas(), set()
        with db.transaction() as c:
            Ledger(dst_url, c)._create_schema(chain_id, meta=False)
            made.update(("meta", "entries", "works", "fingerprints", "local_features", "checkpoints"))
            for table in [t for t in migrate._ORDER if t in have]:
                if table not in made:
                    c.create(schemas[table])
                    made.update(t for t, s in schemas.items() if s is schemas[table])
                columns = ", ".join(f'"{name}"' for name in c.columns(table))
                c.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {src}.{table}")
                c.reset_ids(table)
    finally:
        db.close()


def db_args(ledger) -> list[str]:
    """The CLI's global option naming `ledger`'s database on either backend (`--db` takes a file too)."""
    return ["--db", str(ledger.target)]


def sqlite_only(fixture: str, reason: str):
    """Run a test on the SQLite variant of a backend-parametrised `fixture` only; `reason` (for the reader)
    says why."""
    return pytest.mark.parametrize(fixture, ["sqlite"], indirect=True)
