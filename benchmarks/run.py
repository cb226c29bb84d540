"""fastpeewee against the raw drivers and playhouse.pwasyncio, in one process run.

Workloads on a 10,000-row table, each on SQLite, PostgreSQL and MariaDB:
  W1  get one row by primary key into a model object (random ids), sequential
  W2  select 100 rows into a list of model objects, sequential

Peers run round by round, interleaved; the table prints the median ops/s and
the median of the per-round ratio to the raw driver. The PostgreSQL and MariaDB
servers are throwaway ones (tests/servers.py) without durable commits.

    make bench            # full run
    make bench QUICK=1    # a short one
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import peewee

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import MariaDBServer, PostgresServer, ServerUnavailable  # noqa: E402

import fastpeewee  # noqa: E402

ROWS = 10_000
Op = Callable[[], Awaitable[Any]]


def define_model(db: peewee.Database) -> type[peewee.Model]:
    class Item(peewee.Model):
        name = peewee.CharField()
        price = peewee.IntegerField()

        class Meta:
            database = db
            table_name = "bench_item"

    return Item


def fill(db: peewee.Database) -> None:
    Item = define_model(db)
    db.drop_tables([Item], safe=True)
    db.create_tables([Item])
    with db.atomic():
        rows = [{"name": f"item {i}", "price": i} for i in range(ROWS)]
        for start in range(0, ROWS, 1000):
            Item.insert_many(rows[start : start + 1000]).execute()


class Peer:
    """One library's take on each workload."""

    name = ""

    async def setup(self) -> None: ...
    async def teardown(self) -> None: ...
    async def w1(self, pk: int) -> Any: ...
    async def w2(self, offset: int) -> list[Any]: ...


class OrmPeer(Peer):
    def __init__(self, name: str, db: Any) -> None:
        self.name = name
        self.db = db
        self.Item = define_model(db)

    async def w1(self, pk: int) -> Any:
        return await self.db.get(self.Item.select().where(self.Item.id == pk))

    async def w2(self, offset: int) -> list[Any]:
        query = self.Item.select().order_by(self.Item.id).limit(100).offset(offset)
        return await self.db.list(query)

    async def teardown(self) -> None:
        await self.db.close_pool()


class RawAsyncpg(Peer):
    name = "raw asyncpg"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    async def setup(self) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(database=self.server.database,
                                          **self.server.connect_params)

    async def teardown(self) -> None:
        await self.conn.close()

    async def w1(self, pk: int) -> Any:
        return await self.conn.fetchrow(
            "SELECT id, name, price FROM bench_item WHERE id = $1", pk)

    async def w2(self, offset: int) -> list[Any]:
        return await self.conn.fetch(
            "SELECT id, name, price FROM bench_item ORDER BY id LIMIT 100 OFFSET $1", offset)


class RawAiosqlite(Peer):
    name = "raw aiosqlite"

    def __init__(self, path: str) -> None:
        self.path = path

    async def setup(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path)

    async def teardown(self) -> None:
        await self.conn.close()

    async def w1(self, pk: int) -> Any:
        async with self.conn.execute(
            "SELECT id, name, price FROM bench_item WHERE id = ?", (pk,)) as cur:
            return await cur.fetchone()

    async def w2(self, offset: int) -> list[Any]:
        async with self.conn.execute(
            "SELECT id, name, price FROM bench_item ORDER BY id LIMIT 100 OFFSET ?",
            (offset,)) as cur:
            return list(await cur.fetchall())


class RawMySQL(Peer):
    """asyncmy or aiomysql on one connection, cursors as each documents them."""

    def __init__(self, driver: str, server: MariaDBServer, **options: Any) -> None:
        self.driver = driver
        self.server = server
        self.options = options
        self.name = f"raw {driver}" + (" (stmt cache)" if options else "")

    async def setup(self) -> None:
        module = __import__(self.driver)
        self.conn = await module.connect(db=self.server.database, autocommit=True,
                                         **self.server.connect_params, **self.options)

    async def teardown(self) -> None:
        self.conn.close()

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        cur = self.conn.cursor()
        if not hasattr(cur, "execute"):  # aiomysql: cursor() is awaitable
            cur = await cur
        try:
            await cur.execute(sql, args)
            return list(await cur.fetchall())
        finally:
            await cur.close()

    async def w1(self, pk: int) -> Any:
        rows = await self._fetch("SELECT id, name, price FROM bench_item WHERE id = %s", (pk,))
        return rows[0]

    async def w2(self, offset: int) -> list[Any]:
        return await self._fetch(
            "SELECT id, name, price FROM bench_item ORDER BY id LIMIT 100 OFFSET %s", (offset,))


def peers_for(backend: str, target: Any) -> list[Peer]:
    from playhouse import pwasyncio

    if backend == "sqlite":
        return [
            RawAiosqlite(target),
            OrmPeer("fastpeewee", fastpeewee.AsyncSqliteDatabase(target)),
            OrmPeer("playhouse.pwasyncio", pwasyncio.AsyncSqliteDatabase(target)),
        ]
    params = dict(target.connect_params)
    if backend == "mysql":
        return [
            RawMySQL("asyncmy", target),
            RawMySQL("aiomysql", target),
            RawMySQL("asyncmy", target, stmt_cache_size=256),
            OrmPeer("fastpeewee", fastpeewee.AsyncMySQLDatabase(target.database, **params)),
            OrmPeer("fastpeewee (stmt cache)", fastpeewee.AsyncMySQLDatabase(
                target.database, stmt_cache_size=256, **params)),
            OrmPeer("playhouse.pwasyncio",
                    pwasyncio.AsyncMySQLDatabase(target.database, **params)),
        ]
    return [
        RawAsyncpg(target),
        OrmPeer("fastpeewee", fastpeewee.AsyncPostgresqlDatabase(target.database, **params)),
        OrmPeer("playhouse.pwasyncio",
                pwasyncio.AsyncPostgresqlDatabase(target.database, **params)),
    ]


async def timed(op: Op, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await op()
    return count / (time.perf_counter() - started)


async def bench_backend(backend: str, target: Any, rounds: int, ops: int) -> list[str]:
    peers = peers_for(backend, target)
    for peer in peers:
        await peer.setup()
    rng = random.Random(7)
    workloads: dict[str, Callable[[Peer], Op]] = {
        "W1 get by pk": lambda p: lambda: p.w1(rng.randint(1, ROWS)),
        "W2 100 rows": lambda p: lambda: p.w2(rng.randint(0, ROWS - 100)),
    }
    lines = []
    for wname, make in workloads.items():
        # Every peer must do the same work: check one result of each.
        for peer in peers:
            assert len(await peer.w2(0)) == 100 and (await peer.w1(5)) is not None
        rates: dict[str, list[float]] = {p.name: [] for p in peers}
        ratios: dict[str, list[float]] = {p.name: [] for p in peers}
        for _ in range(rounds):
            this_round = {p.name: await timed(make(p), ops) for p in peers}
            for name, rate in this_round.items():
                rates[name].append(rate)
                ratios[name].append(rate / this_round[peers[0].name])
        for peer in peers:
            lines.append(f"| {backend} | {wname} | {peer.name} | "
                         f"{statistics.median(rates[peer.name]):,.0f} | "
                         f"{statistics.median(ratios[peer.name]):.2f} |")
    for peer in peers:
        await peer.teardown()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and operations")
    parser.add_argument("--backends", default="sqlite,postgres,mysql",
                        help="comma-separated subset of sqlite,postgres,mysql")
    args = parser.parse_args()
    wanted = set(args.backends.split(","))
    rounds, ops = (3, 300) if args.quick else (7, 2000)

    lines = ["| backend | workload | library | ops/s (median) | ratio to raw driver |",
             "|---|---|---|---|---|"]
    if "sqlite" in wanted:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "bench.db")
            fill(peewee.SqliteDatabase(path))
            lines += asyncio.run(bench_backend("sqlite", path, rounds, ops))
    if "postgres" in wanted:
        lines += bench_postgres(rounds, ops)
    if "mysql" in wanted:
        lines += bench_mysql(rounds, ops)
    print(f"\n{time.strftime('%Y-%m-%d')}, {rounds} rounds x {ops} ops, "
          "PostgreSQL with synchronous_commit=off, MariaDB with "
          "innodb_flush_log_at_trx_commit=0\n")
    print("\n".join(lines))


def bench_postgres(rounds: int, ops: int) -> list[str]:
    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        print(f"PostgreSQL unavailable, skipped: {exc}", file=sys.stderr)
        return []
    try:
        fill(fastpeewee.AsyncPostgresqlDatabase(server.database, **server.connect_params))
        return asyncio.run(bench_backend("postgres", server, rounds, ops))
    finally:
        server.stop()


def bench_mysql(rounds: int, ops: int) -> list[str]:
    try:
        server = MariaDBServer.start()
    except ServerUnavailable as exc:
        print(f"MariaDB unavailable, skipped: {exc}", file=sys.stderr)
        return []
    try:
        database = fastpeewee.AsyncMySQLDatabase(server.database, **server.connect_params)
        fill(database)
        database.close_all()
        return asyncio.run(bench_backend("mysql", server, rounds, ops))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
