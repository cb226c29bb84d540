"""MariaDB per-call costs: fastpeewee against raw asyncmy in one process, alternating.

Starts a throwaway MariaDB (tests/servers.py), fills the benchmark tables, then
runs the chosen workloads round by round on each peer (raw asyncmy, fastpeewee,
optionally the other peers) and prints median µs/op (rows/s for W4) and the
median ratio to raw asyncmy of the same round.

    PYTHONPATH=src .venv/bin/python -m benchmarks.profile.mysql [--only W1,W4]
        [--rounds 7] [--peers fastpeewee,binary,pwasyncio,sync] [--profile W4]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from typing import Any

from benchmarks.peers.base import Target
from benchmarks.peers.peewee_family import FastPeewee, PwAsyncio, SyncPeewee
from benchmarks.peers.raw_mysql import RawAsyncmy
from benchmarks.schema import BULK_TABLE, ROWS, fill, make_row, sync_database
from tests.servers import MariaDBServer


class FastPeeweeBinary(FastPeewee):
    """fastpeewee with ``bulk_binary=True`` (MariaDB's binary bulk inserts)."""

    name = "fastpeewee bulk_binary"

    def make_database(self) -> Any:
        db = super().make_database()
        db.bulk_binary = True
        return db


PEERS: dict[str, Any] = {
    "fastpeewee": FastPeewee,
    "binary": FastPeeweeBinary,
    "pwasyncio": PwAsyncio,
    "sync": SyncPeewee,
}
OPS = {"W1": 400, "W3": 300, "W4": 1, "W5": 200, "W2": 100}
BULK = [make_row(n) for n in range(ROWS)]


async def one(peer: Any, work: str, n: int, db: Any) -> float:
    """Seconds per op (per row for W4)."""
    start = time.perf_counter()
    if work == "W1":
        for i in range(n):
            await peer.get(1 + i % ROWS)
    elif work == "W2":
        for i in range(n):
            await peer.page((i * 100) % (ROWS - 100))
    elif work == "W3":
        for i in range(n):
            await peer.insert(make_row(i))
    elif work == "W5":
        for i in range(n):
            await peer.transaction(1 + i % ROWS, make_row(i))
    elif work == "W4":
        db.execute_sql(f"DELETE FROM {BULK_TABLE}")
        start = time.perf_counter()
        await peer.bulk(BULK)
        elapsed = time.perf_counter() - start
        got = db.execute_sql(f"SELECT COUNT(*) FROM {BULK_TABLE}").fetchone()[0]
        assert got == ROWS, got
        return elapsed / ROWS
    return (time.perf_counter() - start) / n


async def main(args: argparse.Namespace, server: MariaDBServer) -> None:
    target = Target(
        "mysql",
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        database=server.database,
    )
    db = sync_database("mysql", server)
    peers = [RawAsyncmy(target)] + [PEERS[p](target) for p in args.peers.split(",") if p]
    for peer in peers:
        await peer.setup()
    works = args.only.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for work in works:  # warm up
        for peer in peers:
            await one(peer, work, max(1, OPS[work] // 10), db)
    if args.profile:
        peer = peers[1]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.rounds):
            await one(peer, args.profile, OPS[args.profile], db)
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(35)
        return
    for _ in range(args.rounds):
        for work in works:
            base = None
            for peer in peers:
                t = await one(peer, work, OPS[work], db)
                results.setdefault((work, peer.name), []).append(t)
                if base is None:
                    base = t
                ratios.setdefault((work, peer.name), []).append(base / t)
    for (work, name), times in results.items():
        med = statistics.median(times)
        value = f"{1 / med:10.0f} rows/s" if work == "W4" else f"{med * 1e6:8.1f} µs/op"
        ratio = statistics.median(ratios[(work, name)])
        print(f"{work} {name:14s} {value}   ratio to raw {ratio:.2f}")
    for peer in peers:
        await peer.teardown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="W1,W3,W4,W5")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peers", default="fastpeewee")
    parser.add_argument("--profile", default="")
    parser.add_argument("--sort", default="cumulative")
    args = parser.parse_args()
    server = MariaDBServer.start()
    try:
        fill(sync_database("mysql", server))
        asyncio.run(main(args, server))
    finally:
        server.stop()
