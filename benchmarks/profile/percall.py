"""Per-call cost of fastpeewee's shared query path against raw asyncpg (issue 15).

Runs W1 (get by pk), W2 (100 rows), W3 (insert), W5 (transaction) and W6
(200 tasks x 20 gets, each task ``async with db``) through the benchmark
peers themselves, variants interleaved round by round in one process; prints
the median us/op per variant, the median ratio raw/variant of each round, and
the median client CPU time per op (``time.process_time``: this process only,
steadier than wall time on a loaded machine).

    PYTHONPATH=src .venv/bin/python -m benchmarks.profile.percall --port 5432 [--rounds 7]

``--port``: a running PostgreSQL with trust auth for user postgres and
database fastpeewee_test (tests/servers.py's); without it one is started.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.peers.base import Target
from benchmarks.peers.peewee_family import FastPeewee
from benchmarks.peers.raw import RawAsyncpg
from benchmarks.schema import ROWS, fill, make_row, sync_database

from fastpeewee import Param

COUNTS = {"W1": 2000, "W2": 300, "W3": 1000, "W5": 300, "W6": 4000}


class Prepared(FastPeewee):
    """fastpeewee through ``db.prepare`` (compiled queries)."""

    name = "fastpeewee prepared"

    async def setup(self) -> None:
        await super().setup()
        Item = self.Item
        self._get = self.db.prepare(Item.select().where(Item.id == Param("pk")))
        self._page = self.db.prepare(
            Item.select().order_by(Item.id).limit(100).offset(Param("offset"))
        )

    async def get(self, pk: int) -> Any:
        return await self._get.get(pk=pk)

    async def page(self, offset: int) -> list[Any]:
        return await self._page.list(offset=offset)


async def run_one(
    peer: Any, work: str, n: int, rng: random.Random, serial: list[int]
) -> tuple[float, float]:
    start = time.perf_counter()
    cpu = time.process_time()
    if work == "W1":
        for _ in range(n):
            await peer.get(rng.randint(1, ROWS))
    elif work == "W2":
        for _ in range(n):
            await peer.page(rng.randint(0, ROWS - 100))
    elif work == "W3":
        for _ in range(n):
            serial[0] += 1
            await peer.insert(make_row(serial[0]))
    elif work == "W5":
        for _ in range(n):
            serial[0] += 1
            await peer.transaction(rng.randint(1, ROWS), make_row(serial[0]))
    elif work == "W6":
        tasks = n // 20
        pks = [[rng.randint(1, ROWS) for _ in range(20)] for _ in range(tasks)]
        await asyncio.gather(*(peer.task_gets(p) for p in pks))
    return 1e6 * (time.perf_counter() - start) / n, 1e6 * (time.process_time() - cpu) / n


async def main(args: argparse.Namespace, target: Target) -> None:
    peers: list[Any] = [RawAsyncpg(target), FastPeewee(target)]
    if hasattr(peers[1].db, "prepare") and not args.no_prepared:
        peers.append(Prepared(target))
    for peer in peers:
        await peer.setup()
    works = args.only.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    serial = [10 * ROWS]
    for _ in range(args.rounds):
        for work in works:
            n = int(COUNTS[work] * args.scale)
            this_round = {}
            for peer in peers:
                await run_one(peer, work, max(n // 10, 20), random.Random(1), serial)  # warm
                t, c = await run_one(peer, work, n, random.Random(2), serial)
                this_round[peer.name] = t
                times.setdefault((work, peer.name), []).append(t)
                cpus.setdefault((work, peer.name), []).append(c)
            raw = this_round[peers[0].name]
            for name, t in this_round.items():
                ratios.setdefault((work, name), []).append(raw / t)
    for work in works:
        for peer in peers:
            key = (work, peer.name)
            print(
                f"{work} {peer.name:22} {statistics.median(times[key]):8.1f} us/op"
                f"   ratio {statistics.median(ratios[key]):.2f}"
                f"   client CPU {statistics.median(cpus[key]):7.1f} us/op"
            )
    for peer in peers:
        await peer.teardown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="W1,W2,W3,W5,W6")
    parser.add_argument("--no-fill", action="store_true")
    parser.add_argument("--no-prepared", action="store_true", help="skip db.prepare's peer")
    args = parser.parse_args()
    server = None
    if not args.port:
        from tests.servers import PostgresServer

        server = PostgresServer.start()
        args.port = server.port
    target = Target(
        "postgres", host="127.0.0.1", port=args.port, user="postgres", database="fastpeewee_test"
    )
    try:
        if not args.no_fill:
            conn = {"host": target.host, "port": target.port, "user": target.user}
            fill(
                sync_database(
                    "postgres", SimpleNamespace(database=target.database, connect_params=conn)
                )
            )
        asyncio.run(main(args, target))
    finally:
        if server is not None:
            server.stop()
