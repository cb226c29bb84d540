"""SQLite A/B in one process: this tree's fastpeewee against another tree's, raw
aiosqlite (one ``execute_fetchall`` hop) and plain sync peewee, on one WAL file.

    PYTHONPATH=src .venv/bin/python benchmarks/profile/sqlite_ab.py \
        [--base /path/to/dir/holding/fastpeewee_base] [--rounds 7] [--only W1,W3]

``--base`` names a directory holding a copy of another tree's package renamed
``fastpeewee_base`` (every import inside the package is relative), e.g.::

    git archive <commit> src/fastpeewee | tar -x -C /tmp/b
    mv /tmp/b/src/fastpeewee /tmp/b/fastpeewee_base

Variants alternate within every round (in a shuffled order); prints the median
µs/op of each and its ratio to raw aiosqlite and to sync peewee. W1: get by
pk; W3: one autocommit insert; W5: get, update, insert in ``atomic()``; W6:
200 tasks x 20 gets under ``async with db`` (µs per get). ``--nosync`` turns
fsync off for every variant, leaving the libraries' own costs (W3, W5).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import peewee

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.base import Target  # noqa: E402
from benchmarks.peers.peewee_family import FastPeewee, SyncPeewee  # noqa: E402
from benchmarks.peers.raw import RawAiosqlite  # noqa: E402
from benchmarks.schema import BULK_TABLE, ROWS, fill, make_row  # noqa: E402

OPS = {"W1": 2000, "W3": 400, "W4": 3, "W5": 300, "W6": 1}


NOSYNC = False  # --nosync: PRAGMA synchronous = OFF everywhere (no fsync noise)


class Variant(FastPeewee):
    module: Any = None

    def make_database(self) -> Any:
        pragmas = {"synchronous": "off"} if NOSYNC else {}
        return self.module.AsyncSqliteDatabase(self.target.path, pool_size=10, pragmas=pragmas)


class Raw(RawAiosqlite):
    async def _connect(self) -> Any:
        conn = await super()._connect()
        if NOSYNC:
            await conn.execute("PRAGMA synchronous = OFF")
        return conn


class Sync(SyncPeewee):
    async def setup(self) -> None:
        await super().setup()
        if NOSYNC:
            self.db._pragmas = [("synchronous", "off")]


def variant(name: str, module: Any) -> type[Variant]:
    return type(name, (Variant,), {"module": module, "name": name})


async def run_op(peer: Any, workload: str, n: int) -> float:
    """µs per op (per get for W6)."""
    rng = random.Random(7)
    if workload == "W1":
        pks = [rng.randint(1, ROWS) for _ in range(n)]
        t = time.perf_counter()
        for pk in pks:
            await peer.get(pk)
        return (time.perf_counter() - t) / n * 1e6
    if workload == "W3":
        rows = [make_row(i) for i in range(n)]
        t = time.perf_counter()
        for row in rows:
            await peer.insert(row)
        return (time.perf_counter() - t) / n * 1e6
    if workload == "W4":  # µs per 10,000-row bulk insert
        rows = [make_row(i) for i in range(ROWS)]
        spent = 0.0
        for _ in range(n):
            with sqlite3.connect(peer.target.path) as conn:
                conn.execute(f"DELETE FROM {BULK_TABLE}")
            t = time.perf_counter()
            await peer.bulk(rows)
            spent += time.perf_counter() - t
        return spent / n * 1e6
    if workload == "W5":
        rows = [make_row(i) for i in range(n)]
        pks = [rng.randint(1, ROWS) for _ in range(n)]
        t = time.perf_counter()
        for pk, row in zip(pks, rows, strict=True):
            await peer.transaction(pk, row)
        return (time.perf_counter() - t) / n * 1e6
    batches = [[rng.randint(1, ROWS) for _ in range(20)] for _ in range(200)]
    t = time.perf_counter()
    await peer.concurrent_gets(batches)
    return (time.perf_counter() - t) / 4000 * 1e6


COUNTS = {"loop": 0, "worker": 0}
_connect = sqlite3.connect


def _counting_connect(*args: Any, **kwargs: Any) -> Any:
    """sqlite3.connect, counting the statements each connection runs, by thread."""
    conn = _connect(*args, **kwargs)

    def count(sql: str) -> None:
        where = "loop" if threading.current_thread() is threading.main_thread() else "worker"
        COUNTS[where] += 1

    conn.set_trace_callback(count)
    return conn


async def counts(peer: Any, workload: str) -> str:
    """Deterministic: Python calls (cProfile), statements on the loop and in threads."""
    n = {"W1": 500, "W3": 200, "W4": 1, "W5": 200, "W6": 1}[workload]
    per = 4000 if workload == "W6" else n
    await run_op(peer, workload, n)  # warm
    COUNTS.update(loop=0, worker=0)
    profile = cProfile.Profile()
    profile.enable()
    await run_op(peer, workload, n)
    profile.disable()
    calls = pstats.Stats(profile).total_calls / per  # type: ignore[attr-defined]
    loop, worker = COUNTS["loop"] / per, COUNTS["worker"] / per
    return f"{calls:7.1f} calls  {loop:4.2f} stmts on loop  {worker:4.2f} in threads"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="W1,W3,W5,W6")
    parser.add_argument("--nosync", action="store_true")
    parser.add_argument("--counts", action="store_true", help="calls and statements per op")
    args = parser.parse_args()
    if args.counts:
        sqlite3.connect = _counting_connect  # type: ignore[assignment]
    global NOSYNC
    NOSYNC = args.nosync
    import fastpeewee

    peers_cls: list[Any] = [variant("new", fastpeewee)]
    if args.base:
        sys.path.insert(0, args.base)
        peers_cls.append(variant("base", importlib.import_module("fastpeewee_base")))
    peers_cls += [Raw, Sync]
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.db"
        fill(peewee.SqliteDatabase(path))
        target = Target("sqlite", path=path)
        peers = [cls(target) for cls in peers_cls]
        for p in peers:
            await p.setup()
        workloads = args.only.split(",")
        if args.counts:
            for w in workloads:
                for p in peers:
                    print(f"{w:4} {p.name:<15} {await counts(p, w)}")
            for p in peers:
                await p.teardown()
            return
        times: dict[tuple[str, str], list[float]] = {}
        for w in workloads:  # warm-up
            for p in peers:
                await run_op(p, w, max(1, OPS[w] // 10))
        for _ in range(args.rounds):
            for w in workloads:
                order = list(peers)
                random.shuffle(order)
                for p in order:
                    times.setdefault((w, p.name), []).append(await run_op(p, w, OPS[w]))
        for p in peers:
            await p.teardown()
    print(f"{'':4} {'variant':<15} {'µs/op':>8} {'/raw':>6} {'/sync':>6}   (ratio: speed vs)")
    for w in workloads:
        raw = statistics.median(times[(w, "raw aiosqlite")])
        sync = statistics.median(times[(w, "peewee (sync)")])
        for p in peers:
            us = statistics.median(times[(w, p.name)])
            print(f"{w:4} {p.name:<15} {us:8.1f} {raw / us:6.2f} {sync / us:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
