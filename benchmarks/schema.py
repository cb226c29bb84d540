"""The benchmark tables, their rows, and an independent checker of their contents.

Two tables with the same columns: ``bench_item`` (10,000 rows, read by W1, W2,
W6 and grown by W3, W5) and ``bench_bulk`` (emptied before each W4 measurement).
Four data columns make a 10,000-row insert carry 40,000 parameters, above
asyncpg's cap of 32,767 for one statement (SQLite's default cap is 32,766,
though Debian's build raises it to 250,000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

ROWS = 10_000
TABLE = "bench_item"
BULK_TABLE = "bench_bulk"
COLUMNS = ("name", "description", "price", "quantity")


def make_row(n: int) -> dict[str, Any]:
    """Row number ``n``: the same values for every peer."""
    return {
        "name": f"item {n}",
        "description": f"the item numbered {n}",
        "price": n % 1000,
        "quantity": 0,
    }


def peewee_model(db: peewee.Database, table: str, base: type[Any] = peewee.Model) -> type[Any]:
    """A peewee model of one benchmark table, bound to ``db``."""

    class Meta:
        database = db
        table_name = table

    attrs = {
        "name": peewee.CharField(max_length=100),
        "description": peewee.TextField(),
        "price": peewee.IntegerField(),
        "quantity": peewee.IntegerField(),
        "Meta": Meta,
        "__module__": __name__,
    }
    return type("BulkItem" if table == BULK_TABLE else "Item", (base,), attrs)


def sync_database(backend: str, target: Any) -> peewee.Database:
    """Plain peewee database on the benchmark's SQLite file, PostgreSQL or MariaDB server."""
    if backend == "sqlite":
        return peewee.SqliteDatabase(target)
    if backend == "mysql":
        return peewee.MySQLDatabase(target.database, **target.connect_params)
    return peewee.PostgresqlDatabase(target.database, **target.connect_params)


def fill(db: peewee.Database) -> None:
    """(Re)create both tables and put ROWS rows into ``bench_item``."""
    item, bulk = peewee_model(db, TABLE), peewee_model(db, BULK_TABLE)
    with db.connection_context():
        db.drop_tables([item, bulk], safe=True)
        db.create_tables([item, bulk])
        if isinstance(db, peewee.SqliteDatabase):
            db.pragma("journal_mode", "wal", permanent=True)
        with db.atomic():
            rows = [make_row(n) for n in range(1, ROWS + 1)]
            for batch in peewee.chunked(rows, 1000):
                item.insert_many(batch).execute()


@dataclass
class Checker:
    """Counts rows on its own connection, outside any peer, to verify each workload."""

    db: peewee.Database

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        return int(self.db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def quantity(self) -> int:
        """Sum of ``bench_item.quantity`` (W5 adds one per transaction)."""
        row = self.db.execute_sql(f"SELECT COALESCE(SUM(quantity), 0) FROM {TABLE}").fetchone()
        return int(row[0])

    def empty_bulk(self) -> None:
        """Empty ``bench_bulk`` between W4 measurements."""
        self.db.execute_sql(f"DELETE FROM {BULK_TABLE}")
