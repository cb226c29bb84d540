"""SQLite: ``AsyncSqliteDatabase``, one pool of ``sqlite3`` connections for threads and tasks.

See :mod:`fastpeewee.drivers.sqlite` for how a task's statement runs (inline
on the loop within a budget, or in a worker thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import peewee

from ..contracts.peewee import connect_sqlite, has_user_functions, sqlite_lock_type
from ..database import AsyncDatabase
from ..drivers.sqlite import SqliteConnection
from ..drivers.worker import Worker
from ..errors import translate_errors
from ..pool import Pool

__all__ = ["AsyncSqliteDatabase"]


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
        return not sqlite_lock_type(self) and type(self).begin is peewee.SqliteDatabase.begin

    def _executemany_supported(self) -> bool:
        return True

    def _reads_inline(self) -> bool:
        """May a task's SELECT run on the loop thread (see :data:`INLINE_BUDGET`)?

        Not when user-defined SQL functions are registered: their Python code
        could block, and SQLite cannot interrupt it.
        """
        return bool(self.inline_reads and not has_user_functions(self))

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
            config = dataclasses.replace(config, pool_size=1, pool_min_size=1)
        name = "fastpeewee-sqlite"

        def opened(worker: Worker) -> SqliteConnection:
            try:
                with translate_errors():
                    raw = connect_sqlite(self)
                    return SqliteConnection(raw, worker, self._reads_inline, memory)
            except BaseException:
                worker.stop()
                raise

        def open_sync(timeout: float) -> SqliteConnection:
            return opened(Worker(name))  # its thread starts with a task's first statement

        async def open_async(timeout: float) -> SqliteConnection:
            # Opened by the thread that will run its statements.
            worker = Worker(name)
            fut = worker.submit(opened, worker)
            assert fut is not None  # a new worker refuses nothing
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                fut.add_done_callback(_close_unclaimed)  # opened for nobody
                raise

        pool: Pool[SqliteConnection] = Pool(
            self._pool_name(), config, open_sync=open_sync, open_async=open_async
        )
        return pool


def _close_unclaimed(fut: asyncio.Future[SqliteConnection]) -> None:
    """Close a connection opened for an acquire that was cancelled meanwhile."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()
