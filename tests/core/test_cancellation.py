"""Cancelling a task mid-query or mid-transaction leaves the pool whole and commits nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from ..conftest import assert_no_leaks, settle
from ..models import User

# Statements that run until interrupted: a server-side sleep, or (SQLite, which
# has no sleep) a recursive CTE that never ends.
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c",
    "postgres": "SELECT pg_sleep(20)",
    "mysql": "SELECT SLEEP(20)",
}
# How many of those sleeps the server still runs.
RUNNING = {
    "postgres": "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(20)%'",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE info LIKE 'SELECT SLEEP(20)%'",
}


async def cancel_after(coro, delay: float = 0.05) -> None:
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(delay)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def next_query_is_prompt(db) -> None:
    begun = time.monotonic()
    assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
    assert time.monotonic() - begun < 1.0


async def test_cancel_mid_query(db, backend):
    await cancel_after(db.aexecute_sql(SLOW[backend]))
    await settle(db)
    assert_no_leaks(db)
    await next_query_is_prompt(db)
    if backend != "sqlite":
        await assert_server_stopped(db, backend)


async def assert_server_stopped(db, backend: str) -> None:
    """The cancelled statement no longer runs on the server."""
    for _ in range(50):
        if (await db.aexecute_sql(RUNNING[backend])).fetchone()[0] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{SLOW[backend]} still running after cancellation")


async def test_cancel_mid_transaction_commits_nothing(db, backend):
    async def work() -> None:
        async with db.atomic():
            await User.acreate(username="doomed")
            await db.aexecute_sql(SLOW[backend])

    await cancel_after(work())
    await settle(db)
    assert_no_leaks(db)
    assert await db.count(User.select()) == 0
    await next_query_is_prompt(db)


async def test_cancel_in_a_nested_savepoint(db, backend):
    async def work() -> None:
        async with db.atomic():
            await User.acreate(username="outer")
            async with db.atomic():
                await User.acreate(username="inner")
                await db.aexecute_sql(SLOW[backend])

    await cancel_after(work())
    await settle(db)
    assert await db.count(User.select()) == 0
    assert_no_leaks(db)


async def test_timeout_around_a_query(db, backend):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await db.aexecute_sql(SLOW[backend])
    await settle(db)
    assert_no_leaks(db)
    await next_query_is_prompt(db)


async def test_cancel_inside_db_run(db, backend):
    def sync_work() -> None:
        User.create(username="bridge")
        db.execute_sql(SLOW[backend])

    async def work() -> None:
        async with db.atomic():
            await db.run(sync_work)

    await cancel_after(work())
    await settle(db)
    assert await db.count(User.select()) == 0
    assert_no_leaks(db)


async def test_many_cancellations_leave_the_pool_whole(db, backend):
    tasks = [asyncio.create_task(db.aexecute_sql(SLOW[backend])) for _ in range(6)]
    await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    await settle(db)
    assert_no_leaks(db)
    await asyncio.gather(*(next_query_is_prompt(db) for _ in range(4)))
    if backend != "sqlite":
        await assert_server_stopped(db, backend)
