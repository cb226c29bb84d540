"""The fault-injection harness: cancellation at every step, seeded schedules, and
invariants checked from outside the library.

- :func:`cancel_at_every_step` runs an operation and cancels it after ``k``
  event-loop steps, for every ``k`` until the operation completes on its own.
- :class:`Outside` looks at the server through a driver connection of its own
  (never through fastpeewee): sessions that are inside a transaction or still
  running a statement, and row counts.
- :func:`check_invariants` is what every case ends with: every connection is
  back in its pool, none is inside a transaction or mid-statement on the
  server, and the next owner's autocommit write is visible from outside at
  once (it did not land in a transaction somebody left open).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee

from fastpeewee import AsyncMySQLDatabase, AsyncPostgresqlDatabase

from .conftest import AnyDatabase, assert_no_leaks, model_database, settle
from .pgbouncer import upstream_params

# One table of its own, so the harness never depends on the test models.
LEDGER = "harness_ledger"


class Ledger(peewee.Model):
    """The ledger table as a model (bind it, or run its queries with ``db.aexecute``)."""

    tag = peewee.CharField(max_length=64)

    class Meta:
        table_name = LEDGER


class Outside:
    """A view of the server that does not go through the library under test."""

    def __init__(self, db: AnyDatabase) -> None:
        self.db = db
        self.kind = (
            "postgres"
            if isinstance(db, AsyncPostgresqlDatabase)
            else "mysql"
            if isinstance(db, AsyncMySQLDatabase)
            else "sqlite"
        )
        self._conn: Any = None

    # -- connection -----------------------------------------------------------

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        params = self.db.connect_params
        if self.kind == "postgres":
            import psycopg

            # Behind the test PgBouncer: PostgreSQL itself, not a pooled session.
            database, params = upstream_params(self.db.database, params)
            self._conn = psycopg.connect(
                dbname=database, autocommit=True,
                **{k: params[k] for k in ("host", "port", "user")},
            )  # fmt: skip
        elif self.kind == "mysql":
            import pymysql

            self._conn = pymysql.connect(
                database=self.db.database, autocommit=True,
                **{k: params[k] for k in ("host", "port", "user", "password")},
            )  # fmt: skip
        else:
            self._conn = sqlite3.connect(
                self.db.database, timeout=0, isolation_level=None, check_same_thread=False
            )
        return self._conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        if self.kind == "mysql":
            sql = sql.replace("?", "%s")
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        if self.kind == "postgres":
            sql = sql.replace("?", "%s")
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- what the server sees -----------------------------------------------

    def busy_sessions(self) -> list[tuple[Any, ...]]:
        """Sessions of the database that are in a transaction or running a statement."""
        if self.kind == "postgres":
            return self.query(
                "SELECT pid, state, query FROM pg_stat_activity WHERE datname = ? "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND (state <> 'idle' OR xact_start IS NOT NULL)",
                (self.db.database,),
            )
        if self.kind == "mysql":
            running = self.query(
                "SELECT id, command, info FROM information_schema.processlist "
                "WHERE db = ? AND id <> CONNECTION_ID() AND command NOT IN ('Sleep', 'Daemon')",
                (self.db.database,),
            )
            in_trx = self.query(
                "SELECT trx_mysql_thread_id, trx_state, trx_query FROM "
                "information_schema.innodb_trx WHERE trx_mysql_thread_id <> CONNECTION_ID()"
            )
            return running + in_trx
        # SQLite: a writer holds the RESERVED lock; a reader in a transaction is
        # seen from the pooled connections themselves (no server to ask).
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return [("write lock held", str(exc))]
        conn.execute("ROLLBACK")
        return [("open transaction on a pooled connection",)] * _sqlite_idle_in_transaction(
            self.db
        )

    async def wait_quiet(self, timeout: float = 3.0) -> None:
        """Wait until no session is busy; fail with what is still busy."""
        deadline = time.monotonic() + timeout
        while True:
            busy = await asyncio.to_thread(self.busy_sessions)
            if not busy:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sessions still busy on the server: {busy}")
            await asyncio.sleep(0.02)

    # -- the ledger -----------------------------------------------------------

    def create_ledger(self) -> None:
        ident = "SERIAL" if self.kind == "postgres" else (
            "INTEGER AUTO_INCREMENT" if self.kind == "mysql" else "INTEGER"
        )  # fmt: skip
        self.query(f"DROP TABLE IF EXISTS {LEDGER}")
        self.query(
            f"CREATE TABLE {LEDGER} (id {ident} PRIMARY KEY, tag VARCHAR(64) NOT NULL)"
            + (" ENGINE=InnoDB" if self.kind == "mysql" else "")
        )

    def tags(self) -> dict[str, int]:
        """How many ledger rows each tag has, as committed on the server."""
        return dict(self.query(f"SELECT tag, count(*) FROM {LEDGER} GROUP BY tag"))


@asynccontextmanager
async def ledger_database(
    backend: str, request: Any, tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[Any, Outside]]:
    """A database (checked for leaks at the end, as ``model_database``'s) with a
    fresh ledger table, and its :class:`Outside` view."""
    async with model_database(backend, request, tmp_path, **options) as db:
        outside = Outside(db)
        try:
            await asyncio.to_thread(outside.create_ledger)
            yield db, outside
        finally:
            outside.close()


def _sqlite_idle_in_transaction(db: AnyDatabase) -> int:
    count = 0
    for pool in {id(p): p for p in (db._async_pool, db._sync_pool) if p is not None}.values():
        for conn in list(pool._idle):
            if conn.in_transaction():
                count += 1
    return count


async def insert(db: AnyDatabase, tag: str) -> None:
    """One ledger row, through the library."""
    await db.aexecute_sql(f"INSERT INTO {LEDGER} (tag) VALUES ({db.param})", (tag,))


def insert_sync(db: AnyDatabase, tag: str) -> None:
    db.execute_sql(f"INSERT INTO {LEDGER} (tag) VALUES ({db.param})", (tag,))


async def check_invariants(db: AnyDatabase, outside: Outside, probe: str) -> None:
    """Nothing leaked, nothing is left open on the server, and the next owner's
    autocommit write is committed at once."""
    await settle(db)
    assert_no_leaks(db)
    await outside.wait_quiet()
    # Every pooled connection serves one probe: none may hide a transaction.
    size = max(1, sum(s.idle for s in db.pool_stats() if "[sync]" not in s.name))
    gate = asyncio.Event()
    held = 0

    async def one(i: int) -> None:
        nonlocal held
        async with db:  # each holds one, so every pooled connection serves a probe
            held += 1
            if held == size:
                gate.set()
            await asyncio.wait_for(gate.wait(), 2.0)
            await insert(db, f"{probe}-{i}")  # autocommit

    results = await asyncio.gather(*(one(i) for i in range(size)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    tags = await asyncio.to_thread(outside.tags)
    missing = [i for i in range(size) if tags.get(f"{probe}-{i}") != 1]
    assert not missing, f"autocommit writes of the next owners not committed: {missing}"
    await settle(db)
    assert_no_leaks(db)


class Boom(Exception):
    """A failure a test raises on purpose."""


async def siblings_one_failing(db: AnyDatabase) -> Sequence[BaseException | None]:
    """Two sibling tasks, each in its own ``atomic()``: ``a`` writes "a" and fails
    after ``b`` wrote "b" and committed. Returns what each ended with."""
    a_inside = asyncio.Event()

    async def a() -> None:
        async with db.atomic():
            await insert(db, "a")
            a_inside.set()
            await asyncio.sleep(0.05)  # b begins and commits meanwhile
            raise Boom("a fails")

    async def b() -> None:
        await a_inside.wait()
        async with db.atomic():  # SQLite: waits for a's write lock, then goes on
            await insert(db, "b")

    return await asyncio.gather(a(), b(), return_exceptions=True)


async def sibling_savepoint_failing(db: AnyDatabase) -> None:
    """A task commits "outer" while a sibling's own block, writing "sibling", fails."""
    step = asyncio.Event()

    async def outer() -> None:
        async with db.atomic():
            await insert(db, "outer")
            step.set()
            await asyncio.sleep(0.05)  # the sibling's block fails meanwhile

    async def sibling() -> None:
        await step.wait()
        try:
            async with db.atomic():
                await insert(db, "sibling")
                raise Boom
        except Boom:
            pass

    await asyncio.gather(outer(), sibling())


@dataclass
class StepResult:
    """How one cancelled run ended."""

    k: int
    completed: bool  # the operation finished before the cancel arrived
    error: BaseException | None
    marks: dict[str, bool] = field(default_factory=dict)


async def cancel_at_every_step(
    op: Callable[[dict[str, bool]], Awaitable[Any]],
    check: Callable[[StepResult], Awaitable[None]],
    max_steps: int = 2000,
    stride: int = 1,
) -> int:
    """Run ``op`` and cancel it after k loop steps, for k = 0, 1, ... (every
    ``stride``-th k) until it completes on its own; call ``check`` after each
    run. Return the number of runs.

    ``op`` receives a dict in which it records how far it got (e.g. that its
    transaction body ran to the end), so ``check`` can tell which outcomes
    are allowed.
    """
    for k in range(0, max_steps * stride, stride):
        marks: dict[str, bool] = {}
        task = asyncio.ensure_future(op(marks))
        for _ in range(k):
            if task.done():
                break
            await asyncio.sleep(0)
        completed = task.done()
        task.cancel()
        error: BaseException | None = None
        try:
            await task
        except BaseException as exc:  # cancelled or failed: both are outcomes
            error = exc
            if not isinstance(exc, (asyncio.CancelledError, peewee.PeeweeException)):
                raise
        await check(StepResult(k, completed and error is None, error, marks))
        if completed:
            return k // stride + 1
    raise AssertionError(f"operation still running after {max_steps} runs")
