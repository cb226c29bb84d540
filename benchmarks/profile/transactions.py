"""An empty transaction, four ways, on a throwaway PostgreSQL (microseconds each).

raw asyncpg ``conn.transaction()``, raw BEGIN/COMMIT, fastpeewee ``async with
db.atomic()`` and fastpeewee BEGIN/COMMIT through ``aexecute_sql``, on a held
connection, 2,000 blocks a round, 3 rounds:

    .venv/bin/python benchmarks/profile/transactions.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

import fastpeewee  # noqa: E402

BLOCKS = 2000


async def measure(server: PostgresServer) -> None:
    params: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "user": server.user}
    db = fastpeewee.AsyncPostgresqlDatabase(server.database, **params)
    raw = await asyncpg.connect(database=server.database, **params)

    async def timed(block: object) -> float:
        started = time.perf_counter()
        for _ in range(BLOCKS):
            await block()  # type: ignore[operator]
        return (time.perf_counter() - started) / BLOCKS * 1e6

    async def raw_transaction() -> None:
        async with raw.transaction():
            pass

    async def raw_statements() -> None:
        await raw.execute("BEGIN")
        await raw.execute("COMMIT")

    async def atomic() -> None:
        async with db.atomic():
            pass

    async def statements() -> None:
        await db.aexecute_sql("BEGIN")
        await db.aexecute_sql("COMMIT")

    try:
        for _ in range(3):
            async with db:
                cells = [await timed(b) for b in (raw_transaction, raw_statements, atomic,
                                                   statements)]  # fmt: skip
            print("raw txn {:.0f} us  raw BEGIN/COMMIT {:.0f} us  fastpeewee atomic {:.0f} us  "
                  "fastpeewee BEGIN/COMMIT {:.0f} us".format(*cells))  # fmt: skip
    finally:
        await raw.close()
        await db.close_pool()


def main() -> None:
    server = PostgresServer.start()
    try:
        asyncio.run(measure(server))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
