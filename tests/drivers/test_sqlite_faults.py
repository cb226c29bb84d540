"""SQLite under faults: a database file replaced underneath the pool, shutdown with
busy connections, and cancellation of a statement that waits for a lock."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncSqliteDatabase

from ..conftest import assert_no_leaks, model_database, settle
from ..harness import StepResult, cancel_at_every_step
from ..models import User

pytestmark = pytest.mark.backends("sqlite")

# A statement that keeps SQLite busy for seconds (~5 s here, > 1 s anywhere),
# yet ends on its own: before the fix, close_pool() blocked until it did.
BUSY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
    "SELECT count(*) FROM c"
)


class Beat:
    """The longest stall of the event loop while it runs."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    async def __aenter__(self) -> Beat:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def usernames(db: Any) -> list[str]:
    return [u.username for u in await db.list(User.select().order_by(User.username))]


def sync_usernames() -> list[str]:
    return [u.username for u in User.select().order_by(User.username)]


async def follow_up_works(db: Any) -> None:
    await settle(db)
    assert_no_leaks(db)
    assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1


async def warm(db: Any, n: int = 4) -> None:
    """Leave ``n`` idle connections in the pool, all opened on the current file."""
    gate = asyncio.Event()

    async def hold() -> None:
        async with db:
            await db.aexecute_sql("SELECT 1")
            await gate.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(n)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(*tasks)
    assert db.pool_stats()[0].idle == n


def remove_database(path: str) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def backup(path: str, target: str) -> None:
    """An online backup of ``path`` into ``target`` (sqlite3's backup API)."""
    source, copy = sqlite3.connect(path), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


# -- a file replaced underneath (RELIABILITY R20) ------------------------------


@pytest.fixture(params=["delete", "wal"], ids=["journal", "wal"])
async def filedb(request, backend, tmp_path) -> AsyncIterator[Any]:
    pragmas = {"journal_mode": request.param}
    async with model_database(backend, request, tmp_path, pragmas=pragmas) as database:
        yield database


def restore(path: str, saved: str) -> None:
    """Put a backup in place by renaming it over the live file, as restore tools do."""
    for suffix in ("-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    os.replace(saved, path)


@pytest.mark.parametrize("side", ["task", "thread"])
async def test_a_file_restored_from_a_backup_is_used_at_once(filedb, tmp_path, side):
    path = filedb.database
    await User.acreate(username="alice")
    saved = str(tmp_path / "saved.db")
    backup(path, saved)
    await User.acreate(username="bob")  # after the backup: gone once it is restored
    await warm(filedb)

    restore(path, saved)
    if side == "task":
        assert await usernames(filedb) == ["alice"]  # not the old file's rows
        await User.acreate(username="carol")  # not "attempt to write a readonly database"
        assert await usernames(filedb) == ["alice", "carol"]
    else:

        def work() -> list[str]:
            seen = sync_usernames()
            User.create(username="carol")
            return seen + sync_usernames()

        assert await asyncio.to_thread(work) == ["alice", "alice", "carol"]
    await follow_up_works(filedb)


async def test_a_file_deleted_and_recreated_is_used_at_once(filedb):
    # What peewee's own playhouse tests do between two tests.
    path = filedb.database
    await User.acreate(username="old")
    await warm(filedb)
    remove_database(path)
    fresh = peewee.SqliteDatabase(path)
    with fresh.bind_ctx([User]):
        fresh.create_tables([User])
    fresh.close()

    assert await usernames(filedb) == []
    await User.acreate(username="new")
    assert await usernames(filedb) == ["new"]
    await follow_up_works(filedb)


async def test_a_replaced_file_is_noticed_under_a_uri_filename(tmp_path):
    path = str(tmp_path / "uri.db")
    db = AsyncSqliteDatabase(f"file:{path}?mode=rwc", uri=True, pool_size=2)
    try:
        await db.aexecute_sql("CREATE TABLE t (x)")
        await db.aexecute_sql("INSERT INTO t VALUES (1)")
        saved = str(tmp_path / "saved.db")
        backup(path, saved)
        await db.aexecute_sql("INSERT INTO t VALUES (2)")
        restore(path, saved)
        await db.aexecute_sql("INSERT INTO t VALUES (3)")
        rows = (await db.aexecute_sql("SELECT x FROM t ORDER BY x")).fetchall()
        assert rows == [(1,), (3,)]
        assert_no_leaks(db)
    finally:
        await db.close_pool()


@pytest.mark.parametrize("name", [":memory:", "file:faults?mode=memory&cache=shared"])
async def test_an_in_memory_database_is_kept(name):
    # No file to watch: the one connection that *is* the database stays.
    db = AsyncSqliteDatabase(name, uri=name.startswith("file:"))
    try:
        await db.aexecute_sql("CREATE TABLE t (x)")
        await db.aexecute_sql("INSERT INTO t VALUES (1)")
        assert await asyncio.to_thread(lambda: db.execute_sql("SELECT x FROM t").fetchall()) == [
            (1,)
        ]
        assert (await db.aexecute_sql("SELECT x FROM t")).fetchall() == [(1,)]
        assert db.pool_stats()[0].opened == 1
    finally:
        await db.close_pool()


# -- shutdown with busy connections (RELIABILITY R14) --------------------------


@pytest.fixture
async def quickdb(backend, request, tmp_path) -> AsyncIterator[Any]:
    """Four connections; close_pool() waits 0.2 s for them before terminating."""
    async with model_database(
        backend, request, tmp_path, pool_size=4, acquire_timeout=0.2
    ) as database:
        yield database


def assert_shutdown_errors(results: list[Any]) -> None:
    for result in results:
        assert isinstance(result, peewee.OperationalError | peewee.InterfaceError), repr(result)


async def close_pool_promptly(db: Any) -> list[Any]:
    """Close the pool while its connections are busy; return them (all checked out)."""
    pool = db._async_pool_get()
    busy = list(pool._in_use)
    assert len(busy) == 4
    async with Beat() as beat:
        begun = time.monotonic()
        await db.close_pool()
        elapsed = time.monotonic() - begun
    assert elapsed < 1.0, f"close_pool() took {elapsed:.2f} s"
    assert beat.longest < 0.5, f"the event loop stalled {beat.longest:.2f} s"
    assert pool.stats().in_use == 0
    return busy


def assert_closed(conns: list[Any]) -> None:
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.raw.execute("SELECT 1")


async def test_close_pool_interrupts_busy_tasks(quickdb):
    tasks = [asyncio.create_task(quickdb.aexecute_sql(BUSY)) for _ in range(4)]
    await asyncio.sleep(0.2)
    busy = await close_pool_promptly(quickdb)
    async with asyncio.timeout(2):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert_shutdown_errors(results)
    assert_closed(busy)
    await follow_up_works(quickdb)


async def test_close_pool_interrupts_busy_threads(quickdb):
    started = threading.Barrier(5)

    def work() -> None:
        quickdb.execute_sql("SELECT 1")  # through the shared pool, like a task
        started.wait(5)
        quickdb.execute_sql(BUSY)

    with _threads(4, work) as threads:
        await asyncio.to_thread(started.wait, 5)
        await asyncio.sleep(0.2)
        busy = await close_pool_promptly(quickdb)
        assert await asyncio.to_thread(threads.join, 2) == 4  # interrupted, not finished
    assert_shutdown_errors(threads.results)
    assert_closed(busy)
    await follow_up_works(quickdb)


class Threads:
    """``n`` threads running ``fn``; ``results`` has what each raised (or returned)."""

    def __init__(self, n: int, fn: Any) -> None:
        self.results: list[Any] = []
        self._fn = fn
        self._threads = [threading.Thread(target=self._run) for _ in range(n)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        try:
            self.results.append(self._fn())
        except BaseException as exc:
            self.results.append(exc)

    def join(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds in all; return how many threads ended."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(self.results)


@contextmanager
def _threads(n: int, fn: Any) -> Iterator[Threads]:
    threads = Threads(n, fn)
    try:
        yield threads
    finally:
        threads.join(30)


# -- cancelling a wait for SQLite's lock --------------------------------------


@contextmanager
def write_lock(path: str, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """Another process's write transaction, holding the lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute(f"BEGIN {mode}")
        other.execute("INSERT INTO user (username) VALUES ('holder')")
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


async def cancel_after(coro: Any, how: str, delay: float = 0.1) -> float:
    """Cancel ``coro`` after ``delay`` (task.cancel or asyncio.timeout); return how long
    the caller waited in all."""
    begun = time.monotonic()
    if how == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(delay):
                await coro
    else:
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return time.monotonic() - begun


async def in_atomic(db: Any) -> None:
    async with db.atomic():
        await User.acreate(username="waiter")


@pytest.mark.parametrize("how", ["timeout", "cancel"])
@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(lambda db: User.acreate(username="waiter"), id="insert"),
        pytest.param(in_atomic, id="atomic"),
        pytest.param(lambda db: db.aexecute_sql("SELECT count(*) FROM user"), id="select"),
    ],
)
async def test_cancelling_a_lock_wait_is_prompt(db, statement, how):
    with write_lock(db.database, "EXCLUSIVE"):  # EXCLUSIVE: readers wait too
        waited = await cancel_after(statement(db), how)
        assert waited < 1.0, f"the cancellation took {waited:.2f} s (busy timeout: 5 s)"
        await settle(db)
        assert_no_leaks(db)
    assert await db.count(User.select()) == 0  # neither the holder's row nor ours
    await User.acreate(username="after")
    await follow_up_works(db)


async def test_close_pool_interrupts_a_thread_waiting_for_the_lock(quickdb):
    with write_lock(quickdb.database), _threads(1, lambda: User.create(username="t")) as thread:
        await asyncio.sleep(0.3)  # the thread now waits in SQLite's busy handler
        async with Beat() as beat:
            begun = time.monotonic()
            await quickdb.close_pool()
            elapsed = time.monotonic() - begun
        assert elapsed < 1.0, f"close_pool() took {elapsed:.2f} s (busy timeout: 5 s)"
        assert beat.longest < 0.5, f"the event loop stalled {beat.longest:.2f} s"
        assert await asyncio.to_thread(thread.join, 1) == 1
    assert_shutdown_errors(thread.results)
    await follow_up_works(quickdb)


# -- waiting for the lock still works as configured ----------------------------


async def test_a_lock_wait_lasts_until_the_lock_is_free(db):
    with write_lock(db.database) as other:
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        begun = time.monotonic()
        await User.acreate(username="patient")
        assert time.monotonic() - begun >= 0.25
        other.execute("BEGIN")  # for write_lock's ROLLBACK
    assert await usernames(db) == ["holder", "patient"]


@pytest.mark.parametrize("side", ["task", "thread"])
async def test_a_lock_wait_ends_after_the_busy_timeout(backend, request, tmp_path, side):
    async with model_database(backend, request, tmp_path, timeout=0.5) as short:
        with write_lock(short.database):
            begun = time.monotonic()
            with pytest.raises(peewee.OperationalError, match="database is locked"):
                if side == "task":
                    await User.acreate(username="x")
                else:
                    await asyncio.to_thread(User.create, username="x")
            assert 0.4 < time.monotonic() - begun < 1.5
        # The connection's own setting reads as configured, and can be changed.
        assert (await short.aexecute_sql("PRAGMA busy_timeout")).fetchone()[0] == 500
        await follow_up_works(short)


async def test_a_read_transaction_upgrading_to_write_fails_at_once(db):
    # SQLite refuses at once rather than deadlock: waiting would not help.
    await User.acreate(username="a")
    with pytest.raises(peewee.OperationalError, match="locked"):
        async with db.atomic():
            await db.aexecute_sql("SELECT count(*) FROM user")  # a read lock, held
            with write_lock(db.database, "IMMEDIATE"):
                begun = time.monotonic()
                try:
                    await User.acreate(username="b")
                finally:
                    assert time.monotonic() - begun < 0.5
    await follow_up_works(db)


async def test_busy_timeout_set_at_runtime_applies(db):
    with write_lock(db.database):
        begun = time.monotonic()
        with pytest.raises(peewee.OperationalError, match="database is locked"):
            async with db:
                await db.aexecute_sql("PRAGMA busy_timeout=300;")  # peewee's db.timeout = 0.3
                await User.acreate(username="x")
        assert time.monotonic() - begun < 1.5
    await follow_up_works(db)


# -- a stream cancelled as it opens -------------------------------------------


async def every_connection_sees(db: Any, count: int) -> None:
    """Each pooled connection (all held at once) reads ``count`` users and can write."""
    size = max(1, db.pool_stats()[0].idle)
    gate = asyncio.Event()
    held = 0

    async def one() -> tuple[int, int]:
        nonlocal held
        async with db:
            held += 1
            if held == size:
                gate.set()
            await asyncio.wait_for(gate.wait(), 2.0)
            seen = await db.count(User.select())
            await db.aexecute_sql("UPDATE user SET username = username WHERE 0")
            return seen, count

    for seen, expected in await asyncio.gather(*(one() for _ in range(size))):
        assert seen == expected  # no stale snapshot of an abandoned statement


async def test_a_stream_cancelled_at_any_step_leaves_no_statement_active(filedb):
    # Left open, an abandoned cursor keeps a statement active on the pooled
    # connection: it holds a read lock (writers elsewhere wait for it) or a
    # WAL snapshot (the next owner reads old rows), and the interrupt sent for
    # the cancellation fails the next owner's statement ("interrupted").
    db = filedb
    for i in range(5):
        await User.acreate(username=f"s{i}")

    async def stream_then_write() -> None:
        seen = 0
        async for _user in db.iterate(User.select(), 2):
            seen += 1
            if seen == 3:
                break
        await db.aexecute_sql("UPDATE user SET username = username WHERE 0")

    async def check(result: StepResult) -> None:
        await settle(db)
        assert_no_leaks(db)
        other = sqlite3.connect(db.database)  # a row committed from outside
        with other:
            other.execute("INSERT INTO user (username) VALUES (?)", (f"outside{result.k}",))
        other.close()
        await every_connection_sees(db, 6 + result.k)

    assert await cancel_at_every_step(lambda marks: stream_then_write(), check) >= 2
