"""Where a SQLite primary-key get spends its time, layer by layer (µs/op, medians).

    PYTHONPATH=src .venv/bin/python benchmarks/profile/sqlite_layers.py

From the bare ``sqlite3`` call on the loop thread up to ``db.get(select)``,
with raw aiosqlite (``execute_fetchall``, one hop) for scale; layers alternate
round by round.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import peewee

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.schema import ROWS, TABLE, fill, peewee_model  # noqa: E402

import fastpeewee  # noqa: E402

N = 2000
SQL = f'SELECT "id", "name", "description", "price", "quantity" FROM "{TABLE}" WHERE "id" = ?'


async def main() -> None:
    import aiosqlite

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/layers.db"
        fill(peewee.SqliteDatabase(path))
        db = fastpeewee.AsyncSqliteDatabase(path, pool_size=10)
        Item = peewee_model(db, TABLE, db.Model)
        araw = await aiosqlite.connect(path, isolation_level=None)
        conn = await db.aconnect()
        rng = random.Random(3)
        pks = [rng.randint(1, ROWS) for _ in range(N)]

        async def bare() -> None:
            for pk in pks:
                conn.raw.execute(SQL, (pk,)).fetchall()

        async def driver() -> None:
            for pk in pks:
                await conn.aexecute(SQL, (pk,))

        async def held_sql() -> None:
            for pk in pks:
                await db.aexecute_sql(SQL, (pk,))

        async def held_get() -> None:
            for pk in pks:
                await db.get(Item.select().where(Item.id == pk))

        async def borrowed_sql() -> None:
            for pk in pks:
                await db.aexecute_sql(SQL, (pk,))

        async def borrowed_get() -> None:
            for pk in pks:
                await db.get(Item.select().where(Item.id == pk))

        async def raw_aiosqlite() -> None:
            for pk in pks:
                await araw.execute_fetchall(SQL, (pk,))

        held = {
            "sqlite3 execute+fetchall": bare,
            "conn.aexecute (driver)": driver,
            "db.aexecute_sql, held": held_sql,
            "db.get(select), held": held_get,
        }
        borrowed = {
            "db.aexecute_sql": borrowed_sql,
            "db.get(select)": borrowed_get,
            "raw aiosqlite": raw_aiosqlite,
        }
        times: dict[str, list[float]] = {}
        for _ in range(7):
            for name, fn in held.items():
                begun = time.perf_counter()
                await fn()
                times.setdefault(name, []).append((time.perf_counter() - begun) / N * 1e6)
            await db.aclose()
            for name, fn in borrowed.items():
                begun = time.perf_counter()
                await fn()
                times.setdefault(name, []).append((time.perf_counter() - begun) / N * 1e6)
            conn = await db.aconnect()
        await db.aclose()
        for name, values in times.items():
            print(f"{name:<28} {statistics.median(values):7.1f} us/op")
        await araw.close()
        await db.close_pool()


def _main() -> Any:
    return asyncio.run(main())


if __name__ == "__main__":
    _main()
