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
