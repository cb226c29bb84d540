"""The automatic select path (``db.get(select)``) A/B in one process, any backend.

This tree's fastpeewee against another tree's (``--base``, a copy of its package
renamed ``fastpeewee_base``, as for sqlite_ab.py), ``db.prepare`` and the raw
driver, alternating within every round in a shuffled order. W1: serial gets
by pk on the pool; W2: pages of 100 rows (µs per page); W6: 200 tasks x 20
gets, each task ``async with db``; F1: ``db.first`` of a select by pk.
Prints medians of wall µs/op and of this process's CPU µs/op
(``time.process_time``, steadier on a loaded machine).

    PYTHONPATH=src .venv/bin/python benchmarks/profile/get_ab.py \
        --backend postgres [--base /tmp/b] [--rounds 7] [--profile new|base|prepared]

``--profile NAME`` prints cProfile's top entries of W1 for one variant instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.base import Target  # noqa: E402
from benchmarks.peers.peewee_family import FastPeewee  # noqa: E402
from benchmarks.peers.raw import RawAiosqlite, RawAsyncpg  # noqa: E402
from benchmarks.peers.raw_mysql import RawAsyncmy  # noqa: E402
from benchmarks.schema import ROWS, fill, sync_database  # noqa: E402

W1_OPS = 2000


class Variant(FastPeewee):
    module: Any = None
    prepared = False

    def make_database(self) -> Any:
        m, t = self.module, self.target
        if t.backend == "sqlite":
            return m.AsyncSqliteDatabase(t.path, pool_size=10)
        if t.backend == "mysql":
            return m.AsyncMySQLDatabase(
                t.database, pool_size=10, host=t.host, port=t.port, user=t.user,
                password=t.password,
            )  # fmt: skip
        return m.AsyncPostgresqlDatabase(
            t.database, host=t.host, port=t.port, user=t.user, pool_size=10
        )

    async def setup(self) -> None:
        await super().setup()
        if self.prepared:
            Item = self.Item
            Param = self.module.Param
            self.by_id = self.db.prepare(Item.select().where(Item.id == Param("id")))
            self.page_at = self.db.prepare(
                Item.select().order_by(Item.id).limit(100).offset(Param("at"))
            )

    async def get(self, pk: int) -> Any:
        if self.prepared:
            return await self.by_id.get(id=pk)
        return await super().get(pk)

    async def page(self, offset: int) -> list[Any]:
        if self.prepared:
            return await self.page_at.list(at=offset)
        return await super().page(offset)


def variant(name: str, module: Any, prepared: bool = False) -> type[Variant]:
    return type(name, (Variant,), {"module": module, "name": name, "prepared": prepared})


GC = {"t": 0.0, "start": 0.0, "n": 0}


def _gc_clock(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        GC["start"] = time.perf_counter()
    else:
        GC["t"] += time.perf_counter() - GC["start"]
        GC["n"] += 1


async def run_op(peer: Any, workload: str, n: int) -> tuple[float, float]:
    """(wall, CPU) µs per get."""
    rng = random.Random(7)
    if workload == "W1":
        pks = [rng.randint(1, ROWS) for _ in range(n)]
        t, c = time.perf_counter(), time.process_time()
        for pk in pks:
            await peer.get(pk)
        return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6
    if workload == "F1":  # db.first of a select by pk
        pks = [rng.randint(1, ROWS) for _ in range(n)]
        Item = getattr(peer, "Item", None)
        t, c = time.perf_counter(), time.process_time()
        for pk in pks:
            if Item is None:  # the raw driver: its get
                await peer.get(pk)
            else:
                await peer.db.first(Item.select().where(Item.id == pk))
        return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6
    if workload == "W2":  # µs per page of 100 rows
        n = n // 20
        offsets = [rng.randint(0, ROWS - 100) for _ in range(n)]
        t, c = time.perf_counter(), time.process_time()
        for offset in offsets:
            await peer.page(offset)
        return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6
    batches = [[rng.randint(1, ROWS) for _ in range(20)] for _ in range(200)]
    t, c = time.perf_counter(), time.process_time()
    await peer.concurrent_gets(batches)
    return (time.perf_counter() - t) / 4000 * 1e6, (time.process_time() - c) / 4000 * 1e6


async def bench(target: Target, args: argparse.Namespace) -> None:
    import fastpeewee

    classes: list[Any] = [variant("new", fastpeewee)]
    if args.base:
        sys.path.insert(0, args.base)
        classes.append(variant("base", importlib.import_module("fastpeewee_base")))
    classes.append(variant("prepared", fastpeewee, prepared=True))
    raw = {"sqlite": RawAiosqlite, "postgres": RawAsyncpg, "mysql": RawAsyncmy}[target.backend]
    classes.append(raw)
    peers = [cls(target) for cls in classes]
    for p in peers:
        await p.setup()
    workloads = args.only.split(",")
    if args.profile:
        peer = next(p for p in peers if p.name == args.profile)
        w = workloads[0]
        await run_op(peer, w, 200)
        prof = cProfile.Profile()
        prof.enable()
        await run_op(peer, w, W1_OPS)
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats(args.sort).print_stats(args.top)
        for p in peers:
            await p.teardown()
        return
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for w in workloads:
        for p in peers:
            await run_op(p, w, 200)
    for _ in range(args.rounds):
        for w in workloads:
            order = list(peers)
            random.shuffle(order)
            for p in order:
                times.setdefault((w, p.name), []).append(await run_op(p, w, W1_OPS))
    for p in peers:
        await p.teardown()
    print(f"{target.backend}  {'variant':<12} {'wall':>7} {'cpu':>7} {'raw/wall':>9}  µs/get")
    for w in workloads:
        rawt = statistics.median(t[0] for t in times[(w, raw.name)])
        for p in peers:
            wall = statistics.median(t[0] for t in times[(w, p.name)])
            cpu = statistics.median(t[1] for t in times[(w, p.name)])
            print(f"{w:4} {p.name:<16} {wall:7.1f} {cpu:7.1f} {rawt / wall:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="postgres", choices=["sqlite", "postgres", "mysql"])
    parser.add_argument("--base", default="")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="W1,W6")
    parser.add_argument("--profile", default="")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    from tests.servers import MariaDBServer, PostgresServer

    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            target = Target("sqlite", path=f"{tmp}/bench.db")
            fill(sync_database("sqlite", target.path))
            asyncio.run(bench(target, args))
        return
    server: Any = (PostgresServer if args.backend == "postgres" else MariaDBServer).start()
    try:
        target = Target(
            args.backend,
            host="127.0.0.1",
            port=server.port,
            user=server.user,
            password=getattr(server, "password", ""),
            database=server.database,
        )
        fill(sync_database(args.backend, server))
        asyncio.run(bench(target, args))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
