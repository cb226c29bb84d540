"""Python calls per operation, counted by cProfile: deterministic, unlike timings
on a shared machine. 1,000 ``db.get`` by primary key and 1,000 ``Model.acreate``
after a warm-up, on SQLite and a throwaway PostgreSQL:

    .venv/bin/python benchmarks/profile/calls.py

To compare two trees, run it with ``PYTHONPATH=<other tree>/src`` as well.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import peewee  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

import fastpeewee  # noqa: E402

N = 1000


def calls_per_op(run: Any) -> float:
    profile = cProfile.Profile()
    profile.enable()
    try:
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        profile.disable()
    total: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return total / N


def measure(name: str, db: Any) -> None:
    class Row(db.Model):  # type: ignore[misc]
        a = peewee.IntegerField()
        b = peewee.CharField()

    async def gets() -> None:
        for _ in range(N):
            await db.get(Row.select().where(Row.id == 1))

    async def inserts() -> None:
        for _ in range(N):
            await Row.acreate(a=1, b="x")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(db.acreate_tables([Row]))
    loop.run_until_complete(inserts())  # warm-up: pools, plans, caches
    loop.run_until_complete(gets())
    print(f"{name:<10} get {calls_per_op(gets):6.1f}  acreate {calls_per_op(inserts):6.1f} calls")
    loop.run_until_complete(db.close_pool())
    loop.close()


def main() -> None:
    print(f"fastpeewee from {Path(fastpeewee.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", fastpeewee.AsyncSqliteDatabase(f"{tmp}/calls.db"))
    server = PostgresServer.start()
    try:
        params: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "user": server.user}
        measure("postgres", fastpeewee.AsyncPostgresqlDatabase(server.database, **params))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
