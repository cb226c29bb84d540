"""The per-statement cost of the execution path, this tree against another, in one process.

Each case runs in this tree's fastpeewee and, with ``--base``, in another
tree's (a copy of its package renamed ``fastpeewee_base``, as for
``sqlite_ab.py``); cases and trees alternate in a shuffled order every round, each measurement
short (a few ms) and the rounds many, so the load of a shared machine moves
single measurements, not the medians.
Prints the median client-CPU µs per op (``time.process_time``: steadier than
wall time on a shared machine) and the wall µs.

Cases: ``raw`` (PostgreSQL: raw asyncpg ``fetchrow`` of the same SQL on a
connection of its own, its statement cache; run for both trees, so the two
lines show the noise), ``adapter`` (the driver adapter on a held connection: the line under
the execution path), ``held`` / ``pooled`` (``db.aexecute_sql`` with a
connection held or taken from the pool per statement), ``get`` (``db.get`` of
a primary key, pooled: W1), ``W3`` (``Model.acreate``, autocommit), ``W5``
(``atomic()``: get, update, insert) and ``W6`` (50 tasks at once, each 20
gets in ``async with db``; µs per get). ``--stub`` (PostgreSQL) replaces the
driver's round trip by a canned answer (no I/O): what is left is the
library's own CPU, without the loop's select and the socket.

``--backend sqlite`` runs on a temp file (WAL), ``--backend mysql`` on a
throwaway MariaDB (tests/servers.py); PostgreSQL needs ``--port`` of a running
test server (``python -m benchmarks.profile.layers`` fills its tables).

    PYTHONPATH=src .venv/bin/python -m benchmarks.profile.path_ab --port N \
        [--base /tmp/b] [--rounds 60] [--only held,pooled] [--stub]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.schema import ROWS, TABLE, fill, make_row, peewee_model, sync_database  # noqa: E402

N = {"raw": 300, "adapter": 300, "held": 300, "pooled": 300}
N.update({"get": 200, "W3": 100, "W5": 50, "W6": 1000})
SQL = f"SELECT t1.id, t1.name FROM {TABLE} AS t1 WHERE (t1.id = %s) LIMIT %s"


def _stub(db: Any, module: Any) -> None:
    """Answer every statement of ``db``'s asyncpg connections at once, with no I/O."""
    conn_cls = importlib.import_module(module.__name__ + ".drivers.postgres").AsyncpgConnection
    real_init = conn_cls.__init__

    def init(self: Any, raw: Any) -> None:
        real_init(self, raw)
        canned: dict[str, Any] = {}
        execute = self._execute

        async def fake(sql: str, params: Any) -> Any:
            answer = canned.get(sql)
            if answer is None:
                answer = canned[sql] = await execute(sql, params)
            return answer

        self._execute = fake

    conn_cls.__init__ = init  # type: ignore[method-assign]
    del db


class Tree:
    def __init__(self, name: str, module: Any, args: argparse.Namespace) -> None:
        self.name = name
        if args.backend == "sqlite":
            self.db = module.AsyncSqliteDatabase(args.path, pool_size=10)
        elif args.backend == "mysql":
            self.db = module.AsyncMySQLDatabase(
                args.server.database, pool_size=10, **args.server.connect_params
            )
        else:
            self.db = module.AsyncPostgresqlDatabase(
                "fastpeewee_test", host="127.0.0.1", port=args.port, user="postgres", pool_size=10
            )
        if args.stub:
            _stub(self.db, module)
        self.Item = peewee_model(self.db, TABLE, self.db.Model)
        self.sql = SQL.replace("%s", self.db.param)
        self.raw: Any = None
        self.raw_params = {"host": "127.0.0.1", "port": args.port, "user": "postgres"}
        self.raw_params["database"] = "fastpeewee_test"
        self.serial = 50 * ROWS + (0 if name == "new" else 10 * ROWS)

    async def run(self, case: str, n: int) -> tuple[float, float]:
        db, Item = self.db, self.Item
        held = case in ("adapter", "held")
        if held:
            await db.aconnect()
        conn = db._state.conn if held else None
        rng = random.Random(7)
        pks = [rng.randint(1, ROWS) for _ in range(n)]
        rows = [make_row(self.serial + i) for i in range(n)]
        self.serial += n
        t, c = time.perf_counter(), time.process_time()
        sql = self.sql
        if case == "raw":
            if self.raw is None:
                import asyncpg

                self.raw = await asyncpg.connect(**self.raw_params)
            dollar = sql.replace("%s", "$1", 1).replace("%s", "$2", 1)
            t, c = time.perf_counter(), time.process_time()
            for pk in pks:
                await self.raw.fetchrow(dollar, pk, 1)
        elif case == "adapter":
            if conn is None:
                await db.aexecute_sql(sql, [1, 1])
                conn = db._state.conn
            for pk in pks:
                await conn.aexecute(sql, [pk, 1])
        elif case in ("held", "pooled"):
            for pk in pks:
                await db.aexecute_sql(sql, [pk, 1])
        elif case == "get":
            for pk in pks:
                await db.get(Item.select().where(Item.id == pk))
        elif case == "W3":
            for row in rows:
                await Item.acreate(**row)
        elif case == "W5":
            for pk, row in zip(pks, rows, strict=True):
                async with db.atomic():
                    item = await db.get(Item.select().where(Item.id == pk))
                    item.quantity += 1
                    await item.asave(only=[Item.quantity])
                    await Item.acreate(**row)
        elif case == "W6":

            async def task(chunk: list[int]) -> None:
                async with db:
                    for pk in chunk:
                        await db.get(Item.select().where(Item.id == pk))

            await asyncio.gather(*(task(pks[i : i + 20]) for i in range(0, n, 20)))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if held:
            await db.aclose()
        return wall / n * 1e6, cpu / n * 1e6


async def main(args: argparse.Namespace) -> None:
    import fastpeewee

    trees = [Tree("new", fastpeewee, args)]
    if args.base:
        sys.path.insert(0, args.base)
        base = importlib.import_module("fastpeewee_base")
        trees.append(Tree("base", base, args))
    cases = args.only.split(",")
    if args.stub:
        cases = [c for c in cases if c != "W5"]  # a transaction needs real answers
    for tree in trees:
        for case in cases:
            await tree.run(case, N[case])
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        order = [(tree, case) for tree in trees for case in cases]
        random.shuffle(order)
        for tree, case in order:
            w, c = await tree.run(case, N[case])
            wall.setdefault((case, tree.name), []).append(w)
            cpu.setdefault((case, tree.name), []).append(c)
    for case in cases:
        line = f"{case:8}"
        for tree in trees:
            c = statistics.median(cpu[(case, tree.name)])
            w = statistics.median(wall[(case, tree.name)])
            line += f"  {tree.name} CPU {c:6.1f} wall {w:6.1f}"
        if len(trees) == 2:
            a = statistics.median(cpu[(case, "new")])
            b = statistics.median(cpu[(case, "base")])
            line += f"  new-base CPU {a - b:+5.1f} us"
        print(line)
    for tree in trees:
        await tree.db.close_pool()
        if tree.raw is not None:
            await tree.raw.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="postgres", choices=["postgres", "sqlite", "mysql"])
    parser.add_argument("--port", type=int, default=0, help="a running test PostgreSQL")
    parser.add_argument("--base", default="")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--only", default="adapter,held,pooled,get,W3,W5")
    parser.add_argument("--stub", action="store_true")
    args = parser.parse_args()
    args.server = None
    if args.backend == "sqlite":
        args.path = str(Path(tempfile.mkdtemp(prefix="path-ab-")) / "bench.db")
        fill(sync_database("sqlite", args.path))
    elif args.backend == "mysql":
        from tests.servers import MariaDBServer

        args.server = MariaDBServer.start()
        fill(sync_database("mysql", args.server))
    elif not args.port:
        parser.error("--port: the port of a running test PostgreSQL")
    try:
        asyncio.run(main(args))
    finally:
        if args.server is not None:
            args.server.stop()
