"""Whole-transaction retries (fastpeewee.retries) against real conflicts on real servers.

Each conflict is made for real: two SERIALIZABLE transactions with a
read/write dependency on PostgreSQL (write skew: 40001), two transactions
locking rows in opposite order (a deadlock: 40P01, 1213), a WAL snapshot gone
stale on SQLite. Attempts are counted, and the rows are checked from outside
(tests/harness.py's Outside): every logical operation applied exactly once.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import peewee
import pytest

from fastpeewee import RetryPolicy, is_retryable, is_unavailable

from ..conftest import assert_no_leaks, make_database, settle
from ..harness import Outside
from ..models import User

FAST = {"backoff": 0.01, "backoff_max": 0.05}  # keep the tests quick


def _int_pk(backend: str) -> str:
    return "INTEGER" if backend == "sqlite" else "INT"


async def _database(backend: str, request: Any, tmp_path: Any, **options: Any) -> Any:
    if backend == "sqlite":
        options.setdefault("pragmas", {"journal_mode": "wal"})
    db = make_database(backend, request, tmp_path, **options)
    await db.aexecute_sql("DROP TABLE IF EXISTS rt_rows")
    await db.aexecute_sql("DROP TABLE IF EXISTS rt_ledger")
    await db.aexecute_sql(f"CREATE TABLE rt_rows (id {_int_pk(backend)} PRIMARY KEY, n INT)")
    await db.aexecute_sql("CREATE TABLE rt_ledger (op VARCHAR(20) PRIMARY KEY)")
    await db.aexecute_sql("INSERT INTO rt_rows (id, n) VALUES (1, 0), (2, 0)")
    return db


async def _finish(db: Any) -> None:
    await settle(db)
    try:
        assert_no_leaks(db)
    finally:
        await db.close_pool()
        db.close_all()


def _outside_rows(db: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    outside = Outside(db)
    try:
        rows = outside.query("SELECT id, n FROM rt_rows ORDER BY id")
        ledger = outside.query("SELECT op FROM rt_ledger ORDER BY op")
    finally:
        outside.close()
    return [tuple(r) for r in rows], [tuple(r) for r in ledger]


async def _scalar(db: Any, sql: str) -> Any:
    return (await db.aexecute_sql(sql)).fetchone()[0]


@pytest.mark.backends("postgres")
async def test_serializable_write_skew_reruns_the_loser_once(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    both_read = asyncio.Barrier(2)
    runs = {"1": 0, "2": 0}

    async def op(row: int) -> None:
        # Read both rows, write your own: each transaction's write changes what
        # the other read (write skew), so SERIALIZABLE lets only one commit.
        name = str(row)
        runs[name] += 1
        await db.aexecute_sql("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        total = await _scalar(db, "SELECT SUM(n) FROM rt_rows")
        if runs[name] == 1:
            async with asyncio.timeout(5):
                await both_read.wait()
        await db.aexecute_sql("UPDATE rt_rows SET n = %s WHERE id = %s", (total + 1, row))
        await db.aexecute_sql("INSERT INTO rt_ledger (op) VALUES (%s)", (name,))

    try:
        await asyncio.gather(
            db.arun_in_transaction(lambda: op(1), **FAST),
            db.arun_in_transaction(lambda: op(2), **FAST),
        )
        rows, ledger = _outside_rows(db)
        # Run one after the other: the first writes 1, the second sees it and writes 2.
        assert sorted(n for _, n in rows) == [1, 2], rows
        assert ledger == [("1",), ("2",)]
        assert sorted(runs.values()) == [1, 2], runs  # the loser ran twice, no more
    finally:
        await _finish(db)


async def _opposite_order(db: Any, first: int, runs: dict[int, int], barrier: Any) -> None:
    """Lock row ``first``, wait for the other transaction to lock the other row,
    then take it: a deadlock, the first time round."""
    runs[first] += 1
    second = 3 - first
    await db.aexecute_sql("UPDATE rt_rows SET n = n + 1 WHERE id = %s", (first,))
    if runs[first] == 1:
        async with asyncio.timeout(5):
            await barrier.wait()
    await db.aexecute_sql("UPDATE rt_rows SET n = n + 1 WHERE id = %s", (second,))
    await db.aexecute_sql("INSERT INTO rt_ledger (op) VALUES (%s)", (f"op{first}",))


@pytest.mark.backends("postgres", "mysql")
async def test_deadlock_victim_is_rerun_and_each_operation_lands_once(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    barrier = asyncio.Barrier(2)
    runs = {1: 0, 2: 0}

    @db.retry_transaction(attempts=3, **FAST)
    async def op(first: int) -> None:
        await _opposite_order(db, first, runs, barrier)

    try:
        await asyncio.gather(op(1), op(2))
        rows, ledger = _outside_rows(db)
        assert rows == [(1, 2), (2, 2)], rows  # both operations, each once
        assert ledger == [("op1",), ("op2",)]
        assert sorted(runs.values()) == [1, 2], runs  # one victim, rerun once
    finally:
        await _finish(db)


@pytest.mark.backends("postgres", "mysql")
async def test_sync_form_reruns_a_deadlocked_thread(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    barrier = threading.Barrier(2, timeout=5)
    runs = {1: 0, 2: 0}

    def op(first: int) -> None:
        runs[first] += 1
        db.execute_sql("UPDATE rt_rows SET n = n + 1 WHERE id = %s", (first,))
        if runs[first] == 1:
            barrier.wait()
        db.execute_sql("UPDATE rt_rows SET n = n + 1 WHERE id = %s", (3 - first,))
        db.execute_sql("INSERT INTO rt_ledger (op) VALUES (%s)", (f"op{first}",))

    def worker(first: int) -> None:
        try:
            db.run_in_transaction(lambda: op(first), attempts=3, **FAST)
        finally:
            db.release_thread()

    try:
        await asyncio.gather(asyncio.to_thread(worker, 1), asyncio.to_thread(worker, 2))
        rows, ledger = _outside_rows(db)
        assert rows == [(1, 2), (2, 2)], rows
        assert ledger == [("op1",), ("op2",)]
        assert sorted(runs.values()) == [1, 2], runs
    finally:
        await _finish(db)


@pytest.mark.backends("sqlite")
async def test_sqlite_busy_of_a_reader_turned_writer_is_rerun(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    both_read = asyncio.Barrier(2)
    runs = {1: 0, 2: 0}

    async def op(row: int) -> None:
        # Both read in deferred transactions, then write: the second writer
        # gets SQLITE_BUSY at once (waiting could not help: its snapshot is
        # stale), SQLite's deadlock.
        runs[row] += 1
        total = await _scalar(db, "SELECT SUM(n) FROM rt_rows")
        if runs[row] == 1:
            async with asyncio.timeout(5):
                await both_read.wait()
        await db.aexecute_sql("UPDATE rt_rows SET n = ? WHERE id = ?", (total + 1, row))
        await db.aexecute_sql("INSERT INTO rt_ledger (op) VALUES (?)", (str(row),))

    try:
        await asyncio.gather(
            db.arun_in_transaction(lambda: op(1), **FAST),
            db.arun_in_transaction(lambda: op(2), **FAST),
        )
        rows, ledger = _outside_rows(db)
        assert sorted(n for _, n in rows) == [1, 2], rows  # serial: 1, then 2
        assert ledger == [("1",), ("2",)]
        # The winner ran once; the loser again until the winner had committed
        # (a rerun that reads before that commit and then writes meets it again).
        assert min(runs.values()) == 1 and 2 <= max(runs.values()) <= 5, runs
    finally:
        await _finish(db)


# A real error with a retryable code, raised by the server itself.
RAISE_CONFLICT = {
    "postgres": "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
    "mysql": "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'conflict'",
}


@pytest.mark.backends("postgres", "mysql")
async def test_the_last_error_propagates_after_the_bound(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    runs = 0

    async def always_conflicts() -> None:
        nonlocal runs
        runs += 1
        await db.aexecute_sql("INSERT INTO rt_ledger (op) VALUES (%s)", (f"run{runs}",))
        await db.aexecute_sql(RAISE_CONFLICT[backend])

    try:
        with pytest.raises(peewee.DatabaseError) as caught:
            await db.arun_in_transaction(always_conflicts, attempts=4, **FAST)
        assert runs == 4
        assert is_retryable(caught.value) and not is_unavailable(caught.value)
        assert any("failed 4 times" in note for note in caught.value.__notes__)
        _, ledger = _outside_rows(db)
        assert ledger == []  # every run rolled back
    finally:
        await _finish(db)


async def test_other_errors_propagate_at_once(db, backend):
    runs = 0

    async def duplicate() -> None:
        nonlocal runs
        runs += 1
        await User.acreate(username="ann")
        await User.acreate(username="ann")

    with pytest.raises(peewee.IntegrityError) as caught:
        await db.arun_in_transaction(duplicate, attempts=5)
    assert runs == 1
    assert not is_retryable(caught.value)
    assert await db.count(User.select()) == 0  # rolled back


async def test_cancellation_is_never_swallowed(db, backend):
    runs = 0
    started = asyncio.Event()

    async def slow() -> None:
        nonlocal runs
        runs += 1
        await db.aexecute_sql("SELECT 1")
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(db.arun_in_transaction(slow, attempts=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 1
    await settle(db)
    assert_no_leaks(db)


@pytest.mark.backends("postgres")
async def test_cancelled_during_the_pause_stops(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    runs = 0
    failed = asyncio.Event()

    async def conflicts() -> None:
        nonlocal runs
        runs += 1
        failed.set()
        await db.aexecute_sql(RAISE_CONFLICT[backend])

    try:
        task = asyncio.create_task(
            db.arun_in_transaction(conflicts, attempts=50, backoff=5.0, backoff_max=5.0)
        )
        await failed.wait()
        await asyncio.sleep(0.1)  # the run failed; most likely in the pause now
        seen = runs
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert runs == seen < 50  # no run after the cancellation, none swallowed it
    finally:
        await _finish(db)


@pytest.mark.backends("postgres")
async def test_inside_an_open_transaction_it_runs_once(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    runs = 0

    async def conflicts() -> None:
        nonlocal runs
        runs += 1
        await db.aexecute_sql(RAISE_CONFLICT[backend])

    try:
        with pytest.raises(peewee.DatabaseError):
            async with db.atomic():
                await db.arun_in_transaction(conflicts, attempts=5, **FAST)
        assert runs == 1  # the outer transaction is aborted: only its caller can rerun it
    finally:
        await _finish(db)


def test_is_retryable_names_its_errors():
    import sqlite3

    assert not is_retryable(asyncio.CancelledError())
    assert not is_retryable(ConnectionRefusedError())
    locked = sqlite3.OperationalError("database table is locked")
    locked.sqlite_errorcode = 6  # SQLITE_LOCKED: a conflict inside one connection, a bug
    assert not is_retryable(locked)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
