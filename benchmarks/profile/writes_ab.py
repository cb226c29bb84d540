"""Single-row writes and short transactions (W3, W5) on PostgreSQL, A/B in one process.

This tree's fastpeewee, optionally another tree's (``--base``, as in
``sqlite_ab.py``: a directory holding that tree's package renamed
``fastpeewee_base``) and raw asyncpg, variants alternating in a shuffled order
every round; prints median wall and client-CPU µs/op and the ratio to raw.
``--profile NAME`` instead runs variant NAME under cProfile and prints the top
functions by own time.

    PYTHONPATH=src .venv/bin/python benchmarks/profile/writes_ab.py \
        [--port 5432] [--base /tmp/b] [--rounds 7] [--only W3,W5] [--profile new]
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
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.base import POOL_SIZE, Target  # noqa: E402
from benchmarks.peers.peewee_family import FastPeewee  # noqa: E402
from benchmarks.peers.raw import RawAsyncpg  # noqa: E402
from benchmarks.schema import ROWS, fill, make_row, sync_database  # noqa: E402

OPS = {"W3": 600, "W5": 300}


class Variant(FastPeewee):
    module: Any = None

    def make_database(self) -> Any:
        t = self.target
        return self.module.AsyncPostgresqlDatabase(
            t.database, host=t.host, port=t.port, user=t.user, pool_size=POOL_SIZE
        )


def variant(name: str, module: Any) -> type[Variant]:
    return type(name, (Variant,), {"module": module, "name": name})


async def run_op(peer: Any, workload: str, n: int, serial: list[int]) -> tuple[float, float]:
    rng = random.Random(7)
    rows = []
    for _ in range(n):
        serial[0] += 1
        rows.append(make_row(serial[0]))
    pks = [rng.randint(1, ROWS) for _ in range(n)]
    t, c = time.perf_counter(), time.process_time()
    if workload == "W3":
        for row in rows:
            await peer.insert(row)
    else:
        for pk, row in zip(pks, rows, strict=True):
            await peer.transaction(pk, row)
    return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6


async def main(args: argparse.Namespace, target: Target) -> None:
    import fastpeewee

    classes: list[Any] = [RawAsyncpg, variant("new", fastpeewee)]
    if args.base:
        sys.path.insert(0, args.base)
        classes.append(variant("base", importlib.import_module("fastpeewee_base")))
    peers = [cls(target) for cls in classes]
    for p in peers:
        await p.setup()
    serial = [10 * ROWS]
    works = args.only.split(",")
    if args.profile:
        peer = next(p for p in peers if p.name == args.profile)
        for w in works:
            await run_op(peer, w, 100, serial)
            prof = cProfile.Profile()
            prof.enable()
            await run_op(peer, w, OPS[w], serial)
            prof.disable()
            stats = pstats.Stats(prof)
            print(f"== {w} {peer.name}: {stats.total_calls / OPS[w]:.1f} calls/op")  # type: ignore[attr-defined]
            stats.sort_stats(args.sort).print_stats(args.top)
    else:
        wall: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for w in works:
            for p in peers:
                await run_op(p, w, OPS[w] // 10, serial)
        for _ in range(args.rounds):
            for w in works:
                order = list(peers)
                random.shuffle(order)
                for p in order:
                    t, c = await run_op(p, w, OPS[w], serial)
                    wall.setdefault((w, p.name), []).append(t)
                    cpu.setdefault((w, p.name), []).append(c)
        for w in works:
            raw = statistics.median(wall[(w, "raw asyncpg")])
            for p in peers:
                us = statistics.median(wall[(w, p.name)])
                c = statistics.median(cpu[(w, p.name)])
                print(f"{w} {p.name:12} {us:8.1f} us/op  /raw {raw / us:5.2f}  CPU {c:7.1f} us/op")
    for p in peers:
        await p.teardown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="W3,W5")
    parser.add_argument("--base", default="")
    parser.add_argument("--profile", default="")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime")
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
