"""Where a primary-key get spends its time, layer by layer (PostgreSQL).

Each line adds one layer on top of the one before, from the raw driver up to
``db.get(Item.select().where(Item.id == pk))``; the difference between two
lines is that layer's cost. Wall time and this process's CPU time
(``time.process_time``, steadier on a loaded machine) per op, medians of
interleaved rounds. ``--tasks`` runs W6's shape instead: that many tasks at
once, each holding a connection (``async with db``) for 20 gets.

    PYTHONPATH=src .venv/bin/python -m benchmarks.profile.layers [--port 5432] [--tasks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import peewee  # noqa: E402
from benchmarks.schema import ROWS, TABLE, fill, peewee_model, sync_database  # noqa: E402

import fastpeewee  # noqa: E402
from fastpeewee import Param  # noqa: E402
from fastpeewee.fast import shapes  # noqa: E402

N = 2000


async def main(port: int, rounds: int, tasks: int) -> None:
    import asyncpg

    kw: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "user": "postgres", "database": "fastpeewee_test"
    }  # fmt: skip
    raw = await asyncpg.connect(**kw)
    raw_pool = await asyncpg.create_pool(min_size=1, max_size=10, **kw)
    db = fastpeewee.AsyncPostgresqlDatabase(kw.pop("database"), pool_size=10, **kw)
    Item = peewee_model(db, TABLE, db.Model)
    one = Item.select().where(Item.id == 1)
    shapes.first_row_sql(db, one)
    sql, _ = shapes.first_row_sql(db, one)  # what db.get sends
    dsql = sql.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)
    stmt = await raw.prepare(dsql)
    prepared = db.prepare(Item.select().where(Item.id == Param("pk")))
    await db.aexecute_sql(sql, [1, 1, 0])

    def pk(i: int) -> int:
        return i % (ROWS - 1) + 1

    async def raw_prepared(i: int) -> Any:
        return await stmt.fetchrow(pk(i), 1, 0)

    async def raw_cached(i: int) -> Any:
        return await raw.fetchrow(dsql, pk(i), 1, 0)

    async def driver_adapter(i: int) -> Any:
        return await held.aexecute(sql, [pk(i), 1, 0])

    async def execute_sql(i: int) -> Any:
        return await db.aexecute_sql(sql, [pk(i), 1, 0])

    async def prepared_get(i: int) -> Any:
        return await prepared.get(pk=pk(i))

    async def aget_by_id(i: int) -> Any:
        return await Item.aget_by_id(pk(i))

    async def db_get(i: int) -> Any:
        return await db.get(Item.select().where(Item.id == pk(i)))

    def build(i: int) -> Any:
        return Item.select().where(Item.id == pk(i))

    held: Any = None
    # (name, op, holds a connection while measured)
    cases: list[tuple[str, Any, bool]] = [
        ("raw asyncpg prepared stmt", raw_prepared, False),
        ("raw asyncpg fetchrow(sql)", raw_cached, False),
        ("fastpeewee driver adapter", driver_adapter, True),
        ("db.aexecute_sql, held", execute_sql, True),
        ("db.aexecute_sql, pooled", execute_sql, False),
        ("prepared.get, pooled", prepared_get, False),
        ("prepared.get, held", prepared_get, True),
        ("Item.aget_by_id, pooled", aget_by_id, False),
        ("db.get(select), pooled", db_get, False),
        ("db.get(select), held", db_get, True),
    ]
    if tasks:
        cases = [
            ("raw pool, 20 fetchrow/task", None, False),
            ("db.get x20 in async with db", db_get, False),
            ("prepared.get x20 in async with db", prepared_get, False),
        ]
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, op, hold in cases:
            if tasks:
                w, c = await _tasks(db, raw_pool, dsql, op, tasks)
            else:
                if hold:
                    await db.aconnect()
                    held = db._state.conn
                w, c = await _serial(op)
                if hold:
                    await db.aclose()
            wall.setdefault(name, []).append(w)
            cpu.setdefault(name, []).append(c)
    # CPU-only steps of db.get (no I/O): building the query, its SQL from the shape cache.
    for name, fn in (("  build the select", build), ("  its SQL (shape cache)", None)):
        start = time.process_time()
        for i in range(20 * N):
            q = build(i)
            if fn is None:
                shapes.first_row_sql(db, q)
        cpu[name] = [1e6 * (time.process_time() - start) / (20 * N)]
        wall[name] = [float("nan")]
    for name in wall:
        print(
            f"{name:36} wall {statistics.median(wall[name]):7.1f} us/op"
            f"   CPU {statistics.median(cpu[name]):7.1f} us/op"
        )
    await raw.close()
    await raw_pool.close()
    await db.close_pool()


async def _serial(op: Any) -> tuple[float, float]:
    for i in range(200):
        await op(i)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(N):
        await op(i)
    return 1e6 * (time.perf_counter() - start) / N, 1e6 * (time.process_time() - cpu) / N


async def _tasks(db: Any, pool: Any, dsql: str, op: Any, tasks: int) -> tuple[float, float]:
    async def one(t: int) -> None:
        if op is None:
            async with pool.acquire() as conn:
                for i in range(20):
                    await conn.fetchrow(dsql, (t * 20 + i) % (ROWS - 1) + 1, 1, 0)
        else:
            async with db:
                for i in range(20):
                    await op(t * 20 + i)

    await asyncio.gather(*(one(t) for t in range(tasks)))  # warm
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(t) for t in range(tasks)))
    n = tasks * 20
    return 1e6 * (time.perf_counter() - start) / n, 1e6 * (time.process_time() - cpu) / n


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="a running test PostgreSQL")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=0, help="W6: tasks at once (e.g. 200)")
    parser.add_argument("--no-fill", action="store_true")
    args = parser.parse_args()
    server = None
    if not args.port:
        from tests.servers import PostgresServer

        server = PostgresServer.start()
        args.port = server.port
    try:
        if not args.no_fill:
            conn = {"host": "127.0.0.1", "port": args.port, "user": "postgres"}
            target = SimpleNamespace(database="fastpeewee_test", connect_params=conn)
            fill(sync_database("postgres", target))
        asyncio.run(main(args.port, args.rounds, args.tasks))
    finally:
        if server is not None:
            server.stop()
    del peewee
