"""Connection state per database, per task, per thread, and shared scopes."""

from __future__ import annotations

import asyncio
import contextlib

import peewee
import pytest

from fastpeewee import AsyncSqliteDatabase

from ..conftest import _reset_tables, make_database
from ..models import MODELS, User


async def backend_id(db) -> object:
    """An identifier of the server session the current scope runs on."""
    if db._current_state().conn is None:
        raise AssertionError("expected a held connection")
    return id(db._current_state().conn)


async def test_task_holds_connection_only_when_asked(db):
    assert db.is_closed()
    await User.acreate(username="x")
    assert db.is_closed()  # an autocommit statement borrows and returns
    conn = await db.aconnect()
    assert not db.is_closed()
    await User.acreate(username="y")
    assert db._current_state().conn is conn  # held: every statement uses it
    with pytest.raises(peewee.OperationalError, match="already opened"):
        db.connect()  # peewee's rule, on the task's scope
    assert await db.aclose()
    assert db.is_closed()
    assert not await db.aclose()


async def test_async_with_db_holds_one_connection(db):
    async with db:
        first = db._current_state().conn
        await User.acreate(username="a")
        await db.count(User.select())
        assert db._current_state().conn is first
    assert db.is_closed()


async def test_two_databases_never_share_state(db, tmp_path):
    other = AsyncSqliteDatabase(str(tmp_path / "other.db"))
    try:
        async with db.atomic():
            assert db.in_transaction()
            assert not other.in_transaction()
            assert other.is_closed()
            await other.aexecute_sql("CREATE TABLE t (x INTEGER)")
            async with other.atomic():
                await other.aexecute_sql("INSERT INTO t VALUES (1)")
                assert db.transaction_depth() == 1 and other.transaction_depth() == 1
            assert db.in_transaction()
    finally:
        await other.close_pool()


async def test_gathered_tasks_do_not_share_the_parents_transaction(db):
    async def child() -> tuple[bool, int]:
        # Reads only: on SQLite a second writer would wait for the parent's lock.
        seen = await db.count(User.select())
        return db.in_transaction(), seen

    async with db.atomic():
        await User.acreate(username="parent")
        results = await asyncio.gather(child(), child())
        # Children ran outside the transaction: they cannot see its row.
        assert results == [(False, 0), (False, 0)]  # type: ignore[comparison-overlap]
        assert db.transaction_depth() == 1
    assert await db.count(User.select()) == 1


@pytest.mark.backends("postgres", "mysql")
async def test_children_commit_independently_of_a_failed_parent(db):
    with pytest.raises(RuntimeError):
        async with db.atomic():
            await User.acreate(username="parent")
            await asyncio.gather(User.acreate(username="child"))
            raise RuntimeError
    assert {u.username for u in await db.list(User.select())} == {"child"}


async def test_task_ending_with_open_transaction_rolls_back_and_releases(db):
    async def abandon() -> None:
        await db.run(db.begin)
        await User.acreate(username="ghost")
        assert db.in_transaction() is False and db._current_state().conn is not None

    await asyncio.create_task(abandon())
    await asyncio.sleep(0.05)
    assert all(s.in_use == 0 for s in db.pool_stats())
    assert await db.count(User.select()) == 0


async def test_task_ending_while_holding_a_connection_gives_it_back(db):
    async def holder() -> None:
        await db.aconnect()
        await User.acreate(username="held")

    await asyncio.create_task(holder())
    for _ in range(50):
        if all(s.in_use == 0 for s in db.pool_stats()):
            break
        await asyncio.sleep(0.01)
    assert all(s.in_use == 0 for s in db.pool_stats())
    assert await db.count(User.select()) == 1


async def test_task_spawned_from_a_finished_scope_gets_its_own_connection(db):
    started = asyncio.Event()
    carry_on = asyncio.Event()

    async def background() -> object:
        started.set()
        await carry_on.wait()
        await User.acreate(username="late")
        return db._current_state()

    async with db.scope():
        await User.acreate(username="request")
        scope = db._current_state()
        task = asyncio.create_task(background())
        await started.wait()
    carry_on.set()
    late_scope = await task
    assert late_scope is not scope
    assert {u.username for u in await db.list(User.select())} == {"request", "late"}


async def test_shared_scope_lends_its_connection_to_worker_threads(db):
    def sync_part() -> tuple[bool, int]:
        # Runs in a worker thread, inside the scope's transaction.
        User.create(username="from-thread")
        return db.in_transaction(), User.select().count()

    async with db.scope():
        async with db.atomic():
            await User.acreate(username="from-task")
            in_txn, seen = await asyncio.to_thread(sync_part)
            assert in_txn and seen == 2
            conn = db._current_state().conn
        assert db._current_state().conn is None or db._current_state().conn is conn
    assert await db.count(User.select()) == 2


async def test_shared_scope_rolls_back_what_it_left_open(db):
    async with db.scope():
        await db.run(db.begin)
        await User.acreate(username="never")
    assert await db.count(User.select()) == 0


async def test_threads_outside_a_scope_use_their_own_connections(db):
    async with db.atomic():
        await User.acreate(username="uncommitted")

        def peek() -> int:
            return User.select().where(User.username == "uncommitted").count()

        assert await asyncio.to_thread(peek) == 0


async def test_one_database_serves_two_event_loops_in_turn(backend, request, tmp_path):
    database = make_database(backend, request, tmp_path)
    database.bind(MODELS)
    await asyncio.to_thread(_reset_tables, database)

    async def use() -> int:
        await User.acreate(username=f"n{await database.count(User.select())}")
        return await database.count(User.select())

    # Two loops one after the other, as with per-test event loops.
    assert await asyncio.to_thread(asyncio.run, use()) == 1
    assert await asyncio.to_thread(asyncio.run, use()) == 2
    assert await use() == 3
    # While this loop runs and holds the pool, another loop is told so.
    refused = pytest.raises(peewee.InterfaceError, match="another running event loop")
    with refused if backend != "sqlite" else contextlib.nullcontext():
        await asyncio.to_thread(asyncio.run, use())
    await database.close_pool()
    database.close_all()


async def test_shared_scope_is_lazy_and_uses_one_connection(db):
    opened_before = sum(s.opened for s in db.pool_stats())
    async with db.scope():
        pass  # never touched the database: no connection taken
    assert sum(s.opened for s in db.pool_stats()) == opened_before

    peak = 0

    async def query(n: int) -> None:
        nonlocal peak
        await User.acreate(username=f"s{n}")
        peak = max(peak, sum(s.in_use for s in db.pool_stats()))

    async with db.scope():
        await asyncio.gather(*(query(n) for n in range(8)))
        await asyncio.gather(*(asyncio.to_thread(User.select().count) for _ in range(4)))
    assert peak == 1
    assert await db.count(User.select()) == 8


async def test_dispose_and_is_connection_usable(db):
    def in_thread() -> tuple[bool, bool, bool]:
        db.connect()
        usable = db.is_connection_usable()
        db.dispose()  # forget this thread's state; the connection goes back
        return usable, db.is_closed(), db.is_connection_usable()

    assert await asyncio.to_thread(in_thread) == (True, True, False)
    await db.aconnect()
    assert db.is_connection_usable()
    db.dispose()
    assert db.is_closed()
