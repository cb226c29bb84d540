"""SQLite on the standard library's ``sqlite3``, for threads and tasks alike.

One pool of ``sqlite3`` connections serves both worlds: a thread runs its
statement directly, a task sends the whole statement (execute, fetch, close)
to a worker thread in one hop; a task's SELECT is first tried on the loop
thread itself, within a 2 ms budget and without waiting for locks. A
``:memory:`` database is one connection, so sync and async code see the same
tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import peewee

from .._peewee import connect_sqlite
from ..bulk import ManyRows
from ..cursor import Cursor, StreamCursor
from ..database import AsyncDatabase
from ..errors import translate_errors
from ..pool import Pool
from .base import Connection, Params

__all__ = ["AsyncSqliteDatabase", "SqliteConnection"]

T = TypeVar("T")


# A SELECT from a task first runs on the loop thread itself: most finish in
# microseconds, far below the cost of a hop to a worker thread. It may take at
# most this long (checked every 1,000 SQLite VM steps) and never waits for a
# lock; otherwise it is abandoned and rerun in a worker thread.
INLINE_BUDGET = 0.002
_INLINE_GIVE_UP = ("interrupted", "locked", "busy")
# Functions peewee itself registers on every SqliteDatabase (pure, quick).
_PEEWEE_FUNCTIONS = frozenset({"date_part", "date_trunc", "_pw_json_contains", "regexp"})


class SqliteConnection(Connection):
    """A ``sqlite3`` connection, used from the caller's thread or a worker thread."""

    __slots__ = ("_busy_ms", "_executor", "_inline_ok", "_whole_database")

    def __init__(
        self,
        raw: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        inline_ok: Callable[[], bool] = lambda: False,
        whole_database: bool = False,
    ) -> None:
        super().__init__(raw)
        self._executor = executor
        self._inline_ok = inline_ok
        self._busy_ms: int | None = None
        # ":memory:": this one connection is the database, so it is never
        # closed for having changed its session (there is no other to share it).
        self._whole_database = whole_database

    def note(self, sql: str) -> None:
        if not self._whole_database:
            super().note(sql)

    def usable(self) -> bool:
        try:
            self.raw.total_changes  # noqa: B018 (raises once closed)
        except sqlite3.ProgrammingError:
            return False
        return True

    def in_transaction(self) -> bool:
        try:
            return bool(self.raw.in_transaction)
        except sqlite3.ProgrammingError:
            return False

    def close(self) -> None:
        self.raw.close()

    def execute(self, sql: str, params: Params) -> Cursor:
        if type(params) is ManyRows:
            return self._executemany(sql, params)
        cur = self.raw.execute(sql, params)
        try:
            rows = cur.fetchall()
            return Cursor(rows, cur.rowcount, cur.lastrowid, cur.description)
        finally:
            cur.close()

    def _executemany(self, sql: str, rows: ManyRows) -> Cursor:
        """Run ``sql`` for every row inside a savepoint: all rows or none."""
        raw = self.raw
        raw.execute("SAVEPOINT fastpeewee_many")
        try:
            cur = raw.executemany(sql, rows)
            count = cur.rowcount
            cur.close()
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK TO SAVEPOINT fastpeewee_many")
                raw.execute("RELEASE SAVEPOINT fastpeewee_many")
            raise
        raw.execute("RELEASE SAVEPOINT fastpeewee_many")
        # What cursor.lastrowid gives after peewee's one multi-row INSERT.
        lastrowid = raw.execute("SELECT last_insert_rowid()").fetchone()[0]
        return Cursor((), count, lastrowid, None)

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        if sql.startswith("SELECT") and type(params) is not ManyRows and self._inline_ok():
            cursor = self._inline(sql, params)
            if cursor is not None:
                return cursor
        return await self._offload(self.execute, sql, params)

    def _inline(self, sql: str, params: Params) -> Cursor | None:
        """Run a read on the loop thread within :data:`INLINE_BUDGET`; None: not done."""
        raw = self.raw
        if self._busy_ms is None:
            self._busy_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
        deadline = time.perf_counter() + INLINE_BUDGET
        raw.set_progress_handler(lambda: time.perf_counter() > deadline, 1000)
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            return self.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc) for word in _INLINE_GIVE_UP):
                return None  # too long, or it would wait for a lock: a worker does it
            raise
        finally:
            raw.set_progress_handler(None, 0)
            raw.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    async def aping(self) -> None:
        await self._offload(self.execute, "SELECT 1", ())

    async def arollback(self) -> None:
        await self._offload(self.execute, "ROLLBACK", ())

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        cur = await self._offload(self.raw.execute, sql, params)

        async def fetch(n: int) -> Sequence[Any]:
            rows: list[Any] = await self._offload(cur.fetchmany, n)
            return rows

        async def cleanup() -> None:
            await self._offload(cur.close)

        return StreamCursor(fetch, cleanup, cur.description, batch_size)

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a worker thread; on cancellation interrupt it and wait for it."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The worker keeps running a cancelled statement: stop it, and keep
            # the connection out of the pool until it is really idle again.
            self.raw.interrupt()
            await _settle(fut)
            raise


async def _settle(fut: asyncio.Future[Any]) -> None:
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            continue  # interrupt() makes the worker return promptly
    if not fut.cancelled():
        fut.exception()  # retrieved: no "exception was never retrieved" noise


class AsyncSqliteDatabase(AsyncDatabase, peewee.SqliteDatabase):
    """A ``peewee.SqliteDatabase`` for async and sync code, with a connection pool.

    Example::

        db = AsyncSqliteDatabase("app.db", pool_size=5, pragmas={"journal_mode": "wal"})
        users = await db.list(User.select())
    """

    inline_reads = True
    """Let short SELECTs from tasks run on the loop thread; False: always a worker thread."""

    def init(
        self,
        database: str | None,
        pragmas: Any = None,
        timeout: int = 5,
        returning_clause: Any = None,
        **kwargs: Any,
    ) -> None:
        # Connections move between the caller's thread and worker threads; the
        # pool guarantees one user at a time.
        kwargs.setdefault("check_same_thread", False)
        super().init(database, pragmas, timeout, returning_clause, **kwargs)

    def _plain_begin(self) -> bool:
        default = getattr(self, "_lock_type", None)  # peewee's, set in __init__
        return not default and type(self).begin is peewee.SqliteDatabase.begin

    def _executemany_supported(self) -> bool:
        return True

    def _reads_inline(self) -> bool:
        """May a task's SELECT run on the loop thread (see :data:`INLINE_BUDGET`)?

        Not when user-defined SQL functions are registered: their Python code
        could block, and SQLite cannot interrupt it.
        """
        state = vars(self)
        return bool(
            self.inline_reads
            and state.get("_functions", {}).keys() <= _PEEWEE_FUNCTIONS
            and not state.get("_aggregates")
            and not state.get("_window_functions")
            and not state.get("_table_functions")
        )

    def _new_sync_pool(self) -> Pool[Any]:
        return self._shared_pool()

    def _new_async_pool(self) -> Pool[Any]:
        return self._shared_pool()

    def _shared_pool(self) -> Pool[Any]:
        """Threads and tasks share one pool: sqlite3 serves both."""
        for existing in (self._sync_pool, self._async_pool):
            if existing is not None and not existing.closed:
                return existing
        config = self.pool_config
        memory = self.database == ":memory:"
        if memory:
            # Each connection to :memory: is its own empty database: use one.
            config = dataclasses.replace(config, max_size=1, min_size=1)
        executor = ThreadPoolExecutor(config.max_size, thread_name_prefix="fastpeewee-sqlite")

        def open_sync(timeout: float) -> SqliteConnection:
            with translate_errors():
                return SqliteConnection(
                    connect_sqlite(self), executor, self._reads_inline, memory
                )

        async def open_async(timeout: float) -> SqliteConnection:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, open_sync, timeout)

        pool: Pool[SqliteConnection] = Pool(
            self._pool_name(),
            config,
            open_sync=open_sync,
            open_async=open_async,
            on_close=lambda: executor.shutdown(wait=False),
        )
        return pool
