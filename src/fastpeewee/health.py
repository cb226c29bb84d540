"""Is the database there? One round trip on a pooled connection, bounded in time.

:meth:`AsyncDatabase.aping` / :meth:`AsyncDatabase.ping` call these. They
raise rather than return False: the error says why (refused, timed out, the
pool backing off, a wrong password; pool errors as they are, driver errors as
peewee's), and :func:`~fastpeewee.errors.is_unavailable`
tells an outage from a mistake. ``fastpeewee.integrations.health.readiness``
turns them into the ``(ok, detail)`` a ``/ready`` endpoint serves.

The connection comes from the pool directly, not from the caller's task or
transaction, so a ping inside a request or a transaction neither joins it nor
waits for it. A cold pool opens a connection for it (the ping then also
checks that connecting works); a connection that failed or did not answer is
closed, never handed on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import peewee

from .drivers.retry import failed_before_sending
from .errors import BRIDGE_HINT, MissingGreenletBridge, translate_errors

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["aping", "ping"]


async def aping(db: AsyncDatabase, timeout: float | None = None) -> float:
    """Acquire a connection and make one round trip, within ``timeout`` seconds
    (the database's ``ping_timeout`` by default); return the seconds it took."""
    budget = db.pool_config.ping_timeout if timeout is None else timeout
    started = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            pool = db._async_pool_get()
            conn = await pool.aacquire()
            try:
                try:
                    with translate_errors():
                        await conn.aping()
                except Exception as exc:
                    if not failed_before_sending(exc):
                        raise
                    # An idle connection the server had ended, found only now:
                    # the ping never left; once more, on a connection opened now.
                    conn = await pool.areplace(conn)
                    with translate_errors():
                        await conn.aping()
            except BaseException:
                pool.discard(conn)  # interrupted or failed: its state is unknown
                raise
            pool.release(conn)
    except TimeoutError as exc:
        raise _no_answer(db, budget) from exc
    return time.monotonic() - started


def ping(db: AsyncDatabase, timeout: float | None = None) -> float:
    """Sync twin of :func:`aping`, for threads. Taking the connection is bounded by
    ``acquire_timeout``, the round trip by ``timeout``."""
    if asyncio._get_running_loop() is not None:
        raise MissingGreenletBridge(
            "db.ping() would block the event loop; use `await db.aping()`. " + BRIDGE_HINT
        )
    budget = db.pool_config.ping_timeout if timeout is None else timeout
    started = time.monotonic()
    pool = db._sync_pool_get()
    conn = pool.acquire()
    try:
        with translate_errors():
            try:
                conn.ping(budget)
            except TimeoutError as exc:
                raise _no_answer(db, budget) from exc
    except BaseException:
        pool.discard(conn)
        raise
    pool.release(conn)
    return time.monotonic() - started


def _no_answer(db: AsyncDatabase, budget: float) -> peewee.OperationalError:
    return peewee.OperationalError(
        f"{db._pool_name()}: no answer to a ping within {budget:.2f} s (connecting "
        "included); the database is down, overloaded or unreachable"
    )
