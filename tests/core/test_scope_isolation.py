"""Who owns a transaction inside a shared (request) scope (RELIABILITY R11, R17,
R18, R21).

- Sibling tasks of one request, each with its own ``atomic()``, never share a
  transaction stack: each is all or nothing on its own.
- A task's statements never land in a sibling's transaction.
- Work that outlives its request keeps its transaction whole.
- A WebSocket holds no connection while idle; a thread that ends holding a
  connection gives the slot back.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket

from fastpeewee import DatabaseMiddleware, TransactionLost

from ..conftest import assert_no_leaks, model_database, settle
from ..harness import (
    Boom,
    check_invariants,
    insert,
    insert_sync,
    ledger_database,
    sibling_savepoint_failing,
    siblings_one_failing,
)


@pytest.fixture
async def env(backend, request, tmp_path):
    options: dict[str, Any] = {"pool_size": 4, "acquire_timeout": 5.0}
    if backend == "sqlite":  # siblings write from connections of their own
        options["pragmas"] = {"journal_mode": "wal"}
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        yield db, outside


async def test_sibling_transactions_in_one_scope_are_their_own(env):
    db, outside = env
    async with db.scope():
        results = await siblings_one_failing(db)
    assert isinstance(results[0], Boom)
    assert results[1] is None
    assert await asyncio.to_thread(outside.tags) == {"b": 1}
    await check_invariants(db, outside, "probe")


async def test_failed_savepoint_of_a_sibling_is_not_committed_by_another(env):
    db, outside = env
    async with db.scope():
        await sibling_savepoint_failing(db)
    assert await asyncio.to_thread(outside.tags) == {"outer": 1}
    await check_invariants(db, outside, "probe")


async def test_autocommit_of_a_sibling_never_lands_in_a_transaction(env):
    db, outside = env
    inside = asyncio.Event()

    async def rolls_back() -> None:
        try:
            async with db.atomic():
                await insert(db, "doomed")
                inside.set()
                await asyncio.sleep(0.05)
                raise ValueError
        except ValueError:
            pass

    async def writes() -> None:
        await inside.wait()
        await insert(db, "acknowledged")  # returns: must be committed

    async with db.scope():
        await asyncio.gather(rolls_back(), writes())
    assert await asyncio.to_thread(outside.tags) == {"acknowledged": 1}
    await check_invariants(db, outside, "probe")


async def test_threads_of_the_owner_join_its_transaction(env):
    db, outside = env
    async with db.scope():
        with pytest.raises(ValueError):
            async with db.atomic():
                await insert(db, "task")
                await asyncio.to_thread(insert_sync, db, "thread")  # in the task's transaction
                raise ValueError
    assert await asyncio.to_thread(outside.tags) == {}
    await check_invariants(db, outside, "probe")


async def test_a_thread_transaction_is_its_own_beside_a_task_transaction(env):
    db, outside = env
    task_inside = asyncio.Event()

    def thread_work() -> None:
        with db.atomic():
            insert_sync(db, "thread")

    async def task_work() -> None:
        try:
            async with db.atomic():
                await insert(db, "task")
                task_inside.set()
                await asyncio.sleep(0.05)
                raise ValueError
        except ValueError:
            pass

    async def start_thread() -> None:
        await task_inside.wait()
        await asyncio.to_thread(thread_work)

    async with db.scope():
        await asyncio.gather(asyncio.create_task(task_work()), asyncio.create_task(start_thread()))
    assert await asyncio.to_thread(outside.tags) == {"thread": 1}
    await check_invariants(db, outside, "probe")


@pytest.mark.parametrize("fails", [False, True], ids=["commits", "fails"])
async def test_a_task_transaction_spanning_the_end_of_its_request_stays_whole(env, fails):
    """All of it is committed when the task's block ends well, none when it fails."""
    db, outside = env
    started = asyncio.Event()
    go_on = asyncio.Event()

    async def background() -> None:
        async with db.atomic():
            await insert(db, "bg")
            started.set()
            await go_on.wait()  # the request ends here
            await insert(db, "bg")
            if fails:
                raise ValueError

    async with db.scope():
        task = asyncio.create_task(background())
        await started.wait()
    go_on.set()
    try:
        await task
    except ValueError:
        assert fails
    assert await asyncio.to_thread(outside.tags) == ({} if fails else {"bg": 2})
    await check_invariants(db, outside, "probe")


async def test_a_thread_transaction_cut_by_the_end_of_its_request_fails_loudly(env):
    db, outside = env
    inside = threading.Event()
    go_on = threading.Event()
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            with db.atomic():
                insert_sync(db, "thread")
                inside.set()
                go_on.wait(5)  # the request ends here
                insert_sync(db, "thread")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    async with db.scope():
        # The thread runs for the request (as a def endpoint would), but
        # outlives it: its context carries the scope, as to_thread's does.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        worker.start()
        await asyncio.to_thread(inside.wait, 5)
    go_on.set()
    await asyncio.to_thread(worker.join, 5)
    assert len(outcome) == 1 and isinstance(outcome[0], TransactionLost), outcome
    assert await asyncio.to_thread(outside.tags) == {}  # nothing of it, nothing elsewhere
    await check_invariants(db, outside, "probe")


async def test_scope_ending_mid_statement_never_hands_the_connection_on(env, backend):
    db, outside = env
    slow = {
        "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 3000000) SELECT count(*) FROM c",
        "postgres": "SELECT pg_sleep(0.3)",
        "mysql": "SELECT SLEEP(0.3)",
    }[backend]
    running = threading.Event()

    def long_statement() -> None:
        running.set()
        db.execute_sql(slow)

    async with db.scope():
        job = asyncio.ensure_future(asyncio.to_thread(long_statement))
        await asyncio.to_thread(running.wait, 5)
        await asyncio.sleep(0.05)
    # The scope is over while the statement runs: its connection stays out
    # of the pool until the statement is done.
    assert sum(stats.in_use for stats in db.pool_stats()) >= 1, db.pool_stats()
    await insert(db, "next")  # gets another connection, not the busy one
    await job
    await check_invariants(db, outside, "probe")
    assert (await asyncio.to_thread(outside.tags))["next"] == 1


async def test_idle_websockets_hold_no_connection(backend, request, tmp_path):
    async with model_database(backend, request, tmp_path, pool_size=2, acquire_timeout=0.5) as db:
        app = FastAPI()
        app.add_middleware(DatabaseMiddleware, database=db)
        queried = asyncio.Semaphore(0)

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            await websocket.accept()
            await db.aexecute_sql("SELECT 1")
            queried.release()
            await websocket.receive_text()  # idles until the client speaks
            await websocket.close()

        @app.get("/one")
        async def one() -> dict[str, int]:
            return {"one": (await db.aexecute_sql("SELECT 1")).fetchone()[0]}

        sockets = [_WebSocketClient(app) for _ in range(2)]
        runs = [asyncio.create_task(socket.run()) for socket in sockets]
        for _ in sockets:
            await asyncio.wait_for(queried.acquire(), 5)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = [(await client.get("/one")).status_code for _ in range(3)]
        for socket in sockets:
            socket.say("bye")
        await asyncio.wait_for(asyncio.gather(*runs), 5)
        assert statuses == [200, 200, 200]  # was 503: the idle sockets held the pool
        await settle(db)
        assert_no_leaks(db)


class _WebSocketClient:
    """One WebSocket session driven straight through the ASGI interface."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})

    def say(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def run(self) -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.close":
                self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "scheme": "ws", "path": "/ws", "raw_path": b"/ws", "root_path": "",
            "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
            "server": ("t", 80), "subprotocols": [],
        }  # fmt: skip
        await self.app(scope, self.inbox.get, send)


@pytest.mark.backends("postgres", "mysql", "sqlite")
async def test_a_thread_that_ends_holding_a_connection_gives_it_back(db):
    def forgets_to_close() -> None:
        db.connect()
        db.execute_sql("SELECT 1")
        # The close hook never runs (an exception skipped it, or it was never written).

    for _ in range(6):  # more than the pool holds
        worker = threading.Thread(target=forgets_to_close)
        worker.start()
        await asyncio.to_thread(worker.join, 5)
    await settle(db)
    assert_no_leaks(db)
    assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
