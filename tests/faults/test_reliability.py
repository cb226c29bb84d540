"""Every scenario of RELIABILITY.md section 5, asserting its stated outcome exactly.

Default setup (RELIABILITY 5), :func:`reliable`: every backend in {sqlite file,
postgres, mysql} unless a scenario names fewer, ``pool_size=2`` (the
scenario's ``pool_size``), ``acquire_timeout=0.5``. After every test: ``in_use
== 0`` on every pool, no unhandled event-loop exception (a handler records
them; the suite already turns warnings into errors), and a follow-up ``SELECT
1`` succeeds. HTTP outcomes go through a real FastAPI app with
``DatabaseMiddleware`` and ``add_exception_handlers``, driven by
``httpx.ASGITransport`` (or straight through ASGI, to disconnect a client).

Timing asserts carry a tolerance for this shared, loaded 2-core machine that
still fails when the behaviour is wrong: R1's "0.5 s +-0.1" is checked as
``0.4 <= t <= 0.9``, so a wait that ends before ``acquire_timeout`` or is not
bounded by it still fails; each such assert says what the fault would cost.

Scenario -> the tests that pin it (in this module unless another is named).
Elsewhere means that test asserts the stated outcome exactly already:

====  ========================================================================
R1    test_r1_exhaustion_gives_a_bounded_wait
R2    test_r2_waiters_are_bounded
R3    test_r3_cancel_while_queued_loses_no_slot
R4    test_r4_cancel_mid_query[task-cancel|asyncio-timeout|client-disconnect]
R5    test_r5_exception_or_cancel_inside_a_transaction
R6    test_r6_abandoned_task_is_rolled_back_and_released
R7    test_r7_session_state_does_not_leak (two requests through the middleware);
      test_session_state.py::test_session_state_does_not_reach_the_next_owner
      and ::test_a_script_or_temp_schema_does_not_reach_the_next_owner (one
      slot, so B takes A's)
R8    test_r8_backend_killed_while_idle_is_replaced_unseen (postgres, mysql),
      test_r8_connection_past_its_max_lifetime_or_max_idle_is_replaced_unseen
R9    test_r9_backend_killed_mid_transaction (postgres, mysql)
R10   test_r10_network_partition_ends_every_request_in_bounded_time (postgres,
      mysql: SQLite has no network)
R11   test_r11_idle_websockets_do_not_hoard_connections,
      test_r11_idle_background_tasks_do_not_hoard_connections
R12   test_r12_concurrency_counts_equal_the_committed_work,
      test_r12_siblings_and_gather_inside_atomic
R13   test_r13_stream_cut_by_a_client_disconnect, test_r13_consumer_breaking_early
R14   test_r14_shutdown_while_workers_query (with the leak check failing)
R15   not here: the PgBouncer tier (tests/pgbouncer.py: tests/core, the bulk and
      app suites run behind a real PgBouncer in transaction mode) and
      tests/drivers/test_pgbouncer.py::test_r15_isolation_levels_and_statements_through_the_pooler
R16   test_cancel_every_step.py, every backend, cancelled after k loop steps
      for every k, then harness.check_invariants (nothing left open on the
      server, the next owners' autocommit writes persist, all or nothing):
      ::test_autocommit_statement (a query), ::test_atomic_block (BEGIN,
      COMMIT), ::test_savepoint_rolled_back_inside_a_transaction,
      ::test_iterate_then_write (a stream), ::test_bulk_insert,
      ::test_sync_transaction_through_the_bridge,
      ::test_request_through_the_middleware,
      ::test_thread_transaction_in_a_request_scope
R17   test_r17_sibling_transactions_in_one_request_are_their_own
R18   test_r18_a_transaction_outliving_its_request_stays_whole,
      test_r18_a_request_ending_mid_statement_keeps_its_connection_out
R19   test_r19_terminated_idle_connections_are_replaced_unseen,
      test_r19_terminated_while_the_close_is_in_flight (postgres),
      test_r19_silently_dropped_connection[task|thread]
R20   test_sqlite_faults.py (SQLite only, by nature):
      ::test_a_file_restored_from_a_backup_is_used_at_once[journal|wal, task|thread],
      ::test_a_file_deleted_and_recreated_is_used_at_once[journal|wal],
      ::test_a_replaced_file_is_noticed_under_a_uri_filename
R21   test_r21_threads_that_end_holding_a_connection_give_it_back
R22   test_r22_caches_stay_bounded_over_hundreds_of_shapes (250 shapes, every
      value new; 100,000 queries would take minutes on this machine);
      test_cache_bounds.py::test_every_cache_of_a_model_is_bounded,
      ::test_selects_with_distinct_values_keep_memory_bounded,
      ::test_a_database_object_is_collected_once_unreferenced (a closed
      database object is freed), ::test_a_model_class_made_at_runtime_is_collected
====  ========================================================================

The reference app, examples/sql_app, on every backend with the same status on
all. test_sql_app.py pins S5's lone surrogates exactly (422 with ``loc``:
::test_lone_surrogates_are_a_422_from_the_schema_never_a_500) but most bad
inputs only as "some 4xx"; the exact outcomes are here. The app is not quite
RELIABILITY's sketch (no ``name`` or ``price``; ``skip``, not ``offset``; the
owner in the path; no search or ``sort`` parameter): each test says what
stands in for what.

====  ========================================================================
S1    test_s1_malformed_body_is_a_422_and_takes_no_connection
S2    test_s2_oversized_payload_is_a_413_before_it_is_buffered
S3    test_s3_sql_looking_strings_are_stored_byte_for_byte (search through
      the library's contains(): the app has no search route nor ``sort``)
S4    test_s4_wrong_types_and_extra_fields
S5    test_s5_unicode_round_trips_and_nul_or_surrogates_are_a_422
S6    test_s6_pagination_bounds (the app's documented bounds: 1 <= limit <= 100,
      0 <= skip <= 1,000,000)
S7    test_s7_bad_ids
S8    test_s8_uniqueness_races_and_missing_owners; test_s8_duplicate_email_is_a_409
S9    test_s9_values_the_database_would_reject_or_mangle
S10   test_s10_exhausted_pool_and_unexpected_errors_answer_generically,
      test_s10_a_stopped_database_answers_503_without_secrets (postgres, mysql),
      test_s10_a_locked_sqlite_file_answers_503
====  ========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from peewee import fn

from fastpeewee import (
    AsyncDatabase,
    AsyncMySQLDatabase,
    AsyncPostgresqlDatabase,
    DatabaseMiddleware,
    PoolTimeout,
    TooManyWaiters,
)
from fastpeewee.drivers import session
from fastpeewee.fast import fastpath, rows
from fastpeewee.integrations.fastapi import add_exception_handlers, database_lifespan

from ..conftest import AnyDatabase, make_database, model_database, settle
from ..harness import (
    LEDGER,
    Outside,
    check_invariants,
    insert,
    sibling_savepoint_failing,
    siblings_one_failing,
)
from ..models import MODELS, User
from ..proxy import Proxy, proxied_database

# Statements that run until interrupted: a server-side sleep, or (SQLite, which
# has no sleep) a recursive CTE that never ends.
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c",
    "postgres": "SELECT pg_sleep(20)",
    "mysql": "SELECT SLEEP(20)",
}
# Sessions still running SLOW, seen from outside the library.
SLOW_RUNNING = {
    "postgres": "SELECT count(*) FROM pg_stat_activity "
    "WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE info = 'SELECT SLEEP(20)' AND command = 'Query'",
}
PID = {"postgres": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
BUSY = {"detail": "The database is busy; retry shortly."}
UNAVAILABLE = {"detail": "The database is unavailable; retry shortly."}


class Failed(Exception):
    """What a test's own code raises on purpose."""


# -- the default setup and the checks after every test ------------------------------


@dataclass
class Env:
    db: Any
    outside: Outside | None
    backend: str
    loop_errors: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def loop_errors_recorded() -> Iterator[list[dict[str, Any]]]:
    """Record what the running loop would report as unhandled ("Task was destroyed
    but it is pending", "Future exception was never retrieved", ...)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


@asynccontextmanager
async def reliable(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> AsyncIterator[Env]:
    """RELIABILITY's default setup, the test models' tables and the harness ledger;
    the checks RELIABILITY asks after every test."""
    options = {"pool_size": 2, "acquire_timeout": 0.5, **options}
    with loop_errors_recorded() as errors:
        async with model_database(backend, request, tmp_path, **options) as db:
            outside = Outside(db)
            try:
                await asyncio.to_thread(outside.create_ledger)
                env = Env(db, outside, backend, errors)
                yield env
                await after_every_test(env)
            finally:
                outside.close()


def assert_all_back(db: AsyncDatabase) -> None:
    """The leak check: every connection is back in its pool."""
    for stats in db.pool_stats():
        assert stats.in_use == 0, f"leaked connection(s): {stats}"


async def after_every_test(env: Env) -> None:
    db = env.db
    await settle(db)
    assert_all_back(db)
    async with asyncio.timeout(2):
        assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
    gc.collect()  # "Task was destroyed but it is pending" shows at collection
    await asyncio.sleep(0)
    assert not env.loop_errors, env.loop_errors


@pytest.fixture
async def env(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with reliable(backend, request, tmp_path) as environment:
        yield environment


# -- helpers ----------------------------------------------------------------------------


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def async_stats(db: AsyncDatabase) -> Any:
    """The counters of the pool serving tasks (on SQLite, the one pool)."""
    return next(s for s in db.pool_stats() if not s.name.endswith("[sync]"))


def in_use(db: AsyncDatabase) -> int:
    return sum(s.in_use for s in db.pool_stats())


async def timed(awaitable: Any) -> tuple[float, Any]:
    """How long ``awaitable`` took, and what it returned or raised."""
    begun = time.monotonic()
    try:
        outcome = await awaitable
    except Exception as exc:
        outcome = exc
    return time.monotonic() - begun, outcome


class Holders:
    """Tasks that each hold a connection (an open ``atomic()``) until the block ends."""

    def __init__(self, db: AsyncDatabase, n: int) -> None:
        self.release = asyncio.Event()
        self._started = [asyncio.Event() for _ in range(n)]
        self.tasks = [asyncio.create_task(self._hold(db, s)) for s in self._started]

    async def _hold(self, db: AsyncDatabase, started: asyncio.Event) -> None:
        async with db.atomic():
            await db.aexecute_sql("SELECT 1")
            started.set()
            await self.release.wait()

    async def __aenter__(self) -> Holders:
        async with asyncio.timeout(5):
            await asyncio.gather(*(s.wait() for s in self._started))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release.set()
        await asyncio.gather(*self.tasks)


async def session_id(db: AsyncDatabase, backend: str) -> int | None:
    """The server session serving this statement (SQLite has none)."""
    if backend == "sqlite":
        await db.aexecute_sql("SELECT 1")
        return None
    return int((await db.aexecute_sql(PID[backend])).fetchone()[0])  # type: ignore[index]


def app_on(db: AsyncDatabase, backend: str = "sqlite") -> FastAPI:
    """A FastAPI app with the library's middleware and error handlers (Retry-After:
    1), and routes that read, hold the request's connection, or name its session."""
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    add_exception_handlers(app, retry_after=1)
    app.state.release = asyncio.Event()
    app.state.held = asyncio.Semaphore(0)

    @app.get("/user")
    async def user() -> Any:
        return await User.aget_or_none(User.id == 1)

    @app.get("/one")
    async def one() -> int:
        return int((await db.aexecute_sql("SELECT 1")).fetchone()[0])  # type: ignore[index]

    @app.get("/hold")
    async def hold() -> None:
        await db.aexecute_sql("SELECT 1")  # takes the request's connection
        app.state.held.release()
        await app.state.release.wait()

    @app.get("/pid")
    async def pid() -> int | None:
        return await session_id(db, backend)

    return app


def assert_503(response: httpx.Response, body: dict[str, str] = BUSY) -> None:
    """503 with Retry-After and a generic body."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json() == body


def http_scope(path: str, method: str = "GET", headers: Any = ()) -> dict[str, Any]:
    # spec_version 2.3: Starlette's StreamingResponse listens for the disconnect
    # and cancels the response's task group, as it does under uvicorn.
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": list(headers), "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip


def kill(outside: Outside, pids: list[int]) -> None:
    """Terminate server sessions from a connection of the test's own; wait till gone."""
    for pid in pids:
        if outside.kind == "postgres":
            assert outside.query("SELECT pg_terminate_backend(?)", (pid,)) == [(True,)]
        else:
            outside.query(f"KILL {int(pid)}")
    alive = (
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ?"
        if outside.kind == "postgres"
        else "SELECT count(*) FROM information_schema.processlist WHERE id = ?"
    )
    deadline = time.monotonic() + 5
    while any(outside.query(alive, (pid,))[0][0] for pid in pids):
        assert time.monotonic() < deadline, f"sessions {pids} outlived their kill"
        time.sleep(0.005)


async def warm(db: AsyncDatabase, backend: str, n: int = 2) -> list[int]:
    """Leave ``n`` idle connections in the task pool; return their session ids."""
    barrier = asyncio.Barrier(n)
    pids: list[int] = []

    async def hold() -> None:
        async with db:
            pids.append(int((await db.aexecute_sql(PID[backend])).fetchone()[0]))  # type: ignore[index]
            await barrier.wait()

    await asyncio.gather(*(hold() for _ in range(n)))
    await settle(db)
    assert async_stats(db).idle == n
    return pids


def warm_threads(db: AnyDatabase, backend: str, n: int = 2) -> list[int]:
    """Leave ``n`` idle connections in the thread pool; return their session ids."""
    barrier = threading.Barrier(n)
    pids: list[int] = []

    def hold() -> None:
        with db.connection_context():
            pids.append(int(db.execute_sql(PID[backend]).fetchone()[0]))  # type: ignore[index]
            barrier.wait(5)

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(pids) == n
    return pids


async def next_callers(db: AsyncDatabase, backend: str, side: str, n: int) -> list[Any]:
    """``n`` callers at once (tasks, or threads): (seconds, session id or error) each."""

    def pid_sync() -> int:
        return int(db.execute_sql(PID[backend]).fetchone()[0])  # type: ignore[index]

    async def pid() -> int:
        if side == "thread":
            return await asyncio.to_thread(pid_sync)
        return int((await db.aexecute_sql(PID[backend])).fetchone()[0])  # type: ignore[index]

    return await asyncio.gather(*(timed(pid()) for _ in range(n)))


async def slow_stopped(env: Env) -> None:
    """The cancelled SLOW statement no longer runs on the server (within 1 s)."""
    if env.outside is None or env.outside.kind == "sqlite":
        return  # no server: the caller's follow-up checks find the connection free
    for _ in range(50):
        if (await asyncio.to_thread(env.outside.query, SLOW_RUNNING[env.backend]))[0][0] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{SLOW[env.backend]} still runs on the server after its cancel")


def end_slow_statements(outside: Outside) -> None:
    """Stop, from outside, the SLOW statements the server still runs."""
    if outside.kind == "postgres":
        outside.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = 'SELECT pg_sleep(20)' AND pid <> pg_backend_pid()"
        )
    elif outside.kind == "mysql":
        for (pid,) in outside.query(
            "SELECT id FROM information_schema.processlist WHERE info = 'SELECT SLEEP(20)'"
        ):
            outside.query(f"KILL {int(pid)}")


def server_of(backend: str, request: pytest.FixtureRequest) -> Any:
    name = "postgres_server" if backend == "postgres" else "mariadb_server"
    return request.getfixturevalue(name)


COMMAND_TIMEOUT = 0.5  # asyncpg's command_timeout, the MySQL drivers' read_timeout


@asynccontextmanager
async def through_proxy(
    backend: str, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[tuple[Any, Proxy]]:
    """The default setup, reaching the server through the loopback proxy of
    tests/proxy.py (which cuts, black-holes or holds back closes), with the
    checks after every test."""
    options = {"pool_size": 2, "acquire_timeout": 0.5, **options}
    if backend == "postgres":
        # ssl=False: the test server has no TLS. With asyncpg's default (prefer), a
        # connect cut during its SSL request leaves an exception in asyncpg's own
        # future that nobody retrieves ("unexpected connection_lost() call"), which
        # the loop reports (see the report on issue 10).
        options.update(command_timeout=COMMAND_TIMEOUT, ssl=False)
    else:
        options.update(read_timeout=COMMAND_TIMEOUT)
    async with proxied_database(server_of(backend, request), backend, **options) as (db, proxy):
        with loop_errors_recorded() as errors:
            yield db, proxy
            await after_every_test(Env(db, None, backend, errors))


# -- R1-R3: exhaustion, bounded waits, cancelled waiters -----------------------------------


async def test_r1_exhaustion_gives_a_bounded_wait(env):
    db = env.db
    async with Holders(db, 2):  # two tasks hold both connections (an open atomic())
        elapsed, raised = await timed(User.aget(User.id == 1))
        assert isinstance(raised, PoolTimeout), raised
        assert isinstance(raised, peewee.OperationalError)
        # 0.5 s +-0.1; up to 0.9 on this loaded machine (a wait not bounded by
        # acquire_timeout, or one that gives up before it, still fails).
        assert 0.4 <= elapsed <= 0.9, elapsed
        message = str(raised)  # the timeout and the pool size
        assert "after 0.50 s" in message and "pool_size=2" in message, message

        async with client(app_on(db)) as http:
            elapsed, response = await timed(http.get("/user"))
            assert_503(response)  # 503, Retry-After
            assert 0.4 <= elapsed <= 0.9, elapsed
    async with client(app_on(db)) as http:  # the holders finished: recovered
        response = await http.get("/user")
        assert response.status_code == 200 and response.json() is None
    assert await User.aget_or_none(User.id == 1) is None


async def test_r2_waiters_are_bounded(backend, request, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fastpeewee.fastapi")
    async with reliable(backend, request, tmp_path, max_waiting=3) as env:
        db = env.db
        app = app_on(db)
        async with client(app) as http:
            holders = [asyncio.create_task(http.get("/hold")) for _ in range(2)]
            async with asyncio.timeout(5):
                for _ in holders:
                    await app.state.held.acquire()  # the pool is full
            results = await asyncio.gather(*(timed(http.get("/one")) for _ in range(10)))
            app.state.release.set()
            assert [r.status_code for r in await asyncio.gather(*holders)] == [200, 200]
            assert (await http.get("/one")).json() == 1
        for _, response in results:
            assert_503(response)
        times = sorted(elapsed for elapsed, _ in results)
        # The 7 extras fail at once (well under the 0.5 s a waiter gets); the 3
        # queued ones at acquire_timeout (0.5 s; 0.9 on this loaded machine), and
        # nobody waits past it.
        assert times[6] < 0.3, times
        assert all(0.4 <= t <= 0.9 for t in times[7:]), times
        logged = [r.getMessage() for r in caplog.records if r.name == "fastpeewee.fastapi"]
        assert sum("TooManyWaiters" in m for m in logged) == 7, logged
        assert sum("PoolTimeout" in m for m in logged) == 3, logged
        # The same through the API: the error names the bound.
        async with Holders(db, 2):
            queued = [asyncio.create_task(db.aexecute_sql("SELECT 1")) for _ in range(3)]
            await asyncio.sleep(0.05)
            elapsed, raised = await timed(db.aexecute_sql("SELECT 1"))
            assert isinstance(raised, TooManyWaiters) and elapsed < 0.3, (elapsed, raised)
            assert isinstance(raised, peewee.OperationalError)
            assert "max_waiting=3" in str(raised), raised
            for task in queued:
                with pytest.raises(PoolTimeout):
                    await task
        assert async_stats(db).waiting == 0


async def test_r3_cancel_while_queued_loses_no_slot(env):
    db = env.db
    # k: loop steps between the holders starting to give back and the cancels,
    # so that some cancels land at the moment a connection is handed over. The
    # waiters only acquire (a task's connection goes back when it ends): a cancel
    # never interrupts a statement, which may close its connection (R4).
    for k in range(12):
        async with Holders(db, 2) as holders:
            waiters = [asyncio.create_task(db.aconnect()) for _ in range(6)]
            for _ in range(100):
                if async_stats(db).waiting == 6:
                    break
                await asyncio.sleep(0.005)
            assert async_stats(db).waiting == 6
            holders.release.set()
            for _ in range(k):
                await asyncio.sleep(0)
            for task in reversed(waiters):
                task.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        for result in results:  # cancelled, or served before the cancel arrived
            assert isinstance(result, asyncio.CancelledError) or result is not None, result
        await settle(db)
        stats = async_stats(db)
        assert (stats.idle, stats.waiting, stats.in_use) == (2, 0, 0), (k, stats)
        # The next acquires are immediate: both slots are free (a lost slot would
        # cost acquire_timeout, 0.5 s, and a PoolTimeout).
        barrier = asyncio.Barrier(2)

        async def both(barrier: asyncio.Barrier = barrier) -> None:
            async with db:
                await db.aexecute_sql("SELECT 1")
                await barrier.wait()

        elapsed, raised = await timed(asyncio.gather(both(), both()))
        assert raised == [None, None] and elapsed < 0.4, (k, elapsed, raised)


# -- R4-R6: cancellation and abandonment -------------------------------------------------


def disconnecting_app(db: AsyncDatabase, backend: str, seen: list[type]) -> FastAPI:
    """A streaming route that runs SLOW after its first chunk."""
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    app.state.running = asyncio.Event()

    @app.get("/slow")
    async def slow() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"started\n"
            app.state.running.set()
            try:
                await db.aexecute_sql(SLOW[backend])
            except BaseException as exc:
                seen.append(type(exc))
                raise
            yield b"never\n"

        return StreamingResponse(body())

    return app


async def cancel_slow(db: AsyncDatabase, backend: str, how: str) -> float:
    """Run SLOW, cancel it after 50 ms by ``how``; return how long the cancel took."""
    if how == "task-cancel":
        task = asyncio.create_task(db.aexecute_sql(SLOW[backend]))
        await asyncio.sleep(0.05)
        task.cancel()
        begun = time.monotonic()
        await asyncio.wait([task], timeout=5)
        assert task.cancelled(), task  # CancelledError propagated, never swallowed
        return time.monotonic() - begun
    if how == "asyncio-timeout":

        async def under_timeout() -> None:
            async with asyncio.timeout(0.05):
                await db.aexecute_sql(SLOW[backend])

        elapsed, raised = await timed(under_timeout())
        assert isinstance(raised, TimeoutError), raised  # the cancel reached asyncio.timeout
        return elapsed - 0.05
    seen: list[type] = []
    app = disconnecting_app(db, backend, seen)
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await app.state.running.wait()
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message.get("body", b""))

    elapsed, raised = await timed(asyncio.wait_for(app(http_scope("/slow"), receive, send), 5))
    assert raised is None, raised
    assert seen == [asyncio.CancelledError]  # through the library, into the endpoint's code
    assert b"never\n" not in sent
    return elapsed - 0.05


@pytest.mark.parametrize("how", ["task-cancel", "asyncio-timeout", "client-disconnect"])
async def test_r4_cancel_mid_query(env, how):
    db, backend = env.db, env.backend
    elapsed = await cancel_slow(db, backend, how)
    # Not a stated bound: the cancel takes effect promptly, not when SLOW would end.
    assert elapsed < 2.0, elapsed
    await slow_stopped(env)  # pg_stat_activity / processlist: the query stopped
    await settle(db)
    assert in_use(db) == 0
    # The connection returned clean or was discarded: the next query finishes
    # within 1 s, on each connection of the pool.
    barrier = asyncio.Barrier(2)

    async def next_query() -> None:
        async with db:
            assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
            await barrier.wait()

    elapsed, raised = await timed(asyncio.gather(next_query(), next_query()))
    assert raised == [None, None] and elapsed < 1.0, (elapsed, raised)
    await check_invariants(db, env.outside, "r4")  # nothing left open on the server


async def r5_case(db: AnyDatabase, where: str, how: str) -> None:
    """Outer atomic() inserts; inner atomic() inserts; ``where`` fails by ``how``."""
    cancel_inner = (where, how) == ("inner", "cancel")

    async def body() -> None:
        async with db.atomic():
            await insert(db, "outer")
            try:
                # asyncio.timeout cancels the inner block, then turns the
                # cancellation into a TimeoutError here: the outer goes on.
                async with asyncio.timeout(0.05 if cancel_inner else None), db.atomic():
                    await insert(db, "inner")
                    if where == "inner":
                        if how == "raise":
                            raise Failed
                        await asyncio.sleep(10)
            except (Failed, TimeoutError):
                pass
            await insert(db, "outer-after")
            if where == "outer":
                if how == "raise":
                    raise Failed
                await asyncio.sleep(10)

    task = asyncio.create_task(body())
    if (where, how) == ("outer", "cancel"):
        await asyncio.sleep(0.1)
        task.cancel()
    try:
        await task
    except (Failed, asyncio.CancelledError):
        assert where == "outer"


async def test_r5_exception_or_cancel_inside_a_transaction(env):
    db, outside = env.db, env.outside
    for where in ("inner", "outer"):
        for how in ("raise", "cancel"):
            await asyncio.to_thread(outside.query, f"DELETE FROM {LEDGER}")
            await r5_case(db, where, how)
            tags = await asyncio.to_thread(outside.tags)
            if where == "inner":  # the inner failure rolls back only the savepoint...
                assert tags == {"outer": 1, "outer-after": 1}, (where, how, tags)
            else:  # ...the outer one everything
                assert tags == {}, (where, how, tags)
            await settle(db)

            async def next_acquirer() -> bool:
                async with db:
                    await db.aexecute_sql("SELECT 1")
                    return bool(db.in_transaction())

            assert await asyncio.create_task(next_acquirer()) is False
            # And from the server's side: no session left in a transaction, the
            # next owners' autocommit writes committed at once.
            await check_invariants(db, outside, f"r5-{where}-{how}")


async def test_r6_abandoned_task_is_rolled_back_and_released(env):
    db = env.db

    async def abandon() -> None:
        block = db.atomic()
        await block.__aenter__()  # opened; never committed, never exited, no aclose()
        await insert(db, "abandoned")

    await asyncio.create_task(abandon())
    begun = time.monotonic()
    for _ in range(400):  # released from the task's done-callback: poll the counter
        if not in_use(db):
            break
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - begun
    # Released within 0.5 s (0.9 on this loaded machine; the fault is "never").
    assert in_use(db) == 0 and elapsed <= 0.9, elapsed
    assert await asyncio.to_thread(env.outside.tags) == {}  # rolled back: no row visible
    await env.outside.wait_quiet()  # nothing left open on the server
    elapsed, raised = await timed(db.close_pool())
    assert raised is None and elapsed < 0.9, (elapsed, raised)  # close_pool() still finishes


# -- R7-R10: session state, killed connections, partitions -------------------------------


async def test_r7_session_state_does_not_leak(env):
    from ..drivers.test_session_state import DIRTY, clean_session

    db, backend = env.db, env.backend
    app = app_on(db, backend)

    @app.post("/a")
    async def request_a() -> int | None:
        for sql in DIRTY[backend]:  # SET TIME ZONE, pg_advisory_lock, temp table, LISTEN...
            await db.aexecute_sql(sql)
        return await session_id(db, backend)

    @app.get("/b")
    async def request_b() -> dict[str, Any]:
        try:
            await clean_session(db, backend)  # defaults, no lock, no temp table, no listener
        except AssertionError as exc:
            return {"clean": False, "why": str(exc)}
        return {"clean": True, "pid": await session_id(db, backend)}

    async with client(app) as http:
        for _ in range(2):
            await http.get("/one")  # an idle connection in the pool
            closed = async_stats(db).closed
            a = await http.post("/a")
            assert a.status_code == 200, a.text
            assert async_stats(db).closed == closed + 1  # A's connection closed, not kept
            b = await http.get("/b")
            assert b.status_code == 200, b.text
            assert b.json()["clean"] is True, b.json()
            if backend != "sqlite":
                assert b.json()["pid"] != a.json()


@pytest.mark.backends("postgres", "mysql")
async def test_r8_backend_killed_while_idle_is_replaced_unseen(env):
    db, backend = env.db, env.backend
    async with client(app_on(db, backend)) as http:
        for _ in range(2):
            killed = await warm(db, backend)
            await asyncio.to_thread(kill, env.outside, killed)
            # The close has reached the client, as when the kill was not just now;
            # the window before it arrives is R19's (..._close_is_in_flight).
            await asyncio.sleep(0.1)
            concurrent = await asyncio.gather(*(timed(http.get("/pid")) for _ in range(2)))
            sequential = [await timed(http.get("/pid")) for _ in range(2)]
            for elapsed, response in concurrent + sequential:
                assert response.status_code == 200, response.text  # the client sees no error
                assert response.json() not in killed  # a new session
                assert elapsed < 0.9, elapsed  # no wait for a slot (0.5 s) or a timeout


async def test_r8_connection_past_its_max_lifetime_or_max_idle_is_replaced_unseen(
    backend, request, tmp_path
):
    for expiry in ({"max_lifetime": 0.05}, {"max_idle": 0.05, "pool_min_size": 0}):
        async with reliable(backend, request, tmp_path, **expiry) as env:
            db = env.db
            async with client(app_on(db, backend)) as http:
                first = await http.get("/pid")
                assert first.status_code == 200, first.text
                before = async_stats(db)
                await asyncio.sleep(0.1)  # past max_lifetime / max_idle
                second = await http.get("/pid")
                assert second.status_code == 200, (expiry, second.text)  # no error seen
                after = async_stats(db)
                assert (after.opened, after.closed) == (before.opened + 1, before.closed + 1)
                if backend != "sqlite":
                    assert second.json() != first.json(), expiry  # a new session


@pytest.mark.backends("postgres", "mysql")
async def test_r9_backend_killed_mid_transaction(env):
    db, backend, outside = env.db, env.backend, env.outside
    app = app_on(db, backend)
    raised: list[BaseException] = []
    killed: list[int] = []

    @app.post("/two-inserts")
    async def two_inserts() -> None:
        async with db.atomic():
            await insert(db, "first")
            killed.append(int((await db.aexecute_sql(PID[backend])).fetchone()[0]))
            await asyncio.to_thread(kill, outside, killed)
            try:
                await insert(db, "second")  # no silent reconnect, no retry
            except BaseException as exc:
                raised.append(exc)
                raise

    async with client(app) as http:
        await http.get("/one")
        closed = async_stats(db).closed
        response = await http.post("/two-inserts")
        assert_503(response, UNAVAILABLE)  # returned as 503
        [error] = raised
        assert isinstance(error, peewee.OperationalError | peewee.InterfaceError), error
        assert await asyncio.to_thread(outside.tags) == {}  # nothing committed
        assert async_stats(db).closed == closed + 1  # the dead connection discarded
        after = await http.get("/pid")  # the next request is OK
        assert after.status_code == 200 and after.json() not in killed


PARTITION = 2.0


@pytest.mark.backends("postgres", "mysql")
async def test_r10_network_partition_ends_every_request_in_bounded_time(backend, request):
    async with (
        through_proxy(backend, request) as (db, proxy),
        client(app_on(db, backend)) as http,
    ):
        assert [(await http.get("/one")).status_code for _ in range(2)] == [200, 200]
        links = len(proxy.links)
        proxy.open.clear()  # the link is cut, with no FIN or RST
        asyncio.get_running_loop().call_later(PARTITION, proxy.open.set)
        begun = time.monotonic()
        during = await asyncio.gather(*(timed(http.get("/one")) for _ in range(9)))
        for elapsed, response in during:
            # OK or 503 within acquire_timeout + command_timeout (1.0 s; 1.5 on this
            # loaded machine, still short of the 2 s partition a hang would wait out).
            assert elapsed <= 1.5, (elapsed, response)
            if response.status_code != 200:
                assert_503(response, BUSY if "busy" in response.text else UNAVAILABLE)
        assert any(r.status_code == 503 for _, r in during)  # the partition was felt
        await asyncio.sleep(max(0.0, PARTITION + 0.1 - (time.monotonic() - begun)))
        after = await asyncio.gather(*(http.get("/one") for _ in range(9)))
        assert [r.status_code for r in after] == [200] * 9  # healed, no restart
        # No reconnect storm: at most one new link per caller (the pool has no
        # reconnect loop of its own; callers' acquires open connections).
        assert len(proxy.links) - links <= 9 + 2, len(proxy.links) - links


# -- R11-R14: hoarding, concurrency, streams, shutdown -----------------------------------


async def test_r11_idle_websockets_do_not_hoard_connections(env):
    from ..core.test_scope_isolation import _WebSocketClient

    db = env.db
    app = app_on(db)
    queried = asyncio.Semaphore(0)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await db.aexecute_sql("SELECT 1")  # one query...
        queried.release()
        await websocket.receive_text()  # ...then idle until the client speaks
        await websocket.close()

    sockets = [_WebSocketClient(app) for _ in range(3)]  # more than the pool holds
    runs = [asyncio.create_task(socket.run()) for socket in sockets]
    async with asyncio.timeout(5):
        for _ in sockets:
            await queried.acquire()
    async with client(app) as http:
        elapsed, response = await timed(http.get("/one"))
    for socket in sockets:
        socket.say("bye")
    await asyncio.wait_for(asyncio.gather(*runs), 5)
    assert response.status_code == 200, response.text
    # Served within 0.5 s: a hoarded pool answers 503, after acquire_timeout.
    assert elapsed < 0.5, elapsed


@dataclass
class Idlers:
    """Background tasks that each run one query, then idle until released."""

    db: Any
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    queried: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._run()))

    async def _run(self) -> None:
        await self.db.aexecute_sql("SELECT 1")  # one query...
        self.queried.release()
        await self.idle.wait()  # ...then idle (5 s in the scenario: until released here)


async def test_r11_idle_background_tasks_do_not_hoard_connections(env):
    db = env.db
    app = app_on(db)
    current: list[Idlers] = []

    @app.post("/spawn")
    async def spawn() -> None:
        current[0].start()  # a task the request starts and leaves running

    async with client(app) as http:
        for started in ("bare", "in-a-request"):
            idlers = Idlers(db)
            current[:] = [idlers]
            for _ in range(3):  # more than the pool holds
                if started == "bare":
                    idlers.start()
                else:
                    assert (await http.post("/spawn")).status_code == 200
            async with asyncio.timeout(5):
                for _ in range(3):
                    await idlers.queried.acquire()
            elapsed, response = await timed(http.get("/one"))
            idlers.idle.set()
            await asyncio.gather(*idlers.tasks)
            assert response.status_code == 200, (started, response.text)
            assert elapsed < 0.5, (started, elapsed)  # served within 0.5 s


class Rollback(Exception):
    pass


async def test_r12_concurrency_counts_equal_the_committed_work(backend, request, tmp_path):
    import random

    # pool_size=5 as the scenario says. acquire_timeout=10, not 0.5: 100 tasks
    # queue for 5 connections, which on this loaded 2-core machine may take
    # longer than 0.5 s; R12 is about counts and isolation (R1 is the bound).
    options: dict[str, Any] = {"pool_size": 5, "acquire_timeout": 10.0}
    if backend == "sqlite":  # one writer at a time; readers beside it
        options["pragmas"] = {"journal_mode": "wal"}
    async with reliable(backend, request, tmp_path, **options) as env:
        db = env.db
        rng = random.Random(12)
        kinds = ["autocommit", "transaction", "read"]
        plan = [
            [(rng.choice(kinds), rng.random() < 0.3) for _ in range(10)] for _ in range(100)
        ]  # fmt: skip
        expected: dict[str, int] = {}
        errors: list[BaseException] = []

        async def worker(n: int) -> None:
            for i, (kind, roll_back) in enumerate(plan[n]):
                tag = f"w{n}-{i}"
                try:
                    if kind == "autocommit":
                        await insert(db, tag)
                        expected[tag] = 1
                    elif kind == "transaction":
                        async with db.atomic():
                            await insert(db, tag)
                            async with db.atomic():  # a savepoint of its own
                                await insert(db, tag)
                            await asyncio.sleep(0)  # let siblings interleave
                            if roll_back:  # 30% of the transactions
                                raise Rollback
                        expected[tag] = 2
                    else:
                        await db.count(User.select())
                except Rollback:
                    pass
                except BaseException as exc:  # "another operation is in progress", ...
                    errors.append(exc)

        await asyncio.gather(*(worker(n) for n in range(100)))
        assert not errors, errors[:5]
        # Exactly the committed work: no lost, partial or interleaved transaction.
        assert await asyncio.to_thread(env.outside.tags) == expected  # type: ignore[union-attr]
        assert sum(1 for row in plan for kind, rb in row if kind == "transaction" and rb) > 50


async def test_r12_siblings_and_gather_inside_atomic(env):
    db, backend, outside = env.db, env.backend, env.outside
    sql = f"SELECT count(*) FROM {LEDGER} WHERE tag = {db.param}"
    inserted, checked = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.atomic():
            await insert(db, "pending")
            inserted.set()
            await checked.wait()

    async def sibling() -> int:
        await inserted.wait()
        seen = (await db.aexecute_sql(sql, ("pending",))).fetchone()[0]
        checked.set()
        return int(seen)

    _, seen = await asyncio.gather(writer(), sibling())
    assert seen == 0  # a sibling does not see the uncommitted row...
    assert (await db.aexecute_sql(sql, ("pending",))).fetchone()[0] == 1  # ...until commit

    # gather() inside atomic() does what the README says: "tasks from
    # asyncio.gather inside a transaction: their own connections, outside the
    # parent's transaction".
    async def child(n: int) -> tuple[bool, int]:
        seen = await db.count(User.select())
        if backend != "sqlite":  # SQLite: a second writer would wait for the parent's lock
            await insert(db, f"child-{n}")
        return bool(db.in_transaction()), seen

    with pytest.raises(Rollback):
        async with db.atomic():
            await User.acreate(username="parent")
            results = await asyncio.gather(child(0), child(1))
            assert results == [(False, 0), (False, 0)]  # type: ignore[comparison-overlap]  # outside: the parent's row unseen
            assert db.transaction_depth() == 1  # the parent's stack untouched (no savepoints)
            raise Rollback
    assert await db.count(User.select()) == 0  # the parent rolled back alone...
    children = {} if backend == "sqlite" else {"child-0": 1, "child-1": 1}
    assert await asyncio.to_thread(outside.tags) == {"pending": 1, **children}  # ...not them


class LedgerRow(peewee.Model):
    tag = peewee.CharField(max_length=64)

    class Meta:
        table_name = LEDGER


async def fill_ledger(env: Env, n: int) -> None:
    values = ", ".join(["('row')"] * n)
    await asyncio.to_thread(env.outside.query, f"INSERT INTO {LEDGER} (tag) VALUES {values}")  # type: ignore[union-attr]


async def test_r13_stream_cut_by_a_client_disconnect(env):
    db = env.db
    await fill_ledger(env, 100)
    LedgerRow.bind(db)
    app = app_on(db)
    sent: list[bytes] = []
    cut = asyncio.Event()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            async for row in db.iterate(LedgerRow.select().order_by(LedgerRow.id)):
                yield f"{row.id}\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(lines())

    async def receive() -> dict[str, Any]:
        await cut.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message.get("body"):
            sent.append(message["body"])
            if len(sent) == 10:  # the client goes away after 10 rows
                cut.set()

    await asyncio.wait_for(app(http_scope("/stream"), receive, send), 5)
    assert 10 <= len(sent) < 100, len(sent)
    # The cursor closed and its transaction rolled back: nothing open on the
    # server; the connection lock freed, and the next request works.
    await env.outside.wait_quiet()
    await settle(db)
    assert in_use(db) == 0
    async with client(app) as http:
        assert (await http.get("/one")).json() == 1
    await check_invariants(db, env.outside, "r13")


async def test_r13_consumer_breaking_early(env):
    db = env.db
    await fill_ledger(env, 100)
    LedgerRow.bind(db)
    app = app_on(db)

    async def first_ten() -> int:
        seen = 0
        async for _ in db.iterate(LedgerRow.select().order_by(LedgerRow.id)):
            seen += 1
            if seen == 10:
                break  # no aclose(): the generator is finalized by the loop
        return seen

    @app.get("/first-ten")
    async def first_ten_route() -> int:
        return await first_ten()

    async with client(app) as http:
        for where in ("task", "request"):
            if where == "task":
                assert await asyncio.create_task(first_ten()) == 10
            else:
                assert (await http.get("/first-ten")).json() == 10
            await env.outside.wait_quiet()
            await settle(db)
            assert in_use(db) == 0, where
            elapsed, response = await timed(http.get("/one"))  # the next request works
            assert response.status_code == 200 and elapsed < 1.0, (where, elapsed, response)
    await check_invariants(db, env.outside, "r13")


async def test_r14_shutdown_while_workers_query(env):
    db, backend = env.db, env.backend
    app = FastAPI(lifespan=database_lifespan(db))
    async with app.router.lifespan_context(app):
        workers = [asyncio.create_task(db.aexecute_sql(SLOW[backend])) for _ in range(6)]
        await asyncio.sleep(0.1)  # two run SLOW, four wait for a connection
        assert in_use(db) == 2
        begun = time.monotonic()
    # Lifespan shutdown: close_pool() waits acquire_timeout (0.5 s) for the busy
    # connections, then terminates them (0.9 s on this loaded machine; the fault
    # is waiting for the 20 s statements).
    elapsed = time.monotonic() - begun
    assert elapsed <= 0.9, elapsed
    results = await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 2)
    for result in results:
        assert isinstance(result, peewee.InterfaceError | peewee.OperationalError), repr(result)
    # Not stated by R14, and not so today: a terminated connection's statement
    # runs on in the server until it ends (see the report). End them here, so
    # later tests find the server quiet.
    await asyncio.to_thread(end_slow_statements, env.outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught
    # ("Task was destroyed" would be in env.loop_errors, checked after the test.)

    # A deliberately leaked connection makes the leak check fail.
    await db.aconnect()
    with pytest.raises(AssertionError, match="leaked connection"):
        assert_all_back(db)
    await db.aclose()
    assert_all_back(db)


# -- R17-R18 ----------------------------------------------------------------------------


async def test_r17_sibling_transactions_in_one_request_are_their_own(env):
    db, outside = env.db, env.outside
    app = app_on(db)

    @app.post("/siblings")
    async def siblings() -> list[str]:
        return [type(r).__name__ for r in await siblings_one_failing(db)]

    @app.post("/savepoint-of-a-sibling")
    async def savepoint_of_a_sibling() -> None:
        await sibling_savepoint_failing(db)

    async with client(app) as http:
        response = await http.post("/siblings")
        assert response.status_code == 200, response.text
        assert response.json() == ["Boom", "NoneType"]
        # Each all or nothing on its own: the failed branch's row gone, the other's
        # committed.
        assert await asyncio.to_thread(outside.tags) == {"b": 1}
        response = await http.post("/savepoint-of-a-sibling")
        assert response.status_code == 200, response.text
        assert await asyncio.to_thread(outside.tags) == {"b": 1, "outer": 1}
    await check_invariants(db, outside, "r17")


async def test_r18_a_transaction_outliving_its_request_stays_whole(env):
    db, outside = env.db, env.outside
    app = app_on(db)
    go_on = asyncio.Event()
    tasks: dict[str, asyncio.Task[None]] = {}

    async def background(tag: str, fail: bool) -> None:
        async with db.atomic():
            await insert(db, tag)
            await go_on.wait()  # the request ends here
            await insert(db, tag)
            if fail:
                raise Failed

    @app.post("/spawn/{tag}")
    async def spawn(tag: str, fail: bool = False) -> None:
        await db.aexecute_sql("SELECT 1")  # the request has its connection
        tasks[tag] = asyncio.create_task(background(tag, fail))
        await asyncio.sleep(0.05)  # the task's transaction is open

    async with client(app) as http:
        assert (await http.post("/spawn/kept")).status_code == 200
        go_on.set()
        await tasks["kept"]
        go_on.clear()
        assert (await http.post("/spawn/failed", params={"fail": True})).status_code == 200
        go_on.set()
        with pytest.raises(Failed):  # fails loudly
            await tasks["failed"]
    # Whole, on a connection of its own: both rows, or (failed) none; nothing elsewhere.
    assert await asyncio.to_thread(outside.tags) == {"kept": 2}
    await check_invariants(db, outside, "r18")


R18_SLOW = {  # about 0.3 s each
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 500000) SELECT count(*) FROM c",
    "postgres": "SELECT pg_sleep(0.3)",
    "mysql": "SELECT SLEEP(0.3)",
}


async def test_r18_a_request_ending_mid_statement_keeps_its_connection_out(env):
    db, outside, backend = env.db, env.outside, env.backend
    app = app_on(db)
    running = asyncio.Event()
    jobs: list[asyncio.Task[Any]] = []

    async def long_statement() -> Any:
        running.set()
        return (await db.aexecute_sql(R18_SLOW[backend])).fetchone()

    @app.post("/leave-a-statement-running")
    async def leave() -> None:
        await db.aexecute_sql("SELECT 1")  # the request has its connection
        jobs.append(asyncio.create_task(long_statement()))  # on the request's connection
        await running.wait()
        await asyncio.sleep(0.05)

    async with client(app) as http:
        assert (await http.post("/leave-a-statement-running")).status_code == 200
        # The request is over while its statement runs: that connection stays out
        # of the pool until the statement is done...
        assert not jobs[0].done()
        assert in_use(db) >= 1, db.pool_stats()
        # ...and the next request is served on another one meanwhile.
        response = await http.get("/one")
        assert response.status_code == 200, response.text
        await insert(db, "next")
    [outcome] = await asyncio.gather(jobs[0], return_exceptions=True)
    # It finished, or failed loudly with a database error: never silently cut.
    failed_loudly = isinstance(outcome, peewee.PeeweeException)  # type: ignore[has-type]
    assert failed_loudly or not isinstance(outcome, BaseException), outcome  # type: ignore[has-type]
    await check_invariants(db, outside, "r18")
    assert (await asyncio.to_thread(outside.tags))["next"] == 1


# -- R19, R21, R22 -----------------------------------------------------------------------


@pytest.mark.backends("postgres", "mysql")
async def test_r19_terminated_idle_connections_are_replaced_unseen(env):
    db, backend = env.db, env.backend
    # Tasks on PostgreSQL: asyncpg may read the server's FATAL before the close
    # arrives, a window this natural race hits only sometimes; the next test
    # holds it open, every time.
    sides = ["thread"] if backend == "postgres" else ["task", "thread"]
    for side in sides:
        for _ in range(2):
            if side == "task":
                killed = await warm(db, backend)
            else:
                killed = await asyncio.to_thread(warm_threads, db, backend)
            await asyncio.to_thread(kill, env.outside, killed)  # every idle pooled one
            for elapsed, outcome in await next_callers(db, backend, side, n=4):
                assert isinstance(outcome, int), (side, outcome)  # no error reaches a caller
                assert outcome not in killed  # a fresh connection...
                assert elapsed <= 0.9, (side, elapsed)  # ...within acquire_timeout (0.5)


@pytest.mark.backends("postgres")
async def test_r19_terminated_while_the_close_is_in_flight(backend, request, tmp_path):
    async with through_proxy(backend, request) as (db, proxy):
        killed = await warm(db, backend)
        proxy.hold_eof()  # the server's close does not reach the client yet
        outside = Outside(make_database(backend, request, tmp_path))  # the server, direct
        try:
            await asyncio.to_thread(kill, outside, killed)
        finally:
            outside.close()
        await asyncio.sleep(0.1)  # asyncpg has read the FATAL messages
        try:
            for elapsed, outcome in await next_callers(db, backend, "task", n=4):
                assert isinstance(outcome, int), outcome  # no error reaches a caller
                assert outcome not in killed and elapsed <= 0.9, (elapsed, outcome)
        finally:
            proxy.pass_eof()


@pytest.mark.backends("postgres", "mysql")
@pytest.mark.parametrize("side", ["task", "thread"])
async def test_r19_silently_dropped_connection(backend, request, side):
    # check_idle_after=0.05: the liveness check runs after 50 ms idle (5 s by
    # default), so the test need not idle 5 s. Everything else is the default.
    async with through_proxy(backend, request, check_idle_after=0.05) as (db, proxy):
        [(_, first)] = await next_callers(db, backend, side, n=1)
        assert isinstance(first, int), first
        await asyncio.sleep(0.1)  # idle past check_idle_after
        assert proxy.blackhole() == 1  # a NAT forgets the link: no FIN, no RST
        [(elapsed, outcome)] = await next_callers(db, backend, side, n=1)
        assert isinstance(outcome, int), outcome  # served by a fresh connection...
        assert elapsed <= 0.9, elapsed  # ...within acquire_timeout (0.5; loaded machine)


async def test_r21_threads_that_end_holding_a_connection_give_it_back(env):
    db = env.db
    outcomes: list[BaseException] = []

    def sync_request() -> None:
        db.connect()  # a sync framework's open hook
        db.execute_sql("SELECT 1")
        raise Failed("the handler raised: the close hook never runs")

    def worker() -> None:
        try:
            sync_request()
        except BaseException as exc:  # Failed; a PoolTimeout if a slot was kept
            outcomes.append(exc)

    for _ in range(6):  # three times what the pool holds, one thread after another
        thread = threading.Thread(target=worker)
        thread.start()
        await asyncio.to_thread(thread.join, 5)
    assert [type(o) for o in outcomes] == [Failed] * 6, outcomes
    await settle(db)
    assert_all_back(db)  # every slot came back, as it does for tasks
    elapsed, raised = await timed(asyncio.to_thread(lambda: db.execute_sql("SELECT 1")))
    assert not isinstance(raised, BaseException) and elapsed < 0.4, (elapsed, raised)


# More shapes than any per-model cache holds (rows.LAYOUTS_MAX = 128).
SHAPES = 250


async def test_r22_caches_stay_bounded_over_hundreds_of_shapes(env):
    db = env.db
    for name in ("ann", "bob", "cy"):
        await User.acreate(username=name)

    def query(shape: int, value: int) -> Any:
        return (  # a shape per alias; a distinct value every time
            User.select(User.id, (User.id + value).alias(f"a{shape}"), fn.LOWER(f"v{value}"))
            .where(User.id > -value)
            .limit(shape % 3 + 1)
        )

    async def run(first_value: int) -> None:
        for shape in range(SHAPES):
            await db.list(query(shape, first_value + shape))

    # Traced from the start: an entry replacing one allocated before tracing
    # began would count as growth.
    tracemalloc.start()
    try:
        await run(0)  # every cache filled to its bound
        gc.collect()
        warm = tracemalloc.get_traced_memory()[0]
        await run(1000)  # as many queries again, every value new
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - warm
    finally:
        tracemalloc.stop()
    # Before issue 10's fix the layout cache alone kept ~2 KB a query.
    assert grown < 256 * 1024, f"{grown:,} bytes kept by {SHAPES} queries"
    assert len(rows.layouts_of(User)) <= rows.LAYOUTS_MAX
    assert len(fastpath.plans_of(User)) <= fastpath.PLANS_MAX
    info = session._cached.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize


# -- S1-S10: the reference app (examples/sql_app), on every backend -------------------------


@dataclass
class RefApp:
    app: Any
    http: httpx.AsyncClient
    db: Any


@asynccontextmanager
async def reference_app(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    db: AnyDatabase | None = None,
    **options: Any,
) -> AsyncIterator[RefApp]:
    """examples/sql_app on the default setup (its lifespan creating its tables),
    with the checks after every test."""
    from examples.sql_app import main as app_main
    from examples.sql_app import models as app_models

    if db is None:
        if backend == "sqlite":  # as the app's own database_from_env()
            options.setdefault("pragmas", {"journal_mode": "wal", "foreign_keys": 1})
        db = make_database(backend, request, tmp_path, pool_size=2, acquire_timeout=0.5, **options)
    # The test models' "user" table is the app's table name too: drop both sets.
    db.bind([*MODELS, *app_models.MODELS])
    try:
        with loop_errors_recorded() as errors:
            await db.adrop_tables([*MODELS, *app_models.MODELS], safe=True)
            app = app_main.create_app(db)
            async with app.router.lifespan_context(app), client(app) as http:
                yield RefApp(app, http, db)
                await after_every_test(Env(db, None, backend, errors))
            await db.adrop_tables(app_models.MODELS, safe=True)
    finally:
        await db.close_pool()
        db.close_all()


@pytest.fixture
async def ref(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RefApp]:
    async with reference_app(backend, request, tmp_path) as app:
        yield app


async def new_user(ref: RefApp, email: str = "owner@example.com") -> int:
    response = await ref.http.post("/users/", json={"email": email, "password": "12345678"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def error_locs(response: httpx.Response) -> list[list[Any]]:
    """The ``loc`` of each error of a 422."""
    assert response.status_code == 422, (response.status_code, response.text)
    return [error["loc"] for error in response.json()["detail"]]


async def post_json(ref: RefApp, path: str, body: bytes) -> httpx.Response:
    return await ref.http.post(path, content=body, headers={"content-type": "application/json"})


MALFORMED = [
    (b'{"email": }', "application/json"),
    (b'{"email": "a@example.com", "password": ', "application/json"),  # truncated
    (b"", "application/json"),  # empty
    (b"[]", "application/json"),
    (b'{"email": "a@example.com", "password": "12345678"}', "text/plain"),  # JSON, not typed so
]


async def test_s1_malformed_body_is_a_422_and_takes_no_connection(ref):
    # Every connection is taken: a request that acquired one (an eager
    # dependency) would wait acquire_timeout and answer 503.
    async with Holders(ref.db, 2):
        before = async_stats(ref.db)
        for body, content_type in MALFORMED:
            elapsed, response = await timed(
                ref.http.post("/users/", content=body, headers={"content-type": content_type})
            )
            assert response.status_code == 422, (body, response.text)
            errors = response.json()["detail"]
            assert errors, body
            for error in errors:
                assert error["type"] in ("json_invalid", "model_attributes_type", "missing")
                assert error["loc"] and error["loc"][0] == "body", (body, error)
            assert elapsed < 0.4, (body, elapsed)
        after = async_stats(ref.db)
        assert (after.timeouts, after.waiting, after.in_use) == (before.timeouts, 0, 2)
    assert (await ref.http.get("/users/")).json() == []  # nothing written


TEN_MB = 10 * 1024 * 1024


async def test_s2_oversized_payload_is_a_413_before_it_is_buffered(ref):
    big = b'{"email": "' + b"a" * TEN_MB + b'", "password": "12345678"}'
    declared = await post_json(ref, "/users/", big)
    assert declared.status_code == 413, declared.text
    assert "detail" in declared.json()

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length at all
        yield b'{"email": "'
        for _ in range(TEN_MB // 65536):
            yield b"a" * 65536

    tracemalloc.start()
    try:
        chunked = await ref.http.post(
            "/users/", content=chunks(), headers={"content-type": "application/json"}
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunked.status_code == 413, chunked.text
    assert peak < 2 * 1024 * 1024, f"{peak:,} bytes at the peak: the body was buffered"

    # A lying Content-Length: 64 bytes declared, 10 MB sent.
    parts = iter([b'{"email": "', *(b"a" * 65536 for _ in range(TEN_MB // 65536))])
    started: list[int] = []

    async def receive() -> dict[str, Any]:
        body = next(parts, None)
        return {"type": "http.request", "body": body or b"", "more_body": body is not None}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])

    headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await asyncio.wait_for(ref.app(http_scope("/users/", "POST", headers), receive, send), 10)
    assert started == [413]
    assert (await ref.http.get("/users/")).json() == []  # nothing written


INJECTION = [
    "Robert'); DROP TABLE users;--",
    "' OR 1=1 --",
    '"; DELETE FROM "user"; --',
    "name; drop",
    "%s %(name)s $1 ? :name",
    "%",
    "_",
    "\\",
]


async def test_s3_sql_looking_strings_are_stored_byte_for_byte(ref):
    from examples.sql_app.models import Item

    owner = await new_user(ref)
    for text in INJECTION:
        response = await ref.http.post(
            f"/users/{owner}/items/", json={"title": text, "description": text}
        )
        assert response.status_code == 201, (text, response.text)
        assert response.json()["title"] == text
    items = (await ref.http.get("/items/")).json()
    assert [i["title"] for i in items] == INJECTION  # read back identically
    assert [i["description"] for i in items] == INJECTION
    # Search treats %, _ and \\ literally (peewee's contains() escapes them).
    for decoy in ("100 percent", "aXb", "backslash"):
        await ref.http.post(f"/users/{owner}/items/", json={"title": decoy})
    for needle, expected in (("%", ["%s %(name)s $1 ? :name", "%"]), ("_", ["_"]),
                             ("\\", ["\\"])):  # fmt: skip
        query = Item.select().where(Item.title.contains(needle)).order_by(Item.id)
        assert [i.title for i in await ref.db.list(query)] == expected, needle


async def test_s4_wrong_types_and_extra_fields(ref):
    owner = await new_user(ref)
    path = f"/users/{owner}/items/"
    # The reference app has no price: title (a string, required) and description
    # (a string or null) stand in for it.
    wrong = [
        ({"title": 12, "description": 5}, [["body", "title"], ["body", "description"]]),
        ({"title": True}, [["body", "title"]]),
        ({"title": 1.5}, [["body", "title"]]),
        ({"title": None}, [["body", "title"]]),
        ({"description": "no title"}, [["body", "title"]]),
    ]
    for body, locs in wrong:
        assert error_locs(await ref.http.post(path, json=body)) == locs, body  # each bad field
    wrong_user = {"email": None, "password": 5}
    assert error_locs(await ref.http.post("/users/", json=wrong_user)) == [
        ["body", "email"], ["body", "password"]
    ]  # fmt: skip
    assert (await ref.http.get("/items/")).json() == []  # nothing written
    # Extra fields are stripped: a client never sets id, owner_id or is_active.
    item = await ref.http.post(
        path, json={"title": "x", "id": 999, "owner_id": 99, "is_admin": True}
    )
    assert item.status_code == 201, item.text
    assert item.json()["id"] != 999 and item.json()["owner_id"] == owner
    user = await ref.http.post(
        "/users/", json={"email": "e@example.com", "password": "12345678", "id": 999,
                         "is_active": False, "is_admin": True},
    )  # fmt: skip
    assert user.status_code == 201, user.text
    assert user.json()["id"] != 999 and user.json()["is_active"] is True


UNICODE = [
    "\U0001f40d snake, \U0001d11e clef (4-byte)",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd (RTL)",
    "e\u0301 and a\u0308 (combining)",
    "\u65e5\u672c\u8a9e\u306e\u30bf\u30a4\u30c8\u30eb (CJK)",
    "\u202eevil\u202c \u2260 \u2211",
]


async def test_s5_unicode_round_trips_and_nul_or_surrogates_are_a_422(ref):
    owner = await new_user(ref)
    path = f"/users/{owner}/items/"
    for text in UNICODE:
        response = await ref.http.post(path, json={"title": text, "description": text})
        assert response.status_code == 201, (text, response.text)
    items = (await ref.http.get("/items/")).json()
    assert [(i["title"], i["description"]) for i in items] == [(t, t) for t in UNICODE]
    assert [i["title"] for i in (await ref.http.get(f"/users/{owner}")).json()["items"]] == UNICODE
    refused = [
        (json_bytes({"title": "nul\x00byte"}), ["body", "title"]),
        (json_bytes({"title": "x", "description": "\x00"}), ["body", "description"]),
        (b'{"title": "\\ud800"}', ["body", "title"]),
        (b'{"title": "x", "description": "a\\udfffb"}', ["body", "description"]),
    ]
    for body, loc in refused:
        assert error_locs(await post_json(ref, path, body)) == [loc], body
    assert len((await ref.http.get("/items/")).json()) == len(UNICODE)  # nothing else


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


async def test_s6_pagination_bounds(ref):
    await new_user(ref)
    # The app documents 1 <= limit <= 100 and 0 <= skip <= 1,000,000 (README).
    bad = [("limit", v) for v in ("0", "-1", "101", str(10**12), "abc")] + [
        ("skip", v) for v in ("-1", str(10**20), "1000001", "abc")
    ]
    for path in ("/users/", "/items/"):
        for name, value in bad:
            response = await ref.http.get(path, params={name: value})
            assert error_locs(response) == [["query", name]], (path, name, value)
        for name, value in (("limit", "1"), ("limit", "100"), ("skip", "0"), ("skip", "1000000")):
            assert (await ref.http.get(path, params={name: value})).status_code == 200


async def test_s7_bad_ids(ref):
    owner = await new_user(ref)
    for bad in ("-1", "0", "2147483648", "9223372036854775808", "abc", "1e3"):
        assert error_locs(await ref.http.get(f"/users/{bad}")) == [["path", "user_id"]], bad
        response = await ref.http.post(f"/users/{bad}/items/", json={"title": "x"})
        assert error_locs(response) == [["path", "user_id"]], bad
    for missing in ("2147483647", str(owner + 1)):  # well-formed, in range, absent
        response = await ref.http.get(f"/users/{missing}")
        assert response.status_code == 404 and response.json() == {"detail": "User not found"}
        response = await ref.http.post(f"/users/{missing}/items/", json={"title": "x"})
        assert response.status_code == 404, response.text
    assert (await ref.http.get(f"/users/{owner}")).status_code == 200


async def test_s8_uniqueness_races_and_missing_owners(ref):
    body = {"email": "race@example.com", "password": "12345678"}
    race = await asyncio.gather(*(ref.http.post("/users/", json=body) for _ in range(2)))
    # Exactly one 201; the other a 409 from the unique index (both passed the
    # app's own check first), never a 500.
    assert sorted(r.status_code for r in race) == [201, 409], [r.text for r in race]
    users = (await ref.http.get("/users/")).json()
    assert [u["email"] for u in users] == ["race@example.com"]
    # The failed transaction was rolled back and its connection is reusable.
    await settle(ref.db)
    assert in_use(ref.db) == 0
    after = await ref.http.post("/users/", json={**body, "email": "next@example.com"})
    assert after.status_code == 201, after.text
    # A missing owner: here the owner is in the path, so S7's rule answers 404
    # (the app checks before inserting); never a 500.
    missing = await ref.http.post("/users/999/items/", json={"title": "orphan"})
    assert missing.status_code == 404, missing.text
    assert (await ref.http.get("/items/")).json() == []


async def test_s8_duplicate_email_is_a_409(ref):
    await new_user(ref, "dup@example.com")
    again = await ref.http.post("/users/", json={"email": "dup@example.com", "password": "x" * 8})
    assert again.status_code == 409, again.text


async def test_s9_values_the_database_would_reject_or_mangle(ref):
    owner = await new_user(ref)
    path = f"/users/{owner}/items/"
    # No name or price in the reference app: title (<= 200), description
    # (<= 1000), email and password stand in for them.
    refused = [
        (path, json_bytes({"title": "x" * 10_000}), ["body", "title"]),
        (path, json_bytes({"title": "x", "description": "y" * 10_000}), ["body", "description"]),
        (path, b'{"title": NaN}', ["body", "title"]),
        (path, b'{"title": Infinity}', ["body", "title"]),
        (path, b'{"title": -Infinity}', ["body", "title"]),
        (path, b'{"title": 1e400}', ["body", "title"]),
        ("/users/", json_bytes({"email": "a" * 10_000 + "@example.com", "password": "12345678"}),
         ["body", "email"]),
        ("/users/", json_bytes({"email": "b@example.com", "password": "p" * 10_000}),
         ["body", "password"]),
    ]  # fmt: skip
    for where, body, loc in refused:
        assert error_locs(await post_json(ref, where, body)) == [loc], body[:40]
    assert (await ref.http.get("/items/")).json() == []  # nothing written
    assert len((await ref.http.get("/users/")).json()) == 1


def assert_hygienic(response: httpx.Response, *secrets: str) -> None:
    """No SQL, parameters, DSN or stack trace in the answer."""
    for text in ("SELECT", "INSERT", "FROM", "Traceback", "127.0.0.1", ":5432", *secrets):
        assert text not in response.text, (text, response.text)


async def test_s10_exhausted_pool_and_unexpected_errors_answer_generically(ref):
    from examples.sql_app.models import Item

    await new_user(ref)
    async with Holders(ref.db, 2):  # the pool exhausted
        elapsed, busy = await timed(ref.http.get("/users/"))
    assert_503(busy)
    assert 0.4 <= elapsed <= 0.9, elapsed  # after acquire_timeout (0.5 s; loaded machine)
    assert_hygienic(busy)
    await ref.db.adrop_tables([Item])  # an unexpected error: a table gone
    try:
        broken = await ref.http.get("/items/")
    finally:
        await ref.db.acreate_tables([Item])
    assert broken.status_code == 500
    assert broken.text == "Internal Server Error"  # generic, no "item", no SQL
    assert_hygienic(broken, "item")


@pytest.mark.backends("postgres", "mysql")
async def test_s10_a_stopped_database_answers_503_without_secrets(
    backend, request, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="fastpeewee.fastapi")
    server = server_of(backend, request)
    proxy = Proxy(server.port)  # the "server" the app sees, which the test stops
    port = await proxy.start()
    options: dict[str, Any] = {"pool_size": 2, "acquire_timeout": 0.5}
    db: AsyncDatabase
    if backend == "postgres":  # trust authentication: a password given, never checked
        password = "s3cret-Pw"
        db = AsyncPostgresqlDatabase(
            server.database, **{**server.connect_params, "port": port, "password": password},
            ssl=False, **options,
        )  # fmt: skip
    else:  # the MariaDB test user's own password
        password = str(server.connect_params["password"])
        db = AsyncMySQLDatabase(
            server.database, **{**server.connect_params, "port": port},
            ssl_disabled=True, **options,
        )  # fmt: skip
    try:
        async with reference_app(backend, request, tmp_path, db=db) as app:
            await new_user(app)
            proxy.server.close()  # the server stops: its links close, connects are refused
            for writer in proxy.writers:
                writer.close()
            await asyncio.sleep(0.05)
            elapsed, down = await timed(app.http.get("/users/"))
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "1"
            assert down.json() in (UNAVAILABLE, BUSY)
            assert elapsed <= 0.9, elapsed  # refused at once, or after acquire_timeout
            assert_hygienic(down, password, str(port))
            # The details went to the server log, the password hidden.
            records = [r for r in caplog.records if r.name == "fastpeewee.fastapi"]
            assert records and "GET /users/" in records[0].getMessage()
            assert password not in caplog.text
            # The server is back: the app recovers without a restart.
            proxy.server = await asyncio.start_server(proxy._client, "127.0.0.1", port)
            assert (await app.http.get("/users/")).status_code == 200
    finally:
        await proxy.close()


@pytest.mark.backends("sqlite")
async def test_s10_a_locked_sqlite_file_answers_503(backend, request, tmp_path):
    import sqlite3

    # timeout=0.2: SQLite's busy timeout (5 s by default) bounds the wait for the lock.
    async with reference_app(backend, request, tmp_path, timeout=0.2) as app:
        holder = sqlite3.connect(app.db.database, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # another process holds the file
            body = {"email": "w@example.com", "password": "12345678"}
            locked = await app.http.post("/users/", json=body)
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert_503(locked, UNAVAILABLE)
        assert_hygienic(locked, app.db.database)
        assert (await app.http.post("/users/", json=body)).status_code == 201
