"""The SQLite connection's own thread (fastpeewee.drivers.worker): order, errors, ending."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from typing import Any

import pytest

from fastpeewee import AsyncSqliteDatabase
from fastpeewee.drivers.worker import Worker

pytestmark = pytest.mark.backends("sqlite")


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fastpeewee-sqlite"]


async def wait_for_no_worker_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The worker threads started since ``before`` still alive after up to 2 s."""
    deadline = time.monotonic() + 2
    while True:
        left = [t for t in worker_threads() if t not in before]
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.01)


async def test_calls_run_in_order_in_one_thread():
    worker = Worker("fastpeewee-sqlite")
    seen: list[tuple[int, str]] = []

    def note(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * 2

    futures = [worker.submit(note, i) for i in range(20)]
    assert [await f for f in futures if f is not None] == [i * 2 for i in range(20)]
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"fastpeewee-sqlite"}
    worker.stop()
    await asyncio.to_thread(worker.join)


async def test_an_error_reaches_the_caller_and_the_thread_goes_on():
    worker = Worker("fastpeewee-sqlite")

    def fail() -> None:
        raise KeyError("boom")

    failing = worker.submit(fail)
    assert failing is not None
    with pytest.raises(KeyError, match="boom"):
        await failing
    fut = worker.submit(int, "7")
    assert fut is not None and await fut == 7
    worker.stop()
    await asyncio.to_thread(worker.join)


async def test_after_stop_nothing_is_queued_and_the_thread_ends():
    before = set(worker_threads())
    worker = Worker("fastpeewee-sqlite")
    gate = threading.Event()
    first = worker.submit(gate.wait, 5)
    worker.stop()  # after what was queued: the call still runs
    assert worker.submit(int) is None  # refused, never left waiting
    gate.set()
    assert first is not None and await first is True
    await asyncio.to_thread(worker.join)
    assert await wait_for_no_worker_threads(before) == []


async def test_a_worker_dropped_without_stop_ends_its_thread():
    before = set(worker_threads())
    worker = Worker("fastpeewee-sqlite")
    fut = worker.submit(int)
    assert fut is not None and await fut == 0
    assert len(set(worker_threads()) - before) == 1
    del worker, fut
    gc.collect()
    assert await wait_for_no_worker_threads(before) == []


def test_an_answer_for_a_closed_loop_is_dropped():
    worker = Worker("fastpeewee-sqlite")
    gate = threading.Event()
    loop = asyncio.new_event_loop()

    async def submit() -> None:
        worker.submit(gate.wait, 5)

    loop.run_until_complete(submit())
    loop.close()  # before the call answers
    gate.set()

    async def still_works() -> int:
        fut = worker.submit(int, "3")
        assert fut is not None
        return await fut

    assert asyncio.run(still_works()) == 3  # the thread survived the closed loop
    worker.stop()
    worker.join()


async def test_close_pool_ends_every_worker_thread(tmp_path):
    before = set(worker_threads())
    db = AsyncSqliteDatabase(str(tmp_path / "w.db"), pool_size=4)
    await db.aexecute_sql("CREATE TABLE t (x)")

    async def write(i: int) -> None:
        async with db:
            await db.aexecute_sql("INSERT INTO t VALUES (?)", (i,))
            await asyncio.sleep(0.02)

    await asyncio.gather(*(write(i) for i in range(8)))
    assert db.pool_stats()[0].opened == 4
    assert len(set(worker_threads()) - before) == 4  # one a connection
    await db.close_pool()
    assert await wait_for_no_worker_threads(before) == []


async def test_a_statement_after_its_connection_closed_fails_at_once(tmp_path):
    db = AsyncSqliteDatabase(str(tmp_path / "c.db"), pool_size=1)
    try:
        conn = await db.aconnect()
        await db.aexecute_sql("CREATE TABLE t (x)")
        conn.close()  # as close_pool does under a holder
        with pytest.raises(Exception, match="closed"):
            await asyncio.wait_for(conn.aexecute("INSERT INTO t VALUES (1)", ()), 2)
        conn.broken = True
        await db.aclose()
    finally:
        await db.close_pool()


async def test_a_cancelled_connect_closes_what_it_opened(tmp_path, monkeypatch):
    from fastpeewee.backends import sqlite as backend

    opened: list[sqlite3.Connection] = []
    real: Any = backend.connect_sqlite  # type: ignore[attr-defined]

    def slow_connect(db: Any) -> sqlite3.Connection:
        time.sleep(0.2)  # in the worker thread: the acquire is cancelled meanwhile
        raw = real(db)
        opened.append(raw)
        return raw

    monkeypatch.setattr(backend, "connect_sqlite", slow_connect)
    before = set(worker_threads())
    db = AsyncSqliteDatabase(str(tmp_path / "o.db"), pool_size=1)
    try:
        task = asyncio.ensure_future(db.aexecute_sql("SELECT 1"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.4)  # the worker finished opening
        assert len(opened) == 1
        with pytest.raises(sqlite3.ProgrammingError):  # closed, not leaked
            opened[0].execute("SELECT 1")
        assert await wait_for_no_worker_threads(before) == []
        assert db.pool_stats()[0].in_use == 0
        monkeypatch.setattr(backend, "connect_sqlite", real)
        assert (await db.aexecute_sql("SELECT 1")).fetchone() == (1,)
    finally:
        await db.close_pool()
