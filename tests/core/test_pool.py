"""Pool sizing, exhaustion, waiting, recycling and statistics, on each backend."""

from __future__ import annotations

import asyncio
import threading
import time

import peewee
import pytest

from fastpeewee import PoolClosed, PoolConfig, PoolTimeout, TooManyWaiters

from ..conftest import make_database, model_database
from ..models import User


@pytest.fixture
async def small_db(backend, request, tmp_path):
    """Two connections, half a second to get one."""
    async with model_database(
        backend, request, tmp_path, pool_size=2, acquire_timeout=0.5
    ) as database:
        yield database


async def hold(db, started: asyncio.Event, release: asyncio.Event) -> None:
    async with db.atomic():
        await db.aexecute_sql("SELECT 1")
        started.set()
        await release.wait()


async def test_exhaustion_raises_pool_timeout_within_its_bound(small_db):
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]
    holders = [asyncio.create_task(hold(small_db, s, release)) for s in started]
    await asyncio.gather(*(s.wait() for s in started))
    begun = time.monotonic()
    with pytest.raises(PoolTimeout) as caught:
        await User.aget_or_none(User.id == 1)
    waited = time.monotonic() - begun
    assert 0.4 <= waited < 1.5, waited
    message = str(caught.value)
    assert "0.50 s" in message and "pool_size=2" in message and "in_use=2" in message
    assert isinstance(caught.value, peewee.OperationalError)
    release.set()
    await asyncio.gather(*holders)
    assert await db_count(small_db) == 0  # recovered once the holders finished
    assert small_db.pool_stats()[0].timeouts >= 1


async def db_count(db) -> int:
    return await db.count(User.select())


async def test_waiters_are_served_in_turn(small_db):
    async def one(n: int) -> None:
        async with small_db.atomic():
            await User.acreate(username=f"w{n}")
            await asyncio.sleep(0.005)

    await asyncio.gather(*(one(n) for n in range(20)))
    assert await db_count(small_db) == 20
    stats = small_db.pool_stats()[0]
    assert stats.size <= 2 and stats.timeouts == 0


async def test_too_many_waiters_fail_at_once(backend, request, tmp_path):
    database = make_database(
        backend, request, tmp_path, pool_size=1, max_waiting=2, acquire_timeout=2.0
    )
    try:
        release = asyncio.Event()
        started = asyncio.Event()
        holder = asyncio.create_task(hold(database, started, release))
        await started.wait()
        waiters = [asyncio.create_task(database.aexecute_sql("SELECT 1")) for _ in range(2)]
        await asyncio.sleep(0.05)
        begun = time.monotonic()
        with pytest.raises(TooManyWaiters, match="max_waiting=2"):
            await database.aexecute_sql("SELECT 1")
        assert time.monotonic() - begun < 0.5
        release.set()
        await asyncio.gather(holder, *waiters)
    finally:
        await database.close_pool()


async def test_cancelled_waiters_lose_no_slot(small_db):
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]
    holders = [asyncio.create_task(hold(small_db, s, release)) for s in started]
    await asyncio.gather(*(s.wait() for s in started))
    waiters = [asyncio.create_task(small_db.aexecute_sql("SELECT 1")) for _ in range(6)]
    await asyncio.sleep(0.05)
    assert small_db.pool_stats()[0].waiting == 6
    # Cancel in reverse order, one of them right as a connection comes back.
    release.set()
    for task in reversed(waiters):
        task.cancel()
    await asyncio.gather(*holders)
    await asyncio.gather(*waiters, return_exceptions=True)
    stats = small_db.pool_stats()[0]
    assert stats.waiting == 0 and stats.in_use == 0 and stats.size <= 2
    begun = time.monotonic()
    await asyncio.gather(small_db.aexecute_sql("SELECT 1"), small_db.aexecute_sql("SELECT 1"))
    assert time.monotonic() - begun < 0.4  # both slots are really free


async def test_threads_time_out_too(small_db):
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]

    def sync_hold(started_flag: threading.Event, stop: threading.Event) -> None:
        with small_db.atomic():
            User.select().count()
            started_flag.set()
            stop.wait(5)

    # On PostgreSQL threads have a pool of their own: fill that one.
    flags = [threading.Event(), threading.Event()]
    stop = threading.Event()
    threads = [threading.Thread(target=sync_hold, args=(f, stop)) for f in flags]
    for t in threads:
        t.start()
    for f in flags:
        assert f.wait(5)
    begun = time.monotonic()
    with pytest.raises(PoolTimeout):
        await asyncio.to_thread(lambda: User.select().count())
    assert 0.4 <= time.monotonic() - begun < 1.5
    stop.set()
    for t in threads:
        t.join()
    del release, started


async def test_max_lifetime_recycles_connections(backend, request, tmp_path):
    database = make_database(backend, request, tmp_path, max_lifetime=0.05)
    try:
        await database.aexecute_sql("SELECT 1")
        await asyncio.sleep(0.1)
        await database.aexecute_sql("SELECT 1")
        stats = database.pool_stats()[0]
        assert stats.opened == 2 and stats.closed >= 1
    finally:
        await database.close_pool()


async def test_max_idle_closes_spare_connections(backend, request, tmp_path):
    database = make_database(backend, request, tmp_path, max_idle=0.05, pool_min_size=1)
    try:
        await asyncio.gather(*(database.aexecute_sql("SELECT 1") for _ in range(3)))
        opened = database.pool_stats()[0].size
        await asyncio.sleep(0.1)
        await database.aexecute_sql("SELECT 1")
        stats = database.pool_stats()[0]
        assert stats.size <= max(1, opened - 1) and stats.closed >= 1
    finally:
        await database.close_pool()


async def test_close_pool_is_idempotent_and_reopens_lazily(db):
    await User.acreate(username="before")
    await db.close_pool()
    await db.close_pool()
    assert db.pool_stats() == []
    assert await db_count(db) == 1  # a fresh pool opens on the next query


async def test_closed_pool_refuses_new_acquires(db):
    await db.aexecute_sql("SELECT 1")
    pool = db._async_pool_get()
    pool.close()
    with pytest.raises(PoolClosed, match="is closed"):
        await pool.aacquire()
    assert isinstance(PoolClosed("x"), peewee.InterfaceError)


async def test_close_pool_waits_for_busy_tasks_then_closes(small_db):
    release = asyncio.Event()
    started = asyncio.Event()
    holder = asyncio.create_task(hold(small_db, started, release))
    await started.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    begun = time.monotonic()
    await small_db.close_pool()
    assert time.monotonic() - begun < 1.0
    await holder


def test_pool_config_rejects_nonsense():
    with pytest.raises(ValueError, match="pool_size"):
        PoolConfig(pool_size=0)
    with pytest.raises(ValueError, match="pool_min_size"):
        PoolConfig(pool_size=2, pool_min_size=3)
    with pytest.raises(ValueError, match="acquire_timeout"):
        PoolConfig(acquire_timeout=0)
    with pytest.raises(ValueError, match="max_waiting"):
        PoolConfig(max_waiting=-1)
    with pytest.raises(TypeError):
        PoolConfig(10)  # type: ignore[call-arg]  # keyword-only


def test_a_connection_outliving_its_pool_goes_back_to_it_and_closes(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    try:
        db.connect()
        old = db._sync_pool_get()
        db.close_all()  # the held connection stays usable until released
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1  # type: ignore[index]
        db.close()
        stats = old.stats()
        assert stats.in_use == 0 and stats.closed == stats.opened == 1
        assert db.execute_sql("SELECT 2").fetchone()[0] == 2  # type: ignore[index]  # a fresh pool
        assert db._sync_pool_get() is not old
    finally:
        db.close_all()


@pytest.mark.parametrize("side", ["sync", "async"])
async def test_a_deadline_passed_before_opening_frees_the_slot_once(
    backend, request, tmp_path, side
):
    # A budget so short it is gone before the pool gets to open a connection.
    db = make_database(backend, request, tmp_path, acquire_timeout=1e-9)
    try:
        if side == "sync":
            with pytest.raises(PoolTimeout):
                await asyncio.to_thread(db._sync_pool_get().acquire)
            stats = db._sync_pool_get().stats()
        else:
            with pytest.raises(PoolTimeout):
                await db._async_pool_get().aacquire()
            stats = db._async_pool_get().stats()
        assert stats.size == 0 and stats.in_use == 0 and stats.timeouts == 1
    finally:
        await db.close_pool()
        db.close_all()


async def test_take_idle_hands_out_only_a_connection_fit_at_once(backend, request, tmp_path):
    """``Pool.take_idle`` (a task's checkout with no coroutine) takes an idle
    connection only when it needs nothing more; otherwise it leaves the choice
    to ``aacquire`` (open one, or replace an expired one) and takes nothing."""
    database = make_database(backend, request, tmp_path, pool_size=2, max_lifetime=0.3)
    try:
        pool = database._async_pool_get()
        assert pool.take_idle() is None  # nothing idle yet
        assert pool.stats().in_use == 0
        await database.aexecute_sql("SELECT 1")  # one connection, idle afterwards
        conn = pool.take_idle()
        assert conn is not None
        stats = pool.stats()
        assert (stats.idle, stats.in_use) == (0, 1), stats
        pool.release(conn)
        await asyncio.sleep(0.4)  # past max_lifetime: aacquire's to replace
        assert pool.take_idle() is None
        assert (pool.stats().idle, pool.stats().in_use) == (1, 0)
        conn = await pool.aacquire()
        assert conn is not None
        pool.release(conn)
        stats = pool.stats()
        assert (stats.opened, stats.closed) == (2, 1), stats
        await database.close_pool()
        assert pool.take_idle() is None  # a closed pool hands out nothing
    finally:
        await database.close_pool()
