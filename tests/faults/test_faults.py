"""Server-side faults: connections killed while idle, mid-query, mid-transaction.

PostgreSQL kills with ``pg_terminate_backend``, MariaDB with ``KILL``, each
sent from a side connection of its own.
"""

from __future__ import annotations

import asyncio

import peewee
import pytest

from fastpeewee import AsyncMySQLDatabase, TransactionLost

from ..conftest import assert_no_leaks, settle
from ..models import User

pytestmark = pytest.mark.backends("postgres", "mysql")

PIDS = {"postgres": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
SLEEPERS = {
    "postgres": "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)'",
    "mysql": "SELECT id FROM information_schema.processlist WHERE info = 'SELECT SLEEP(5)'",
}
SLEEP = {"postgres": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}


@pytest.fixture
def PID(backend) -> str:
    return PIDS[backend]


async def kill(db, pid: int) -> None:
    """Terminate a server connection from a connection of its own."""
    if isinstance(db, AsyncMySQLDatabase):
        await asyncio.to_thread(_kill_mysql, db, pid)
        return
    import asyncpg

    params = {k: db.connect_params[k] for k in ("host", "port", "user")}
    conn = await asyncpg.connect(database=db.database, **params)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def _kill_mysql(db, pid: int) -> None:
    import pymysql

    params = {k: db.connect_params[k] for k in ("host", "port", "user", "password")}
    conn = pymysql.connect(database=db.database, **params)
    try:
        with conn.cursor() as cur:
            cur.execute(f"KILL {int(pid)}")
    finally:
        conn.close()


async def test_idle_connection_killed_is_replaced(db, backend, PID):
    old_pid = (await db.aexecute_sql(PID)).fetchone()[0]
    await kill(db, old_pid)
    await asyncio.sleep(0.1)
    new_pid = (await db.aexecute_sql(PID)).fetchone()[0]  # no error reaches the caller
    assert new_pid != old_pid


async def test_idle_sync_connection_killed_is_replaced(db, backend, PID):
    def pid() -> int:
        return db.execute_sql(PID).fetchone()[0]

    old_pid = await asyncio.to_thread(pid)
    await kill(db, old_pid)
    await asyncio.sleep(0.1)
    assert await asyncio.to_thread(pid) != old_pid


async def test_held_connection_killed_reconnects_outside_transactions(db, backend, PID):
    async with db:
        old_pid = (await db.aexecute_sql(PID)).fetchone()[0]
        await kill(db, old_pid)
        await asyncio.sleep(0.1)
        with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
            await db.aexecute_sql(PID)
        # Not in a transaction: the next statement gets a fresh connection.
        assert (await db.aexecute_sql(PID)).fetchone()[0] != old_pid


async def test_killed_mid_transaction_commits_nothing_and_never_reconnects(db, backend, PID):
    with pytest.raises(TransactionLost):
        async with db.atomic():
            await User.acreate(username="first")
            pid = (await db.aexecute_sql(PID)).fetchone()[0]
            await kill(db, pid)
            await asyncio.sleep(0.1)
            with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
                await User.acreate(username="second")
            # Caught by the caller, but the transaction is gone: no silent retry.
            await User.acreate(username="third")
    await settle(db)
    assert_no_leaks(db)
    assert await db.count(User.select()) == 0


async def test_killed_mid_transaction_in_a_thread(db, backend, PID):
    def work() -> int:
        with db.atomic():
            User.create(username="t1")
            return db.execute_sql(PID).fetchone()[0]

    def work_killed(pid_box: list[int]) -> None:
        with db.atomic():
            User.create(username="t2")
            pid_box.append(db.execute_sql(PID).fetchone()[0])
            asyncio.run(kill(db, pid_box[0]))
            User.create(username="t3")

    await asyncio.to_thread(work)
    with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
        await asyncio.to_thread(work_killed, [])
    names = {u.username for u in await db.list(User.select())}
    assert names == {"t1"}


async def test_killed_mid_query_surfaces_an_error(db, backend):
    async def slow() -> None:
        await db.aexecute_sql(SLEEP[backend])

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    rows = (await db.aexecute_sql(SLEEPERS[backend])).fetchall()
    assert len(rows) == 1
    await kill(db, rows[0][0])
    with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
        await task
    await settle(db)
    assert_no_leaks(db)
    assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
