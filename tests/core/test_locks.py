"""Named transaction-scoped locks (fastpeewee.locks) and create_tables under them.

The start-up race of issue 13: several workers run ``CREATE TABLE IF NOT
EXISTS`` at once, and PostgreSQL fails one of them with a duplicate key on
``pg_type``/``pg_class``. Here two database objects (two workers: pools of
their own) create the same fresh tables at the same instant, from two threads
each running an event loop of its own, round after round.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import peewee
import pytest

from fastpeewee import LockTimeout, alock, lock
from fastpeewee.locks import SCHEMA_LOCK, lock_key, mysql_lock_name

from ..conftest import assert_no_leaks, make_database, settle
from ..harness import Outside
from ..servers import wait_until

ROUNDS = {"sqlite": 10, "postgres": 12, "mysql": 4}


def _models(db: Any, suffix: str) -> list[type[peewee.Model]]:
    """Three fresh tables: a foreign key, an index and a sequence each time."""

    def meta(table: str) -> type:
        return type("Meta", (), {"database": db, "table_name": f"race_{table}_{suffix}"})

    owner = type("Owner", (peewee.Model,), {
        "name": peewee.CharField(index=True),
        "Meta": meta("owner"),
    })  # fmt: skip
    pet = type("Pet", (peewee.Model,), {
        "owner": peewee.ForeignKeyField(owner, backref="pets"),
        "name": peewee.CharField(unique=True),
        "Meta": meta("pet"),
    })  # fmt: skip
    toy = type("Toy", (peewee.Model,), {
        "pet": peewee.ForeignKeyField(pet),
        "Meta": meta("toy"),
    })  # fmt: skip
    return [owner, pet, toy]


def _tables(outside: Outside, suffix: str) -> set[str]:
    if outside.kind == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?"
    elif outside.kind == "postgres":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE ?"
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE ?"
        )
    return {row[0] for row in outside.query(sql, (f"race_%_{suffix}",))}


def _race(workers: list[Any], suffix: str, use_async: bool) -> list[BaseException | None]:
    """Each worker creates the same fresh tables at the same instant; their errors."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException | None] = [None] * len(workers)

    def start(i: int) -> None:
        models = _models(workers[i], suffix)
        barrier.wait()
        try:
            if use_async:
                asyncio.run(_acreate(workers[i], models))
            else:
                workers[i].create_tables(models)
        except BaseException as exc:  # reported, not raised in the thread
            errors[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


async def _acreate(db: Any, models: list[type[peewee.Model]]) -> None:
    try:
        await db.acreate_tables(models)
    finally:
        await db.close_pool()  # its connections belong to this thread's loop


async def test_workers_creating_fresh_tables_at_once_all_succeed(backend, request, tmp_path):
    workers = [make_database(backend, request, tmp_path, acquire_timeout=30.0) for _ in range(2)]
    outside = Outside(workers[0])
    failures: list[str] = []
    try:
        for n in range(ROUNDS[backend]):
            suffix = uuid.uuid4().hex[:8]
            errors = await asyncio.to_thread(_race, workers, suffix, n % 2 == 0)
            failures += [f"round {n}: {e!r}" for e in errors if e is not None]
            assert len(await asyncio.to_thread(_tables, outside, suffix)) == 3
            await asyncio.to_thread(workers[0].drop_tables, _models(workers[0], suffix))
        assert not failures, failures
        for worker in workers:
            assert_no_leaks(worker)
    finally:
        outside.close()
        for worker in workers:
            worker.close_all()


async def test_a_held_lock_makes_the_other_holder_wait_and_time_out(backend, request, tmp_path):
    # SQLite waits in steps of its busy timeout (5 s by default).
    options = {"timeout": 0.5} if backend == "sqlite" else {}
    first = make_database(backend, request, tmp_path, **options)
    second = make_database(backend, request, tmp_path, **options)
    held, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with lock(first, "reports"):
            held.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=r"'reports'.*not free after 1\.\d\d s"):
            async with alock(second, "reports", timeout=1.0):
                pytest.fail("the lock was taken twice")
        assert time.monotonic() - started >= 0.9
        if backend != "sqlite":  # SQLite's lock is the file's: one for every name
            async with alock(second, "another name", timeout=1.0):
                pass
        leave.set()
        await asyncio.to_thread(holder.join, 10)
        async with alock(second, "reports", timeout=5.0):
            pass  # free again once the holder's transaction ended
        await settle(second)
        assert_no_leaks(first)
        assert_no_leaks(second)
    finally:
        leave.set()
        holder.join(10)
        await second.close_pool()
        first.close_all()
        second.close_all()


def _held_on_server(outside: Outside, db: Any, name: str) -> bool:
    """Whether the server (or SQLite's file) shows the lock taken, seen from outside."""
    if outside.kind == "postgres":
        key = lock_key(name)
        rows = outside.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND ((classid::bigint << 32) | objid::bigint) = ?",
            (key & 0xFFFFFFFFFFFFFFFF,),
        )
        return bool(rows[0][0])
    if outside.kind == "mysql":
        rows = outside.query("SELECT IS_USED_LOCK(?)", (mysql_lock_name(db.database, name),))
        return rows[0][0] is not None
    return bool(outside.busy_sessions())


async def test_the_lock_ends_with_the_transaction_and_rolls_back_with_it(
    backend, request, tmp_path
):
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)
    await asyncio.to_thread(outside.query, "CREATE TABLE lock_rows (n INTEGER)")
    try:
        async with alock(db, SCHEMA_LOCK):
            await db.aexecute_sql("INSERT INTO lock_rows (n) VALUES (1)")
            assert await asyncio.to_thread(_held_on_server, outside, db, SCHEMA_LOCK)
        await settle(db)
        assert not await asyncio.to_thread(_held_on_server, outside, db, SCHEMA_LOCK)

        def fails() -> None:
            with lock(db, SCHEMA_LOCK):
                db.execute_sql("INSERT INTO lock_rows (n) VALUES (2)")
                raise RuntimeError("the block failed")

        with pytest.raises(RuntimeError, match="the block failed"):
            await asyncio.to_thread(fails)
        assert not await asyncio.to_thread(_held_on_server, outside, db, SCHEMA_LOCK)
        rows = await asyncio.to_thread(outside.query, "SELECT n FROM lock_rows")
        assert rows == [(1,)]  # the failed block's row was rolled back with it
        await settle(db)
        assert_no_leaks(db)
        opened = sum(s.opened for s in db.pool_stats())
        closed = sum(s.closed for s in db.pool_stats())
        # PostgreSQL's lock is the transaction's: its connections are reused.
        # GET_LOCK changed the MySQL session: that connection was closed.
        if backend == "postgres":
            assert closed == 0, db.pool_stats()
        if backend == "mysql":
            assert closed >= 1, db.pool_stats()
        assert opened >= 1
    finally:
        await db.close_pool()
        db.close_all()
        await asyncio.to_thread(outside.query, "DROP TABLE lock_rows")
        outside.close()


async def test_a_lock_held_past_its_transaction_is_released_after_it(backend, request, tmp_path):
    """``async with db:`` keeps the connection after the block: the lock must not stay."""
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)
    try:
        async with db:
            async with alock(db, "held"):
                assert await asyncio.to_thread(_held_on_server, outside, db, "held")
            assert not await asyncio.to_thread(_held_on_server, outside, db, "held")
            # Nested in an open transaction: the lock lasts until that one ends.
            async with db.atomic():
                async with alock(db, "nested"):
                    pass
                # (SQLite: a savepoint in a deferred transaction takes no lock; documented.)
                if backend != "sqlite":
                    assert await asyncio.to_thread(_held_on_server, outside, db, "nested")
            if backend != "mysql":  # MySQL: until the held connection goes back
                assert not await asyncio.to_thread(_held_on_server, outside, db, "nested")
        await settle(db)
        # The server lets go once it has seen the (dirty) connection close.
        assert await asyncio.to_thread(
            wait_until, lambda: not _held_on_server(outside, db, "nested"), 5.0
        )
        assert_no_leaks(db)
    finally:
        await db.close_pool()
        db.close_all()
        outside.close()


def test_lock_keys_and_names() -> None:
    assert lock_key("a") == lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key(SCHEMA_LOCK) < 2**63
    assert mysql_lock_name("app", "fastpeewee.schema") == "app.fastpeewee.schema"
    long = mysql_lock_name("app", "x" * 100)
    assert len(long) <= 64 and long == mysql_lock_name("app", "x" * 100)
    assert long != mysql_lock_name("other", "x" * 100)
