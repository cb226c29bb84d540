"""The asyncmy adapter's own cost: raw asyncmy against ``AsyncmyConnection.aexecute``
and a full fastpeewee get, on one MariaDB, alternating rounds (medians of µs/op).

    PYTHONPATH=src:. .venv/bin/python -m benchmarks.profile.mysql_driver [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncmy
from benchmarks.schema import TABLE, fill, peewee_model, sync_database
from tests.servers import MariaDBServer

import fastpeewee

N = 2000
GET = f"SELECT id, name, description, price, quantity FROM {TABLE} WHERE id = %s"
INSERT = f"INSERT INTO {TABLE} (name, description, price, quantity) VALUES (%s, %s, %s, %s)"


async def main(rounds: int, server: MariaDBServer) -> None:
    params = {**server.connect_params, "database": server.database, "autocommit": True}
    raw = await asyncmy.connect(**params)
    db = fastpeewee.AsyncMySQLDatabase(server.database, **server.connect_params, pool_size=4)
    Item = peewee_model(db, TABLE, db.Model)
    await db.get(Item.select().where(Item.id == 1))
    pool = db._async_pool
    assert pool is not None
    conn = await pool.aacquire()

    async def raw_get(i: int) -> Any:
        cur = raw.cursor()
        await cur.execute(GET, (1 + i % 1000,))
        return await cur.fetchone()

    async def adapter_get(i: int) -> Any:
        return (await conn.aexecute(GET, (1 + i % 1000,))).fetchone()

    async def fast_get(i: int) -> Any:
        return await db.get(Item.select().where(Item.id == 1 + i % 1000))

    async def raw_insert(i: int) -> Any:
        await raw.cursor().execute(INSERT, ("n", "d", i, 0))

    async def fast_insert(i: int) -> Any:
        await Item.acreate(name="n", description="d", price=i, quantity=0)

    variants = {"raw get": raw_get, "fastpeewee get": fast_get, "raw insert": raw_insert,
                "fastpeewee insert": fast_insert}  # fmt: skip
    if conn is not None:
        variants["adapter get"] = adapter_get
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for i in range(N):
                await fn(i)
            times[name].append((time.perf_counter() - start) / N * 1e6)
    for name, values in times.items():
        print(f"{name:20s} {statistics.median(values):7.1f} µs/op")
    raw.close()
    await db.close_pool()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    server = MariaDBServer.start()
    try:
        fill(sync_database("mysql", server))
        asyncio.run(main(args.rounds, server))
    finally:
        server.stop()
