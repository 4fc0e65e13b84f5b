"""Move a registry between backends (SQLite file <-> PostgreSQL) without re-signing anything.

Every table is copied row for row, with its stored hashes, signatures and ids: nothing is recomputed, so the copy
is the same ledger (same ledger id, entries, checkpoints, anchors; certificates issued from either verify the
same). The target must be empty. The copy is one transaction on the target - a failure leaves it empty - and is
then checked: verify() must pass on both sides and give the same size and Merkle root.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import storage
from .errors import LedgerError, UsageError
from .ledger import _CHAIN_TABLES, Ledger, VerifyReport

#: Every table provenance writes, in an order that satisfies the foreign keys (PostgreSQL enforces them).
_ORDER = ["meta", "entries", "works", "fingerprints", "local_features", "checkpoints", "deployments", "anchors",
          "pending_txs", "tokens", "scan_runs", "scan_items", "scan_matches", "found_images", "seen", "allow_rules",
          "evidence_packets", "previews", "scan_jobs", "scan_job_runs"]
_BATCH = 500


@dataclass(frozen=True)
class MigrateReport:
    rows: dict[str, int]  # table -> rows copied
    source: VerifyReport
    target: VerifyReport


def _schemas() -> dict[str, list[str]]:
    """table -> the CREATE statements that make it (and its group), from the modules that own them."""
    from . import evidence, previews, queue, scanlog

    out = {t: _CHAIN_TABLES for t in ("deployments", "anchors", "pending_txs", "tokens")}
    out.update({t: scanlog._TABLES for t in ("scan_runs", "scan_items", "scan_matches", "found_images", "seen",
                                             "allow_rules")})
    out.update(evidence_packets=[evidence._TABLE], previews=[previews._TABLE], scan_jobs=queue._TABLES,
               scan_job_runs=queue._TABLES)
    return out


def migrate(source: Path | str, target: Path | str) -> MigrateReport:
    """Copy the ledger at `source` into the empty `target` (a file or a postgresql:// URL); see the module doc."""
    with Ledger.open(source) as src:
        before = src.verify()
        tables = src.conn.tables()
        unknown = sorted(set(tables) - set(_ORDER))
        if unknown:
            raise UsageError(f"{src.location} holds tables provenance does not know ({', '.join(unknown)})",
                             hint="move or drop them first: a migration copies only provenance's own tables")
        if isinstance(Ledger._target(target), Path):
            path = Path(target)
            if path.exists() and path.stat().st_size > 0:
                raise UsageError(f"{path} is not empty", hint="migrate into a new file")
            path.parent.mkdir(parents=True, exist_ok=True)
        dst = storage.connect(target)
        try:
            dst.ensure_schema()
            if any(dst.has_table(t) for t in _ORDER):
                raise UsageError(f"{storage.describe(target)} already holds a ledger",
                                 hint="migrate into an empty database, or name a new ?schema=")
            rows = _copy(src, target, dst, [t for t in _ORDER if t in tables])
        finally:
            dst.close()
    with Ledger.open(target) as copy:
        after = copy.verify()
    if (after.entries, after.works, after.checkpoints, after.root) != (before.entries, before.works,
                                                                        before.checkpoints, before.root):
        raise LedgerError(f"the copy in {storage.describe(target)} does not verify to the same ledger"
                          f" ({after} vs {before})")
    return MigrateReport(rows, before, after)


def _copy(src: Ledger, target: Path | str, dst: storage.Database, tables: list[str]) -> dict[str, int]:
    schemas, made, counts = _schemas(), set(), {}
    try:
        with dst.transaction() as c:
            Ledger(target, c)._create_schema(src.chain_id, meta=False)  # with the server's append-only rules
            made.update(("meta", "entries", "works", "fingerprints", "local_features", "checkpoints"))
            for table in tables:
                if table not in made:
                    c.create(schemas[table])
                    made.update(t for t, s in schemas.items() if s is schemas[table])
                columns = ", ".join(f'"{name}"' for name in src.conn.columns(table))  # quoted: `full` is reserved
                insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * columns.count(','))}, ?)"
                cursor = src.conn.execute(f"SELECT {columns} FROM {table}")
                counts[table] = 0
                while batch := cursor.fetchmany(_BATCH):
                    c.executemany(insert, batch)
                    counts[table] += len(batch)
                c.reset_ids(table)
    except dst.Error as e:
        raise LedgerError(f"cannot copy the ledger: {str(e).strip()}", hint="nothing was written") from None
    return counts
