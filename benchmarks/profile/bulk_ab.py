"""W4 (one 10,000-row ``insert_many``) A/B in one process: this tree's fastpeewee,
optionally another tree's, and the raw driver, alternating in a shuffled order.

    PYTHONPATH=src .venv/bin/python -m benchmarks.profile.bulk_ab \
        [--backend sqlite|postgres|mysql] [--base /dir/holding/fastpeewee_base]
        [--rounds 15] [--profile]

``--base`` as in sqlite_ab.py (a copy of another tree's package renamed
``fastpeewee_base``). PostgreSQL and MariaDB are throwaway servers
(tests/servers.py). Prints each variant's median ms per insert, rows/s and
the median of its per-round ratio to the raw driver (speed, higher is better).
``--profile`` prints a cProfile of this tree's inserts instead.
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
from typing import Any

from benchmarks.peers.base import Target
from benchmarks.peers.peewee_family import FastPeewee
from benchmarks.peers.raw import RawAiosqlite, RawAsyncpg
from benchmarks.peers.raw_mysql import RawAsyncmy
from benchmarks.schema import BULK_TABLE, ROWS, fill, make_row, sync_database

RAW = {"sqlite": RawAiosqlite, "postgres": RawAsyncpg, "mysql": RawAsyncmy}


class Variant(FastPeewee):
    module: Any = None

    def make_database(self) -> Any:
        import fastpeewee

        names = ("AsyncSqliteDatabase", "AsyncPostgresqlDatabase", "AsyncMySQLDatabase")
        real = {n: getattr(fastpeewee, n) for n in names}
        try:  # FastPeewee.make_database names the classes through ``fastpeewee``
            for n in names:
                setattr(fastpeewee, n, getattr(self.module, n))
            return super().make_database()
        finally:
            for n, cls in real.items():
                setattr(fastpeewee, n, cls)


def variant(name: str, module: Any) -> type[Variant]:
    return type(name, (Variant,), {"module": module, "name": name})


async def one(peer: Any, rows: list[dict[str, Any]], check: Any) -> float:
    """Seconds for one insert of ``rows`` into the emptied bulk table."""
    check.execute_sql(f"DELETE FROM {BULK_TABLE}")
    start = time.perf_counter()
    await peer.bulk(rows)
    elapsed = time.perf_counter() - start
    got = check.execute_sql(f"SELECT COUNT(*) FROM {BULK_TABLE}").fetchone()[0]
    assert got == len(rows), got
    return elapsed


async def main(args: argparse.Namespace, target: Target, check: Any) -> None:
    import fastpeewee

    peers: list[Any] = [RAW[target.backend](target), variant("new", fastpeewee)(target)]
    if args.base:
        sys.path.insert(0, args.base)
        base = importlib.import_module("fastpeewee_base")
        peers.append(variant("base", base)(target))
    for peer in peers:
        await peer.setup()
    rows = [make_row(n) for n in range(ROWS)]
    for peer in peers:  # warm up
        await one(peer, rows, check)
    if args.profile:
        prof = cProfile.Profile()
        for _ in range(args.rounds):
            check.execute_sql(f"DELETE FROM {BULK_TABLE}")
            prof.enable()
            await peers[1].bulk(rows)
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    else:
        times: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            order = list(peers)
            random.shuffle(order)
            took = {p.name: await one(p, rows, check) for p in order}
            raw = took[peers[0].name]
            for name, t in took.items():
                times.setdefault(name, []).append(t)
                ratios.setdefault(name, []).append(raw / t)
        for name, ts in times.items():
            med = statistics.median(ts)
            ratio = statistics.median(ratios[name])
            print(f"{name:14s} {med * 1e3:8.2f} ms  {ROWS / med:9.0f} rows/s  /raw {ratio:.2f}")
    for peer in peers:
        await peer.teardown()


def run(args: argparse.Namespace) -> None:
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            target = Target("sqlite", path=f"{tmp}/bench.db")
            check = sync_database("sqlite", target.path)
            fill(check)
            asyncio.run(main(args, target, check))
        return
    from tests.servers import MariaDBServer, PostgresServer

    server: Any = (PostgresServer if args.backend == "postgres" else MariaDBServer).start()
    try:
        check = sync_database(args.backend, server)
        fill(check)
        params = server.connect_params
        target = Target(
            args.backend,
            host=params.get("host", "127.0.0.1"),
            port=params.get("port", server.port),
            user=params.get("user", server.user),
            password=params.get("password", getattr(server, "password", "")),
            database=server.database,
        )
        asyncio.run(main(args, target, check))
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="sqlite", choices=sorted(RAW))
    parser.add_argument("--base", default="")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    run(parser.parse_args())
