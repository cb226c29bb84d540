"""Tests that roll back: one transaction per test, shared by everything the test runs.

``TestTransaction(db)`` pins one connection of ``db``'s thread pool, opens a
transaction on it and routes every statement of every owner to it until it
ends, when it rolls everything back (see :mod:`fastpeewee.state.pinned` for
the rules: each owner's ``BEGIN``/``COMMIT``/``ROLLBACK`` become savepoints).
The test's own code, the app it drives (through ``httpx.ASGITransport`` or a
test client, with ``DatabaseMiddleware`` in place), the tasks it starts and
the sync code in worker threads all see the same uncommitted rows, and none
of them reaches the next test. Example::

    with TestTransaction(db):
        User.create(email="ann@example.com")   # gone after the block

At the end it checks for leaks and raises :class:`ConnectionLeak` naming
them: a task or thread still alive that left a transaction open or a
connection held by ``connect()``; a pool connection still checked out; a
session of the database's pools that the server sees inside a transaction.
:func:`find_leaks` is the same check for tests that run without a test
transaction. The pytest fixtures are in the ``fastpeewee_pytest`` module (the plugin).
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

import peewee

from .database import AsyncDatabase
from .drivers.base import Connection
from .pool import Pool
from .state.pinned import PinnedConnection, TestTransactionConflict
from .state.thread import _run_sync

__all__ = ["ConnectionLeak", "TestTransaction", "TestTransactionConflict", "find_leaks"]


class ConnectionLeak(AssertionError):
    """A test left a connection checked out or a transaction open (the message says which)."""


class TestTransaction:
    """One transaction for a whole test, rolled back at the end (``with`` or ``async with``).

    ``check_leaks=False`` skips the checks at the end. ``statements`` counts
    the statements run inside it.
    """

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, db: AsyncDatabase, *, check_leaks: bool = True) -> None:
        self.db = db
        self.check_leaks = check_leaks
        self._pin: PinnedConnection | None = None
        self.statements = 0

    # -- begin / end ------------------------------------------------------------

    def begin(self) -> None:
        """Pin a connection and open the test transaction (from a thread with no loop)."""
        db = self.db
        if db._pinned is not None:
            raise peewee.InterfaceError(
                f"{type(db).__name__} is in a test transaction already; end it first"
            )
        pool: Pool[Any] = db._sync_pool_get()
        conn: Connection = pool.acquire()
        try:
            _run_sync(conn, "BEGIN", (), None)
        except BaseException:
            conn.broken = True
            pool.release(conn)
            raise
        self._pin = PinnedConnection(db, conn, isinstance(db, peewee.PostgresqlDatabase))
        db._pinned = self._pin

    def end(self) -> None:
        """Roll back everything, give the connection back, then check for leaks."""
        pin = self._pin
        if pin is None:
            return
        self._pin = None
        leaks = pin.leaks() if self.check_leaks else []
        pin.shut()
        self.statements = pin.statements
        self.db._pinned = None
        conn = pin.conn
        try:
            conn.rollback()
        except Exception:
            conn.broken = True  # closed by the pool: nothing of the test survives
        conn.pool.release(conn)
        if self.check_leaks:
            leaks += find_leaks(self.db)
        if leaks:
            raise ConnectionLeak(_leak_message(self.db, leaks))

    async def abegin(self) -> None:
        """:meth:`begin` from async code (the blocking part in a worker thread)."""
        await asyncio.to_thread(self.begin)

    async def aend(self) -> None:
        """:meth:`end` from async code (the blocking part in a worker thread)."""
        await asyncio.to_thread(self.end)

    def __enter__(self) -> TestTransaction:
        self.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()

    async def __aenter__(self) -> TestTransaction:
        await self.abegin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aend()


def _leak_message(db: AsyncDatabase, leaks: list[str]) -> str:
    lines = "\n".join(f"  - {leak}" for leak in leaks)
    return (
        f"{type(db).__name__}({db.database!r}): the test leaked:\n{lines}\n"
        "End every transaction and close() every connect() inside the test, and wait "
        "for the tasks and threads it starts before it returns."
    )


def find_leaks(db: AsyncDatabase, wait: float = 1.0) -> list[str]:
    """What ``db``'s pools and server say is still open, as messages (none: no leak).

    Pool counters (a connection checked out, a caller waiting) are polled for
    up to ``wait`` seconds, for releases already under way; then the server
    is asked whether any session of the pools is inside a transaction
    (``pg_stat_activity``, ``information_schema.innodb_trx``; for SQLite each
    pooled connection's ``in_transaction``). Call it from a thread with no
    running event loop.
    """
    deadline = time.monotonic() + wait
    while True:
        busy = [s for s in db.pool_stats() if s.in_use or s.waiting]
        if (not busy and not db._releasing) or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    found = [
        f"pool {s.name!r} has {s.in_use} connection(s) checked out and {s.waiting} waiter(s)"
        for s in busy
    ]
    return found + _server_view(db)


def _pooled(db: AsyncDatabase) -> list[Connection]:
    """Every connection of ``db``'s pools, idle or checked out."""
    conns: list[Connection] = []
    for pool in {id(p): p for p in (db._sync_pool, db._async_pool) if p is not None}.values():
        with pool._lock:
            conns.extend([*pool._idle, *pool._in_use])
    return conns


def _session_id(conn: Connection) -> int | None:
    raw = conn.raw
    info = getattr(raw, "info", None)
    if info is not None and hasattr(info, "backend_pid"):
        return int(info.backend_pid)  # psycopg
    for name in ("get_server_pid", "thread_id"):  # asyncpg; PyMySQL and asyncmy
        method = getattr(raw, name, None)
        if callable(method):
            try:
                return int(method())
            except Exception:
                return None
    return None


def _server_view(db: AsyncDatabase) -> list[str]:
    conns = _pooled(db)
    if isinstance(db, peewee.SqliteDatabase):
        return [
            "a pooled SQLite connection is inside a transaction"
            for conn in conns
            if getattr(conn.raw, "in_transaction", False)
        ]
    ids = [i for i in map(_session_id, conns) if i is not None]
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    if isinstance(db, peewee.PostgresqlDatabase):
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            f"AND state LIKE 'idle in transaction%%' AND pid IN ({marks})"
        )
    else:
        sql = (
            "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx "
            f"WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_mysql_thread_id IN ({marks})"
        )
    pool = db._sync_pool_get()
    conn = pool.acquire()
    try:
        rows = _run_sync(conn, sql, tuple(ids), None).fetchall()
    finally:
        pool.release(conn)
    return [f"the server sees session {row[0]} of the pools inside a transaction" for row in rows]
