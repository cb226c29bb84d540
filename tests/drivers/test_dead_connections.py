"""Dead and silent connections in the pool (RELIABILITY R19).

The server terminates every idle pooled connection: the next callers succeed
on fresh connections and never see an error. A NAT drops an idle connection
silently (no FIN): the liveness check gives up after ``ping_timeout`` and the
caller is served by a fresh connection, well within ``acquire_timeout``.

The server side is reached through connections of the test's own (psycopg,
PyMySQL), never through the pools under test; black holes through the
loopback proxy of ``tests/proxy.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fastpeewee import AsyncDatabase, PoolConfig
from fastpeewee.drivers.retry import NotSent, may_retry

from ..conftest import AnyDatabase, assert_no_leaks, settle
from ..proxy import proxied_database

pytestmark = pytest.mark.backends("postgres", "mysql")

POOL = 4
PID = {"postgres": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


class Side:
    """A connection of the test's own to the server, beside the pools under test."""

    def __init__(self, backend: str, server: Any) -> None:
        self.backend = backend
        if backend == "postgres":
            import psycopg

            params = {**server.connect_params, "dbname": server.database}
            self.conn: Any = psycopg.connect(autocommit=True, **params)
        else:
            import pymysql

            params = {**server.connect_params, "database": server.database}
            self.conn = pymysql.connect(autocommit=True, ssl_disabled=True, **params)

    def _rows(self, sql: str, args: Any = None) -> list[Any]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, args)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def kill(self, pids: list[int]) -> None:
        """Terminate the server sessions ``pids`` and wait until they are gone."""
        for pid in pids:
            if self.backend == "postgres":
                assert self._rows("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
            else:
                self._rows(f"KILL {int(pid)}")
        deadline = time.monotonic() + 10
        while self.alive(pids):
            assert time.monotonic() < deadline, f"sessions {pids} outlived their kill"
            time.sleep(0.005)

    def alive(self, pids: list[int]) -> list[int]:
        if self.backend == "postgres":
            sql = "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)"
            return [row[0] for row in self._rows(sql, (list(pids),))]
        marks = ", ".join(str(int(pid)) for pid in pids)
        sql = f"SELECT id FROM information_schema.processlist WHERE id IN ({marks})"
        return [row[0] for row in self._rows(sql)]

    def close(self) -> None:
        self.conn.close()


def _server(backend: str, request: pytest.FixtureRequest) -> Any:
    name = "postgres_server" if backend == "postgres" else "mariadb_server"
    return request.getfixturevalue(name)


@pytest.fixture
def side(backend: str, request: pytest.FixtureRequest) -> Iterator[Side]:
    conn = Side(backend, _server(backend, request))
    yield conn
    conn.close()


async def warm(db: AsyncDatabase, backend: str, n: int = POOL) -> list[int]:
    """Fill the async pool with ``n`` connections (``n`` holders at once); return their ids."""
    barrier = asyncio.Barrier(n)
    pids: list[int] = []

    async def hold() -> None:
        async with db:
            pids.append((await db.aexecute_sql(PID[backend])).fetchone()[0])  # type: ignore[index]
            await barrier.wait()

    await asyncio.gather(*(hold() for _ in range(n)))
    await settle(db)
    assert db.pool_stats()[0].idle == n
    return pids


def warm_sync(db: AnyDatabase, backend: str, n: int = POOL) -> list[int]:
    """Fill the thread pool with ``n`` connections (``n`` threads at once)."""
    barrier = threading.Barrier(n)
    pids: list[int] = []

    def hold() -> None:
        with db.connection_context():
            pids.append(db.execute_sql(PID[backend]).fetchone()[0])  # type: ignore[index]
            barrier.wait()

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pids) == n
    return pids


async def queries(db: AsyncDatabase, backend: str, mode: str, n: int = 2 * POOL) -> list[int]:
    """Run ``n`` statements one after another or all at once; return the session ids."""

    async def one() -> int:
        return int((await db.aexecute_sql(PID[backend])).fetchone()[0])  # type: ignore[index]

    if mode == "sequential":
        return [await one() for _ in range(n)]
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors  # every caller served, none saw an error
    return [r for r in results if isinstance(r, int)]


def queries_sync(db: AsyncDatabase, backend: str, mode: str, n: int = 2 * POOL) -> list[int]:
    def one() -> int:
        return int(db.execute_sql(PID[backend]).fetchone()[0])  # type: ignore[index]

    if mode == "sequential":
        return [one() for _ in range(n)]
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(one())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


# -- the server terminates idle connections (issue item 4) ---------------------


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
async def test_terminated_idle_connections_are_replaced_unseen(db, backend, side, mode, request):
    for _ in range(3):
        pids = await warm(db, backend)
        await asyncio.to_thread(side.kill, pids)
        fresh = await queries(db, backend, mode)  # no error reaches a caller
        assert not set(fresh) & set(pids)
    await settle(db)
    assert_no_leaks(db)


async def test_connections_terminated_while_the_loop_was_blocked(db, backend, side):
    # The loop is busy while the server ends the sessions: their last words
    # (PostgreSQL's FATAL, the close) wait unread in the sockets when the next
    # caller takes a connection. Nothing but the pool's hand-out check runs
    # between its acquire and the statement it sends.
    pids = await warm(db, backend)
    side.kill(pids)  # blocks the loop on purpose
    time.sleep(0.05)  # noqa: ASYNC251 (the loop stays blocked: the closes arrive unread)
    fresh = await queries(db, backend, "sequential")
    assert not set(fresh) & set(pids)
    stats = db.pool_stats()[0]
    assert stats.closed >= POOL, stats


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
async def test_terminated_idle_sync_connections_are_replaced_unseen(db, backend, side, mode):
    for _ in range(3):
        pids = await asyncio.to_thread(warm_sync, db, backend)
        await asyncio.to_thread(side.kill, pids)
        fresh = await asyncio.to_thread(queries_sync, db, backend, mode)
        assert not set(fresh) & set(pids)


@pytest.mark.backends("postgres")
async def test_fatal_message_read_before_the_close_arrives(backend, request, side):
    # pg_terminate_backend: the backend sends FATAL, then exits and its socket
    # closes, a few milliseconds later. In between, asyncpg has read the FATAL
    # while idle (and now waits for a ReadyForQuery that never comes) but does
    # not know the link is gone: the next command fails in asyncpg *before
    # anything is sent*. The proxy holds the close back to keep that window open.
    server = _server(backend, request)
    async with proxied_database(server, backend, pool_size=POOL) as (db, proxy):
        pids = await warm(db, backend)
        proxy.hold_eof()
        await asyncio.to_thread(side.kill, pids)
        await asyncio.sleep(0.1)  # the FATALs are read; the closes are held back
        for mode in ("sequential", "concurrent"):
            fresh = await queries(db, backend, mode)
            assert not set(fresh) & set(pids)
        await settle(db)
        assert_no_leaks(db)


async def test_statement_refused_before_sending_may_retry(db, backend, side):
    # What the statement path asks when a connection taken for a statement
    # fails: one the driver already knew closed never sent it, so it may run
    # again, on a new connection that replaces the dead one in its slot.
    pool = db._async_pool_get()
    conn = await pool.aacquire()
    pid = (await conn.aexecute(PID[backend], ())).fetchone()[0]
    await asyncio.to_thread(side.kill, [pid])
    await asyncio.sleep(0.1)  # the driver has seen the close
    with pytest.raises(Exception) as caught:
        await conn.aexecute("INSERT INTO no_such_table VALUES (1)", ())
    assert may_retry(conn, caught.value)
    fresh = await pool.areplace(conn)
    try:
        assert (await fresh.aexecute(PID[backend], ())).fetchone()[0] != pid
    finally:
        pool.release(fresh)
    stats = db.pool_stats()[0]
    assert (stats.size, stats.closed, stats.in_use) == (1, 1, 0), stats


@pytest.mark.backends("postgres")
async def test_command_refused_after_an_unread_fatal_may_retry(backend, request, side):
    # The FATAL is read, the close held back: asyncpg refuses the command
    # before sending it (its protocol waits for a ReadyForQuery that never comes).
    server = _server(backend, request)
    async with proxied_database(server, backend, pool_size=1) as (db, proxy):
        pool = db._async_pool_get()
        (pid,) = await warm(db, backend, 1)
        proxy.hold_eof()
        await asyncio.to_thread(side.kill, [pid])
        await asyncio.sleep(0.1)
        conn = await pool.aacquire()
        with pytest.raises(Exception) as caught:
            await conn.aexecute("INSERT INTO no_such_table VALUES (1)", ())
        assert isinstance(caught.value, NotSent)  # a lost link, not asyncpg's InternalError
        assert "another operation (2) is in progress" in str(caught.value.__cause__)
        assert may_retry(conn, caught.value)
        conn = await pool.areplace(conn)
        try:
            assert (await conn.aexecute(PID[backend], ())).fetchone()[0] != pid
        finally:
            pool.release(conn)


@pytest.mark.backends("postgres")
async def test_aping_after_an_unread_fatal_pings_a_fresh_connection(backend, request, side):
    # db.aping() takes the idle connection whose FATAL asyncpg has read (the
    # close held back): its ping is refused before sending, so a readiness
    # probe must not fail on it; the ping runs once more on a new connection.
    server = _server(backend, request)
    async with proxied_database(server, backend, pool_size=1, check_idle_after=3600.0) as (
        db,
        proxy,
    ):
        (pid,) = await warm(db, backend, 1)
        proxy.hold_eof()
        await asyncio.to_thread(side.kill, [pid])
        await asyncio.sleep(0.1)
        assert await db.aping(timeout=5.0) >= 0
        stats = db.pool_stats()[0]
        assert (stats.size, stats.in_use, stats.closed) == (1, 0, 1), stats
        row = (await db.aexecute_sql(PID[backend])).fetchone()
        assert row is not None and row[0] != pid


async def test_replace_keeps_the_slot_for_a_new_connection(db, backend):
    # The slot of the dead connection goes to its replacement, not to a
    # waiter: the retry never queues behind callers that came later.
    pool = db._sync_pool_get()
    before = pool.stats()

    def work() -> tuple[int, int]:
        held = [pool.acquire() for _ in range(POOL)]
        replaced = pool.replace(held[0])
        stats = pool.stats()
        for conn in [replaced, *held[1:]]:
            pool.release(conn)
        return stats.size, stats.in_use

    assert await asyncio.to_thread(work) == (POOL, POOL)
    after = pool.stats()
    assert (after.closed - before.closed, after.idle) == (1, POOL), after


async def test_statement_that_reached_the_server_is_never_retried(db, backend, side):
    # Killed while the statement runs: it may have done its work.
    sleep = {"postgres": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}[backend]
    pool = db._async_pool_get()
    conn = await pool.aacquire()
    try:
        pid = (await conn.aexecute(PID[backend], ())).fetchone()[0]
        task = asyncio.ensure_future(conn.aexecute(sleep, ()))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(side.kill, [pid])
        with pytest.raises(Exception) as caught:
            await task
        assert not may_retry(conn, caught.value)
    finally:
        pool.discard(conn)


# -- silent drops: black-holed idle connections (issue item 5) ------------------


@pytest.fixture
async def proxied_db(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A database reaching its server through a proxy, pinging connections idle 50 ms."""
    options: dict[str, Any] = {"pool_size": 2, "acquire_timeout": 5.0, "check_idle_after": 0.05}
    async with proxied_database(_server(backend, request), backend, **options) as (db, proxy):
        db.pool_config = dataclasses.replace(db.pool_config, ping_timeout=0.5)
        db.proxy = proxy  # type: ignore[attr-defined]
        yield db


async def test_blackholed_idle_connection_costs_one_ping_timeout(proxied_db, backend):
    db = proxied_db
    await db.aexecute_sql("SELECT 1")
    await asyncio.sleep(0.1)  # idle past check_idle_after
    assert db.proxy.blackhole() == 1
    started = time.monotonic()
    assert (await db.aexecute_sql("SELECT 2")).fetchone()[0] == 2
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    stats = db.pool_stats()[0]
    assert (stats.opened, stats.closed, stats.timeouts) == (2, 1, 0), stats


async def test_all_idle_connections_blackholed_cost_one_ping_timeout(proxied_db, backend):
    # A NAT forgets the oldest links first: once the most recently used idle
    # connection went silent, the others have too. Pinging each in turn
    # would cost a ping_timeout apiece.
    db = proxied_db
    gate = asyncio.Barrier(2)

    async def hold() -> None:
        async with db:
            await db.aexecute_sql("SELECT 1")
            await gate.wait()

    await asyncio.gather(hold(), hold())
    await settle(db)
    await asyncio.sleep(0.1)
    assert db.proxy.blackhole() == 2
    started = time.monotonic()
    assert (await db.aexecute_sql("SELECT 2")).fetchone()[0] == 2
    elapsed = time.monotonic() - started
    assert elapsed < 0.9, elapsed  # one ping timeout (0.5 s), not two
    stats = db.pool_stats()[0]
    assert (stats.opened, stats.closed, stats.size) == (3, 2, 1), stats


def test_ping_timeout_must_be_positive():
    with pytest.raises(ValueError, match="ping_timeout"):
        PoolConfig(ping_timeout=0)


async def test_blackholed_idle_sync_connection_costs_one_ping_timeout(proxied_db, backend):
    db = proxied_db

    def query(value: int) -> Any:
        return db.execute_sql(f"SELECT {value}").fetchone()[0]

    await asyncio.to_thread(query, 1)
    await asyncio.sleep(0.1)
    assert db.proxy.blackhole() == 1
    started = time.monotonic()
    # Bounded here too: without a bound on the ping the thread waits for ever.
    assert await asyncio.wait_for(asyncio.to_thread(query, 2), 4.0) == 2
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    stats = db.pool_stats()[0]
    assert (stats.opened, stats.closed, stats.timeouts) == (2, 1, 0), stats


@pytest.mark.parametrize("side_", ["async", "thread"])
async def test_ping_leaves_half_the_acquire_timeout_for_a_fresh_connection(
    proxied_db, backend, side_
):
    # A ping_timeout longer than the whole acquire_timeout: the ping still
    # gets at most half of what is left, and the fresh connection the rest.
    db = proxied_db
    db.pool_config = dataclasses.replace(db.pool_config, acquire_timeout=0.5, ping_timeout=30.0)

    def query(value: int) -> Any:
        return db.execute_sql(f"SELECT {value}").fetchone()[0]

    async def run(value: int) -> Any:
        if side_ == "async":
            return (await db.aexecute_sql(f"SELECT {value}")).fetchone()[0]
        return await asyncio.wait_for(asyncio.to_thread(query, value), 4.0)

    assert await run(1) == 1
    await asyncio.sleep(0.1)
    assert db.proxy.blackhole() == 1
    started = time.monotonic()
    assert await run(2) == 2
    elapsed = time.monotonic() - started
    assert elapsed < 0.9, elapsed  # within acquire_timeout (0.5 s), on a loaded machine
