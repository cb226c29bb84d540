"""SQLite's two modes per connection: inline on the loop (busy timeout 0) and in
the connection's worker thread (the configured busy timeout, in slices).

The connection switches SQLite's busy timeout only when the kind of statement
changes, so these tests interleave the two kinds, with another process holding
the lock at chosen steps, and check what each guarantee promises: an inline
read never blocks the loop and still returns the right rows; a statement that
may wait waits as long as the user's timeout says (also one set at runtime);
a plain BEGIN runs on the loop and takes no lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncSqliteDatabase

from ..conftest import assert_no_leaks, model_database, settle
from ..models import User
from .test_sqlite_faults import Beat

pytestmark = pytest.mark.backends("sqlite")


@contextmanager
def traced(conn: Any) -> Iterator[list[tuple[str, str]]]:
    """The statements SQLite runs on ``conn`` (a held connection), with their thread."""
    seen: list[tuple[str, str]] = []
    conn.raw.set_trace_callback(lambda sql: seen.append((threading.current_thread().name, sql)))
    try:
        yield seen
    finally:
        conn.raw.set_trace_callback(None)


@contextmanager
def write_lock(
    path: str, mode: str = "IMMEDIATE", holder: str = "holder"
) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction (inserting ``holder``), holding the
    lock until the block ends or :func:`release_later` commits it."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute(f"BEGIN {mode}")
        other.execute("INSERT INTO user (username) VALUES (?)", (holder,))
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


def release_later(other: sqlite3.Connection, delay: float) -> None:
    """Commit ``other``'s write transaction (from write_lock) after ``delay`` seconds,
    in a thread: its fsync would stall the loop that the tests watch."""

    def commit() -> None:
        other.execute("COMMIT")
        other.execute("BEGIN")  # for write_lock's ROLLBACK

    timer = threading.Timer(delay, commit)
    timer.start()
    _timers.append(timer)


_timers: list[threading.Timer] = []


@pytest.fixture(autouse=True)
def _join_timers() -> Iterator[None]:
    yield
    while _timers:
        _timers.pop().join(5)


async def names(db: Any) -> list[str]:
    return [u.username for u in await db.list(User.select().order_by(User.username))]


async def test_a_run_of_inline_reads_sends_sqlite_nothing_else(db):
    await User.acreate(username="ann")
    async with db:
        conn = await db.aconnect()
        await db.count(User.select())  # the first inline read sets busy timeout 0
        with traced(conn) as seen:
            for _ in range(5):
                user = await db.get(User.select().where(User.username == "ann"))
                assert user.username == "ann"
    assert len(seen) == 5, seen
    assert all(thread == "MainThread" and sql.startswith("SELECT") for thread, sql in seen)


async def test_the_busy_timeout_switches_only_when_the_kind_changes(db):
    async with db:
        conn = await db.aconnect()
        with traced(conn) as seen:
            await db.count(User.select())  # inline: 0 set once
            await db.count(User.select())
            await User.acreate(username="a")  # worker: a slice set once
            await User.acreate(username="b")
            await db.count(User.select())  # inline again: 0 again
    pragmas = [sql for _, sql in seen if sql.startswith("PRAGMA")]
    assert pragmas == [f"PRAGMA busy_timeout = {ms}" for ms in (0, 50, 0)]
    assert await names(db) == ["a", "b"]


@pytest.mark.parametrize("before", ["read", "write"])
async def test_an_inline_read_under_a_lock_never_blocks_the_loop(db, before):
    await User.acreate(username="before")
    async with db:
        conn = await db.aconnect()
        if before == "read":
            await db.count(User.select())  # busy timeout 0 already set
        else:
            await User.acreate(username="write")  # a slice set: the read must set 0
        with write_lock(db.database, "EXCLUSIVE") as other, traced(conn) as seen:  # readers wait
            release_later(other, 0.3)
            begun = time.monotonic()
            async with Beat() as beat:
                rows = await names(db)
            waited = time.monotonic() - begun
    expected = ["before", "holder"] + (["write"] if before == "write" else [])
    assert rows == expected  # read after the holder committed, in a worker
    assert waited >= 0.25
    # Tried on the loop with busy timeout 0, given up at once, waited for in the worker.
    threads = [thread for thread, sql in seen if sql.startswith("SELECT")]
    assert threads[0] == "MainThread" and threads[-1].startswith("fastpeewee-sqlite"), seen
    assert (seen[0][1] == "PRAGMA busy_timeout = 0") == (before == "write"), seen
    assert beat.longest < 0.2, f"the event loop stalled {beat.longest:.3f} s"


async def test_a_write_after_inline_reads_waits_for_the_lock(db):
    async with db:
        for _ in range(3):
            await db.count(User.select())  # leaves busy timeout 0 on the connection
        with write_lock(db.database) as other:
            release_later(other, 0.3)
            begun = time.monotonic()
            await User.acreate(username="patient")  # not "database is locked" at once
            assert time.monotonic() - begun >= 0.25
    assert await names(db) == ["holder", "patient"]


@pytest.mark.parametrize("side", ["task", "thread"])
async def test_a_short_busy_timeout_still_ends_the_wait_after_reads(
    backend, request, tmp_path, side
):
    async with model_database(backend, request, tmp_path, timeout=0.4, pool_size=1) as short:
        await short.count(User.select())  # inline: busy timeout 0 left on the one connection
        with write_lock(short.database):
            begun = time.monotonic()
            with pytest.raises(peewee.OperationalError, match="database is locked"):
                if side == "task":
                    await User.acreate(username="x")
                else:
                    await asyncio.to_thread(User.create, username="x")
            assert 0.3 < time.monotonic() - begun < 1.5
        assert (await short.aexecute_sql("PRAGMA busy_timeout")).fetchone()[0] == 400
        await settle(short)
        assert_no_leaks(short)


async def test_a_busy_timeout_set_at_runtime_survives_inline_reads(db):
    async with db:
        await db.aexecute_sql("PRAGMA busy_timeout = 300")
        for _ in range(3):
            await db.count(User.select())  # inline: SQLite gets 0 meanwhile
        assert (await db.aexecute_sql("PRAGMA busy_timeout")).fetchone()[0] == 300
        with write_lock(db.database):
            begun = time.monotonic()
            with pytest.raises(peewee.OperationalError, match="database is locked"):
                await User.acreate(username="x")
            assert 0.2 < time.monotonic() - begun < 1.5  # 0.3 s, not the default 5 s
        # Raised again: the wait lasts until the lock is free.
        await db.aexecute_sql("PRAGMA busy_timeout = 5000")
        await db.count(User.select())
        with write_lock(db.database) as other:
            release_later(other, 0.3)
            await User.acreate(username="y")
    assert await names(db) == ["holder", "y"]


async def test_interleaved_reads_and_writes_under_contention(db):
    """Eight rounds of read, write, read on one connection; the lock held by
    another process at every other step, released after a short while."""
    written: list[str] = []
    async with db:
        for round_ in range(8):
            lock_read, lock_write = round_ % 2 == 0, round_ % 4 in (1, 2)
            if lock_read:
                with write_lock(db.database, "EXCLUSIVE", f"h{round_}r") as other:
                    release_later(other, 0.3)
                    async with Beat() as beat:
                        seen = await names(db)
                    assert beat.longest < 0.2
                written.append(f"h{round_}r")  # committed before the read ran
            else:
                seen = await names(db)
            assert seen == sorted(written)
            name = f"w{round_}"
            if lock_write:
                with write_lock(db.database, "IMMEDIATE", f"h{round_}w") as other:
                    release_later(other, 0.1)
                    await User.acreate(username=name)
                written.append(f"h{round_}w")
            else:
                await User.acreate(username=name)
            written.append(name)
            assert await names(db) == sorted(written)
    # Seen from outside: every acknowledged row is in the file.
    outside = sqlite3.connect(db.database)
    try:
        rows = sorted(r[0] for r in outside.execute("SELECT username FROM user"))
    finally:
        outside.close()
    assert rows == sorted(written)


async def test_a_plain_begin_runs_on_the_loop_and_takes_no_lock(db):
    async with db:
        conn = await db.aconnect()
        with write_lock(db.database, "EXCLUSIVE") as other, traced(conn) as seen:
            async with Beat() as beat, db.atomic():  # BEGIN: no lock, so no wait, even now
                release_later(other, 0.2)
                await User.acreate(username="in-tx")  # waits for the lock in a worker
            assert beat.longest < 0.15
    begins = [thread for thread, sql in seen if sql == "BEGIN"]
    assert begins == ["MainThread"]
    commits = [thread for thread, sql in seen if sql == "COMMIT"]
    assert len(commits) == 1 and commits[0].startswith("fastpeewee-sqlite")
    assert await names(db) == ["holder", "in-tx"]


async def test_a_savepoint_inline_rolls_back_alone(db):
    async with db.atomic():
        await User.acreate(username="kept")
        with pytest.raises(ValueError):
            async with db.atomic():  # SAVEPOINT, on the loop
                await User.acreate(username="dropped")
                raise ValueError
    assert await names(db) == ["kept"]


async def test_begin_goes_to_the_worker_when_inline_is_off(tmp_path):
    class Workers(AsyncSqliteDatabase):
        inline_reads = False

    db = Workers(str(tmp_path / "w.db"))
    try:
        await db.aexecute_sql("CREATE TABLE t (x)")
        async with db:
            conn = await db.aconnect()
            with traced(conn) as seen:
                async with db.atomic():
                    await db.aexecute_sql("INSERT INTO t VALUES (1)")
                    await db.aexecute_sql("SELECT x FROM t")
        assert all(thread.startswith("fastpeewee-sqlite") for thread, _ in seen), seen
        assert [sql for _, sql in seen][:1] == ["BEGIN"]
    finally:
        await db.close_pool()


async def test_an_empty_atomic_commits_cleanly(db):
    for _ in range(3):
        async with db.atomic():
            pass
    await User.acreate(username="after")
    assert await names(db) == ["after"]


LONG = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
    "SELECT count(*) FROM c"
)


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_cancelled_worker_statement_is_interrupted_and_waited_for(db, how):
    pool = db._async_pool_get()
    begun = time.monotonic()
    if how == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await db.aexecute_sql(LONG)  # too long inline: runs in the worker
    else:
        task = asyncio.ensure_future(db.aexecute_sql(LONG))
        await asyncio.sleep(0.2)
        task.cancel()
        task.cancel()  # twice: still one interrupt, still waited for
        with pytest.raises(asyncio.CancelledError):
            await task
    assert time.monotonic() - begun < 1.0  # interrupted: the statement takes seconds
    # The CancelledError came only once the worker had returned: nothing runs.
    conns = list(pool._idle) + list(pool._in_use)
    assert conns and not any(c._running for c in conns)
    await settle(db)
    assert_no_leaks(db)
    assert (await db.aexecute_sql("SELECT count(*) FROM user")).fetchone()[0] == 0
