"""Where a primary-key get spends its time, layer by layer (PostgreSQL).

.venv/bin/python benchmarks/profile/layers.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "profile"))

from bench import define_model, fill  # type: ignore[import-not-found]  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

import fastpeewee  # noqa: E402

N = 1000


async def main(server: PostgresServer) -> None:
    import asyncpg

    kw = dict(database=server.database, **server.connect_params)
    raw = await asyncpg.connect(**kw)
    db = fastpeewee.AsyncPostgresqlDatabase(server.database, **server.connect_params)
    Item = define_model(db, fastpeewee.AsyncModel)
    sql = (
        'SELECT "t1"."id", "t1"."name", "t1"."price" FROM "bench_item" AS "t1" '
        'WHERE ("t1"."id" = %s) LIMIT %s OFFSET %s'
    )
    dsql = sql.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)

    async def t_raw(i: int) -> object:
        return await raw.fetchrow(dsql, i % 9000 + 1, 1, 0)

    async def t_raw_exec(i: int) -> object:
        return await raw._execute(dsql, [i % 9000 + 1, 1, 0], 0, None, return_status=True)

    async def t_sql(i: int) -> object:
        return await db.aexecute_sql(sql, [i % 9000 + 1, 1, 0])

    async def t_held(i: int) -> object:
        return await db.aexecute_sql(sql, [i % 9000 + 1, 1, 0])

    async def t_get(i: int) -> object:
        return await Item.aget_by_id(i % 9000 + 1)

    async def t_dbget(i: int) -> object:
        return await db.get(Item.select().where(Item.id == i % 9000 + 1))

    async def t_held_get(i: int) -> object:
        return await Item.aget_by_id(i % 9000 + 1)

    cases = [
        ("raw fetchrow", t_raw, False),
        ("raw _execute", t_raw_exec, False),
        ("db.aexecute_sql", t_sql, False),
        ("  same, held conn", t_held, True),
        ("aget_by_id", t_get, False),
        ("  aget_by_id, held", t_held_get, True),
        ("db.get(select)", t_dbget, False),
    ]
    results: dict[str, list[float]] = {}
    for _ in range(5):
        for name, fn, held in cases:
            if held:
                await db.aconnect()
            for i in range(100):
                await fn(i)
            start = time.perf_counter()
            for i in range(N):
                await fn(i)
            results.setdefault(name, []).append(1e6 * (time.perf_counter() - start) / N)
            if held:
                await db.aclose()
    for name, times in results.items():
        print(f"{name:18} median {sorted(times)[len(times) // 2]:7.1f} us/op")
    await raw.close()
    await db.close_pool()


if __name__ == "__main__":
    server = PostgresServer.start()
    try:
        fill(fastpeewee.AsyncPostgresqlDatabase(server.database, **server.connect_params))
        asyncio.run(main(server))
    finally:
        server.stop()
