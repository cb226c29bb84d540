"""Quick measurements for the performance work (not the official harness).

Runs W1-W6 on fastpeewee, playhouse.pwasyncio and the raw drivers, peers
interleaved round by round; prints median ops/s and the median ratio to the
raw driver of the same round.

    .venv/bin/python benchmarks/profile/bench.py [--backend postgres|sqlite|both]
        [--only W1,W2] [--rounds 5] [--scale 1.0] [--peers fastpeewee,pwasyncio]
    .venv/bin/python benchmarks/profile/bench.py --profile W1 --peers fastpeewee
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
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

from tests.servers import PostgresServer  # noqa: E402

import fastpeewee  # noqa: E402

ROWS = 10_000
OPS = {"W1": 1000, "W1b": 1000, "W2": 300, "W3": 600, "W4": 2, "W5": 300, "W6": 1}


def define_model(db: Any, base: Any = peewee.Model) -> Any:
    class Item(base):  # type: ignore[misc]
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
    db.close_all() if hasattr(db, "close_all") else db.close()


class Orm:
    def __init__(self, name: str, db: Any, base: Any) -> None:
        self.name, self.db, self.Item = name, db, define_model(db, base)
        self.rng = random.Random(3)

    async def setup(self) -> None: ...

    async def teardown(self) -> None:
        await self.db.close_pool()

    async def W1(self) -> Any:
        Item = self.Item
        return await self.db.get(Item.select().where(Item.id == self.rng.randint(1, ROWS)))

    async def W1b(self) -> Any:
        return await self.Item.aget_by_id(self.rng.randint(1, ROWS))

    async def W2(self) -> Any:
        Item = self.Item
        q = Item.select().order_by(Item.id).limit(100).offset(self.rng.randint(0, ROWS - 100))
        rows = await self.db.list(q)
        assert len(rows) == 100
        return rows

    async def W3(self) -> Any:
        return await self.Item.acreate(name="new", price=1)

    async def W4(self) -> Any:
        rows = [{"name": f"bulk {i}", "price": i} for i in range(10_000)]
        await self.Item.insert_many(rows).aexecute()

    async def W5(self) -> Any:
        Item = self.Item
        async with self.db.atomic():
            item = await Item.aget_by_id(self.rng.randint(1, ROWS))
            item.price += 1
            await item.asave()
            await Item.acreate(name="txn", price=2)

    async def W6(self) -> Any:
        Item = self.Item

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(20):
                await Item.aget_by_id(rng.randint(1, ROWS))

        await asyncio.gather(*(worker(i) for i in range(200)))


class RawPg:
    name = "raw"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.rng = random.Random(3)

    async def setup(self) -> None:
        import asyncpg

        kw = dict(database=self.server.database, **self.server.connect_params)
        self.conn = await asyncpg.connect(**kw)
        self.pool = await asyncpg.create_pool(min_size=10, max_size=10, **kw)

    async def teardown(self) -> None:
        await self.conn.close()
        await self.pool.close()

    async def W1(self) -> Any:
        return await self.conn.fetchrow(
            "SELECT id, name, price FROM bench_item WHERE id = $1", self.rng.randint(1, ROWS)
        )

    W1b = W1

    async def W2(self) -> Any:
        return await self.conn.fetch(
            "SELECT id, name, price FROM bench_item ORDER BY id LIMIT 100 OFFSET $1",
            self.rng.randint(0, ROWS - 100),
        )

    async def W3(self) -> Any:
        return await self.conn.fetchval(
            "INSERT INTO bench_item (name, price) VALUES ($1, $2) RETURNING id", "new", 1
        )

    async def W4(self) -> Any:
        rows = [(f"bulk {i}", i) for i in range(10_000)]
        await self.conn.executemany("INSERT INTO bench_item (name, price) VALUES ($1, $2)", rows)

    async def W5(self) -> Any:
        async with self.conn.transaction():
            row = await self.conn.fetchrow(
                "SELECT id, name, price FROM bench_item WHERE id = $1", self.rng.randint(1, ROWS)
            )
            await self.conn.execute(
                "UPDATE bench_item SET name = $1, price = $2 WHERE id = $3",
                row["name"],
                row["price"] + 1,
                row["id"],
            )
            await self.conn.fetchval(
                "INSERT INTO bench_item (name, price) VALUES ($1, $2) RETURNING id", "txn", 2
            )

    async def W6(self) -> Any:
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(20):
                async with self.pool.acquire() as conn:
                    await conn.fetchrow(
                        "SELECT id, name, price FROM bench_item WHERE id = $1",
                        rng.randint(1, ROWS),
                    )

        await asyncio.gather(*(worker(i) for i in range(200)))


class RawSqlite:
    name = "raw"

    def __init__(self, path: str) -> None:
        self.path = path
        self.rng = random.Random(3)

    async def setup(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path)

    async def teardown(self) -> None:
        await self.conn.close()

    async def W1(self) -> Any:
        async with self.conn.execute(
            "SELECT id, name, price FROM bench_item WHERE id = ?", (self.rng.randint(1, ROWS),)
        ) as cur:
            return await cur.fetchone()

    W1b = W1

    async def W2(self) -> Any:
        async with self.conn.execute(
            "SELECT id, name, price FROM bench_item ORDER BY id LIMIT 100 OFFSET ?",
            (self.rng.randint(0, ROWS - 100),),
        ) as cur:
            return await cur.fetchall()

    async def W3(self) -> Any:
        async with self.conn.execute(
            "INSERT INTO bench_item (name, price) VALUES (?, ?)", ("new", 1)
        ) as cur:
            pass
        await self.conn.commit()
        return cur.lastrowid

    async def W4(self) -> Any:
        rows = [(f"bulk {i}", i) for i in range(10_000)]
        await self.conn.executemany("INSERT INTO bench_item (name, price) VALUES (?, ?)", rows)
        await self.conn.commit()

    async def W5(self) -> Any:
        async with self.conn.execute(
            "SELECT id, name, price FROM bench_item WHERE id = ?", (self.rng.randint(1, ROWS),)
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        await self.conn.execute(
            "UPDATE bench_item SET name = ?, price = ? WHERE id = ?", (row[1], row[2] + 1, row[0])
        )
        await self.conn.execute("INSERT INTO bench_item (name, price) VALUES (?, ?)", ("txn", 2))
        await self.conn.commit()

    async def W6(self) -> Any:
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(20):
                async with self.conn.execute(
                    "SELECT id, name, price FROM bench_item WHERE id = ?", (rng.randint(1, ROWS),)
                ) as cur:
                    await cur.fetchone()

        await asyncio.gather(*(worker(i) for i in range(200)))


def make_peers(backend: str, target: Any, names: list[str]) -> list[Any]:
    from playhouse import pwasyncio

    if backend == "sqlite":
        peers: list[Any] = [RawSqlite(target)]
        ours: fastpeewee.AsyncDatabase = fastpeewee.AsyncSqliteDatabase(target)
        theirs = pwasyncio.AsyncSqliteDatabase(target)
    else:
        params = dict(target.connect_params)
        peers = [RawPg(target)]
        ours = fastpeewee.AsyncPostgresqlDatabase(target.database, pool_size=10, **params)
        theirs = pwasyncio.AsyncPostgresqlDatabase(target.database, pool_size=10, **params)
    if "fastpeewee" in names:
        peers.append(Orm("fastpeewee", ours, fastpeewee.AsyncModel))
    if "pwasyncio" in names:
        peers.append(Orm("pwasyncio", theirs, pwasyncio.AsyncModel))
    return peers


async def timed(fn: Any, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await fn()
    return count / (time.perf_counter() - start)


async def run_backend(backend: str, target: Any, args: argparse.Namespace) -> None:
    peers = make_peers(backend, target, args.peers.split(","))
    for p in peers:
        await p.setup()
    try:
        if args.profile:
            peer = peers[-1]
            fn = getattr(peer, args.profile)
            n = max(1, int(OPS[args.profile] * args.scale))
            await timed(fn, max(1, n // 10))
            prof = cProfile.Profile()
            prof.enable()
            rate = await timed(fn, n)
            prof.disable()
            print(f"{backend} {args.profile} {peer.name}: {rate:,.0f} ops/s under cProfile")
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.lines)
            return
        for w in args.only.split(","):
            n = max(1, int(OPS[w] * args.scale))
            rates: dict[str, list[float]] = {p.name: [] for p in peers}
            ratios: dict[str, list[float]] = {p.name: [] for p in peers}
            for p in peers:
                await timed(getattr(p, w), max(1, n // 5))  # warm up
            for _ in range(args.rounds):
                this = {p.name: await timed(getattr(p, w), n) for p in peers}
                for name, r in this.items():
                    rates[name].append(r)
                    ratios[name].append(r / this["raw"])
            line = " | ".join(
                f"{p.name} {statistics.median(rates[p.name]):8,.1f}/s "
                f"{statistics.median(ratios[p.name]):.2f}"
                for p in peers
            )
            print(f"{backend:8} {w:4} {line}", flush=True)
    finally:
        for p in peers:
            await p.teardown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="both")
    ap.add_argument("--only", default="W1,W1b,W2,W3,W4,W5,W6")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--peers", default="fastpeewee,pwasyncio")
    ap.add_argument("--profile", default="")
    ap.add_argument("--sort", default="cumulative")
    ap.add_argument("--lines", type=int, default=45)
    args = ap.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "bench.db")
            fill(peewee.SqliteDatabase(path, pragmas={"journal_mode": "wal"}))
            asyncio.run(run_backend("sqlite", path, args))
    if args.backend in ("postgres", "both"):
        server = PostgresServer.start()
        try:
            fill(fastpeewee.AsyncPostgresqlDatabase(server.database, **server.connect_params))
            asyncio.run(run_backend("postgres", server, args))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
