"""Transactions and savepoints, async and sync, on each backend."""

from __future__ import annotations

import asyncio

import peewee
import pytest

from ..models import User


async def names(db) -> set[str]:
    return {u.username for u in await db.list(User.select())}


async def test_commit_and_rollback_on_exception(db):
    async with db.atomic():
        await User.acreate(username="kept")
    with pytest.raises(ValueError):
        async with db.atomic():
            await User.acreate(username="dropped")
            raise ValueError
    assert await names(db) == {"kept"}
    assert db.is_closed()  # the transaction's connection went back


async def test_nested_atomic_is_a_savepoint(db):
    async with db.atomic():
        await User.acreate(username="outer")
        with pytest.raises(ValueError):
            async with db.atomic():
                await User.acreate(username="inner")
                raise ValueError
        async with db.atomic():
            await User.acreate(username="inner-ok")
        assert db.transaction_depth() == 1
    assert await names(db) == {"outer", "inner-ok"}


async def test_outer_failure_rolls_back_everything(db):
    with pytest.raises(RuntimeError):
        async with db.atomic():
            await User.acreate(username="a")
            async with db.atomic():
                await User.acreate(username="b")
            raise RuntimeError
    assert await names(db) == set()


async def test_explicit_acommit_and_arollback(db):
    async with db.atomic() as txn:
        await User.acreate(username="one")
        await txn.acommit()
        await User.acreate(username="two")
        await txn.arollback()
        await User.acreate(username="three")
    assert await names(db) == {"one", "three"}


@pytest.mark.parametrize("kind", ["atomic", "transaction", "nested-atomic", "savepoint"])
async def test_acommit_and_arollback_on_every_block(db, kind):
    async def use(block):
        async with block:
            await User.acreate(username="one")
            await block.acommit()
            await User.acreate(username="two")
            await block.arollback()
            await User.acreate(username="three")

    if kind in ("atomic", "transaction"):
        await use(getattr(db, kind)())
    else:
        async with db.atomic():
            await use(db.atomic() if kind == "nested-atomic" else db.savepoint())
    assert await names(db) == {"one", "three"}


async def test_acommit_of_an_atomic_block_not_entered_says_so(db):
    with pytest.raises(peewee.InterfaceError, match="enter the atomic"):
        await db.atomic().acommit()


async def test_transaction_and_savepoint_objects(db):
    async with db.transaction():
        await User.acreate(username="t")
        async with db.savepoint() as sp:
            await User.acreate(username="sp")
            await sp.arollback()
    assert await names(db) == {"t"}


async def test_integrity_error_inside_savepoint_keeps_outer(db):
    await User.acreate(username="dup")
    async with db.atomic():
        await User.acreate(username="fresh")
        with pytest.raises(peewee.IntegrityError):
            async with db.atomic():
                await User.acreate(username="dup")
    assert await names(db) == {"dup", "fresh"}


async def test_atomic_decorates_coroutines_and_functions(db):
    @db.atomic()
    async def make(name: str, fail: bool) -> None:
        await User.acreate(username=name)
        if fail:
            raise KeyError(name)

    await make("ok", False)
    with pytest.raises(KeyError):
        await make("bad", True)

    @db.atomic()
    def make_sync(name: str) -> None:
        User.create(username=name)

    await asyncio.to_thread(make_sync, "sync")
    assert await names(db) == {"ok", "sync"}


async def test_sync_transactions_in_a_thread(db):
    def work() -> None:
        with db.atomic():
            User.create(username="t1")
            with pytest.raises(ValueError), db.atomic():
                User.create(username="t2")
                raise ValueError
        with pytest.raises(ZeroDivisionError), db.atomic():
            User.create(username="t3")
            raise ZeroDivisionError
        with db:  # peewee's `with db`: connection plus transaction
            User.create(username="t4")
        assert db.is_closed()

    await asyncio.to_thread(work)
    assert await names(db) == {"t1", "t4"}


async def test_after_commit_callbacks(db):
    seen: list[str] = []
    async with db.atomic():
        await User.acreate(username="cb")
        db.after_commit(lambda: seen.append("committed"))
        assert seen == []
    assert seen == ["committed"]
    with pytest.raises(ValueError):
        async with db.atomic():
            db.after_commit(lambda: seen.append("never"))
            raise ValueError
    assert seen == ["committed"]


async def test_transaction_isolation_between_tasks(db):
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with db.atomic():
            await User.acreate(username="pending")
            inside.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await inside.wait()
    # Another task never sees the uncommitted row.
    assert "pending" not in await names(db)
    release.set()
    await task
    assert "pending" in await names(db)


async def test_close_inside_transaction_is_refused(db):
    async with db.atomic():
        await User.acreate(username="x")
        with pytest.raises(peewee.OperationalError, match="transaction is open"):
            await db.aclose()


def _record(db) -> list[str]:
    """The statements ``db`` runs from now on, savepoint names made uniform."""
    seen: list[str] = []

    def hook(event) -> None:
        sql = event.sql
        if "SAVEPOINT" in sql:
            sql = sql.rsplit(" ", 1)[0] + " <sid>"
        seen.append(sql)

    db.query_hooks.append(hook)
    return seen


async def test_async_blocks_send_the_statements_peewee_sends(db):
    """``async with`` follows peewee's own steps: same statements, same order, same rows."""

    async def run_async() -> None:
        async with db.atomic():
            await User.acreate(username="a-outer")
            with pytest.raises(ValueError):
                async with db.atomic():
                    await User.acreate(username="a-inner")
                    raise ValueError
            async with db.savepoint() as sp:
                await User.acreate(username="a-gone")
                await sp.arollback()
            async with db.transaction():  # joins the outer transaction
                await User.acreate(username="a-kept")

    def run_sync() -> None:
        with db.atomic():
            User.create(username="s-outer")
            with pytest.raises(ValueError), db.atomic():
                User.create(username="s-inner")
                raise ValueError
            with db.savepoint() as sp:
                User.create(username="s-gone")
                sp.rollback()
            with db.transaction():
                User.create(username="s-kept")

    mine = _record(db)
    await run_async()
    theirs = _record(db)
    db.query_hooks.pop(0)
    await db.run(run_sync)
    db.query_hooks.clear()
    strip = [s.split(" ", 1)[0] if s.startswith("INSERT") else s for s in mine]
    assert strip == [s.split(" ", 1)[0] if s.startswith("INSERT") else s for s in theirs]
    assert strip[0] == "BEGIN" and strip[-1] == "COMMIT"
    assert await names(db) == {"a-outer", "a-kept", "s-outer", "s-kept"}
    assert db.transaction_depth() == 0 and db.is_closed()


async def test_commit_callbacks_may_query(db):
    async with db.atomic():
        await User.acreate(username="first")
        db.after_commit(lambda: User.create(username="from-callback"))
    assert await names(db) == {"first", "from-callback"}


async def test_atomic_inside_manual_commit_is_refused(db):
    with db.manual_commit(), pytest.raises(ValueError, match="manual commit"):
        async with db.atomic():
            pass
    assert db.transaction_depth() == 0


@pytest.mark.backends("sqlite")
async def test_begin_arguments_reach_the_backend(db):
    seen = _record(db)
    async with db.atomic(lock_type="IMMEDIATE"):
        await User.acreate(username="locked")
    db.query_hooks.clear()
    assert seen[0] == "BEGIN IMMEDIATE" and seen[-1] == "COMMIT"
    assert await names(db) == {"locked"}


@pytest.mark.backends("postgres")
async def test_a_commit_that_fails_rolls_back_and_raises(db):
    await db.aexecute_sql("DROP TABLE IF EXISTS deferred_check")
    await db.aexecute_sql(
        "CREATE TABLE deferred_check (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
    )
    seen = _record(db)
    with pytest.raises(peewee.IntegrityError):
        async with db.atomic():
            # A duplicate the deferred constraint only checks at COMMIT.
            await db.aexecute_sql("INSERT INTO deferred_check VALUES (1), (1)")
            await User.acreate(username="lost")
    db.query_hooks.clear()
    assert seen[-2:] == ["COMMIT", "ROLLBACK"]
    assert await names(db) == set()
    assert db.transaction_depth() == 0 and db.is_closed()
    assert all(s.in_use == 0 for s in db.pool_stats())
    async with db.atomic():  # the next transaction is fine
        await User.acreate(username="next")
    assert await names(db) == {"next"}
    await db.aexecute_sql("DROP TABLE deferred_check")
