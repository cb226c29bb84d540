"""The leak check itself, and which pool serves which caller."""

from __future__ import annotations

import asyncio

import pytest

from ..conftest import assert_no_leaks
from ..models import User

SYNC_DRIVERS = {"sqlite": "sqlite3", "postgres": "psycopg", "mysql": "pymysql"}
ASYNC_DRIVERS = {"sqlite": "sqlite3", "postgres": "asyncpg", "mysql": "asyncmy"}


async def test_a_leaked_connection_fails_the_check(db):
    pool = db._async_pool_get()
    conn = await pool.aacquire()
    with pytest.raises(AssertionError, match="leaked connection"):
        assert_no_leaks(db)
    pool.release(conn)
    assert_no_leaks(db)


async def test_threads_use_real_sync_connections(db, backend):
    def in_thread() -> tuple[str, str]:
        with db.atomic():
            User.create(username="t")
            return type(db._current_state()).__name__, type(db.connection()).__module__

    scope_kind, driver = await asyncio.to_thread(in_thread)
    assert scope_kind == "ThreadState"
    assert driver.startswith(SYNC_DRIVERS[backend])
    async with db:
        assert type(db._current_state().conn.raw).__module__.startswith(ASYNC_DRIVERS[backend])
    names = [s.name for s in db.pool_stats()]
    assert len(names) == (1 if backend == "sqlite" else 2)
