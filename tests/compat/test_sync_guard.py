"""allow_sync: sync queries on the event loop run with a warning per call site (peewee-async's
default), are refused in the strict mode, and the permission is scoped to one task."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import peewee
import pytest

import fastpeewee.compat.peewee_async as peewee_async
from fastpeewee import MissingGreenletBridge

from .support import Author


def count_sync() -> int:
    return Author.select().count()


@pytest.fixture
def strict(compat_db: Any) -> Any:
    """The compat database in the strict mode (this task and the tasks it starts)."""
    compat_db.set_allow_sync(False)
    return compat_db


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="fastpeewee.compat.peewee_async")
    return caplog


def guard_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fastpeewee.compat.peewee_async"]


async def test_allowed_by_default_with_one_warning_per_call_site(
    compat_db: Any, warnings_log: pytest.LogCaptureFixture
) -> None:
    assert compat_db.sync_policy() == peewee_async.WARN_ONCE
    for _ in range(3):
        assert count_sync() == 0  # the same line three times: one warning
    Author.create(name="ann")  # another line: a second warning
    assert count_sync() == 1
    records = guard_records(warnings_log)
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING for r in records)
    first, second = (r.getMessage() for r in records)
    assert f"{__file__}:" in first and "count_sync" not in first.split("Use")[1]
    assert "await objects.count(query)" in first  # named after the peewee call (count)
    assert "await objects.create(Model, ...)" in second
    assert "set_allow_sync(False)" in first
    assert sum(s.in_use for s in compat_db.pool_stats()) == 0


async def test_warnings_name_the_line_of_user_code(
    compat_db: Any, warnings_log: pytest.LogCaptureFixture
) -> None:
    import inspect

    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    Author.select().where(Author.name == "x").exists()
    [record] = guard_records(warnings_log)
    assert f"{__file__}:{line} " in record.getMessage()
    assert "aio_exists" in record.getMessage()


async def test_ddl_on_the_loop_runs_and_names_the_async_call(
    compat_db: Any, warnings_log: pytest.LogCaptureFixture
) -> None:
    class Note(peewee.Model):
        text = peewee.TextField()

        class Meta:
            database = compat_db
            table_name = "compat_sync_guard_note"

    # The typical peewee-async program: tables made from `async def main()`.
    Note.drop_table(safe=True)
    Note.create_table(safe=True)
    assert await compat_db.count(Note.select()) == 0
    Note.drop_table()
    messages = [r.getMessage() for r in guard_records(warnings_log)]
    assert any("adrop_tables" in m for m in messages)
    assert any("acreate_tables" in m for m in messages)


async def test_refused_in_the_strict_mode(strict: Any) -> None:
    with pytest.raises(peewee_async.SyncQueryNotAllowed, match="allow_sync") as info:
        count_sync()
    assert isinstance(info.value, AssertionError)  # as peewee-async raised
    assert isinstance(info.value, MissingGreenletBridge)  # as fastpeewee raises


async def test_multi_row_inserts_are_refused_like_any_statement(
    compat_db: Any, strict: Any
) -> None:
    rows = [{"name": f"a{i}"} for i in range(3)]
    with pytest.raises(peewee_async.SyncQueryNotAllowed, match="allow_sync"):
        Author.insert_many(rows).execute()  # executemany / COPY / batches alike
    with compat_db.allow_sync():
        Author.insert_many(rows).execute()
        assert count_sync() == 3


async def test_allow_sync_block(compat_db: Any, strict: Any) -> None:
    objects = peewee_async.Manager(compat_db)
    with objects.allow_sync():
        Author.create(name="sync")
        assert count_sync() == 1
        assert compat_db.sync_policy() is True
    with pytest.raises(peewee_async.SyncQueryNotAllowed):
        count_sync()
    assert compat_db.sync_policy() is False


async def test_lazy_loads_are_refused_too(compat_db: Any, strict: Any) -> None:
    objects = peewee_async.Manager(compat_db)
    ann = await objects.create(Author, name="ann")
    with pytest.raises(peewee_async.SyncQueryNotAllowed):
        list(ann.books)


async def test_permission_is_scoped_to_one_task(compat_db: Any, strict: Any) -> None:
    allowed_in_a = asyncio.Event()
    b_done = asyncio.Event()

    async def task_a() -> int:
        with compat_db.allow_sync():
            Author.create(name="from a")
            allowed_in_a.set()
            await b_done.wait()  # task b runs while a is inside allow_sync()
            return count_sync()

    async def task_b() -> str:
        await allowed_in_a.wait()
        try:
            count_sync()
        except peewee_async.SyncQueryNotAllowed:
            return "refused"
        finally:
            b_done.set()
        return "allowed"

    count_a, verdict_b = await asyncio.gather(task_a(), task_b())
    assert (count_a, verdict_b) == (1, "refused")


async def test_set_allow_sync_in_a_task_does_not_leak_to_siblings(
    compat_db: Any, strict: Any
) -> None:
    async def permissive() -> int:
        compat_db.set_allow_sync(True)
        return count_sync()

    async def careful() -> str:
        await asyncio.sleep(0)
        try:
            count_sync()
        except peewee_async.SyncQueryNotAllowed:
            return "refused"
        return "allowed"

    assert await asyncio.gather(permissive(), careful()) == [0, "refused"]  # type: ignore[comparison-overlap]
    with pytest.raises(peewee_async.SyncQueryNotAllowed):
        count_sync()  # the parent task was never allowed


async def test_tasks_started_inside_the_block_inherit_it(compat_db: Any, strict: Any) -> None:
    async def child_query() -> int:
        return count_sync()

    with compat_db.allow_sync():
        child = asyncio.create_task(child_query())  # copies the allowed context
    assert await child == 0
    with pytest.raises(peewee_async.SyncQueryNotAllowed):
        await asyncio.create_task(child_query())  # started outside: refused


@pytest.mark.parametrize("level", [logging.ERROR, logging.WARNING])
async def test_logging_levels_allow_and_log(
    compat_db: Any, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpeewee.compat.peewee_async")
    compat_db.set_allow_sync(level)
    assert count_sync() == 0
    records = [r for r in caplog.records if r.name == "fastpeewee.compat.peewee_async"]
    assert records and all(r.levelno == level for r in records)
    assert "SELECT COUNT" in records[0].getMessage()


async def test_attribute_spelling_of_0_6(compat_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    compat_db.allow_sync = logging.WARNING  # peewee-async 0.6: `database.allow_sync = ...`
    with caplog.at_level(logging.WARNING, logger="fastpeewee.compat.peewee_async"):
        assert count_sync() == 0
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    compat_db.allow_sync = False
    with pytest.raises(AssertionError):
        count_sync()
    with compat_db.allow_sync():  # the method still works after the assignments
        assert count_sync() == 0


async def test_worker_threads_need_no_permission(compat_db: Any) -> None:
    compat_db.set_allow_sync(False)
    await asyncio.to_thread(Author.create, name="thread")
    assert await asyncio.to_thread(count_sync) == 1


async def test_sync_connect_and_close_on_the_loop(compat_db: Any, strict: Any) -> None:
    with pytest.raises(peewee_async.SyncQueryNotAllowed, match="aconnect"):
        compat_db.connect()
    async with compat_db:  # the task's async connection
        assert compat_db.close() is False  # sync close(): the sync connection only
        assert await compat_db.count(Author.select()) == 0
        assert sum(s.in_use for s in compat_db.pool_stats()) == 1
    with compat_db.allow_sync():
        assert compat_db.connect()
        assert compat_db.close() is True


async def test_db_run_needs_no_permission(compat_db: Any) -> None:
    assert await compat_db.run(count_sync) == 0


async def test_allowed_sync_connection_goes_back_on_exit(compat_db: Any) -> None:
    with compat_db.allow_sync():
        compat_db.connect()
        assert count_sync() == 0
        assert not compat_db.is_closed()
        assert sum(s.in_use for s in compat_db.pool_stats()) == 1
    assert sum(s.in_use for s in compat_db.pool_stats()) == 0


async def test_sync_transaction_in_an_allowed_task(compat_db: Any) -> None:
    with compat_db.allow_sync():
        with pytest.raises(RuntimeError), compat_db.atomic():
            Author.create(name="rolled back")
            raise RuntimeError("boom")
        with compat_db.atomic():
            Author.create(name="kept")
    assert await compat_db.count(Author.select()) == 1


async def test_async_api_unaffected_inside_allow_sync(compat_db: Any) -> None:
    objects = peewee_async.Manager(compat_db)
    with objects.allow_sync():
        async with objects.atomic():
            await objects.create(Author, name="async")
            assert await objects.count(Author.select()) == 1
        assert count_sync() == 1


async def test_task_ending_inside_allow_sync_returns_its_connection(compat_db: Any) -> None:
    async def leaves_a_connection_held() -> None:
        compat_db.set_allow_sync(True)
        compat_db.connect()
        count_sync()

    await asyncio.create_task(leaves_a_connection_held())
    await asyncio.sleep(0)
    assert sum(s.in_use for s in compat_db.pool_stats()) == 0


def test_quickstart_flow_of_0_6(tmp_path: Any) -> None:
    """The peewee-async 0.6 quickstart, with the class names of this module."""
    database = peewee_async.SqliteDatabase(str(tmp_path / "quick.db"))
    Author._meta.database.initialize(database)
    try:
        Author.create_table(True)  # sync, no loop: always allowed
        Author.create(name="Yo, I can do it sync!")
        database.close()
        objects = peewee_async.Manager(database)
        database.set_allow_sync(False)

        async def handler() -> list[str]:
            await objects.create(Author, name="Not bad. Watch this, I'm async!")
            with pytest.raises(AssertionError):
                Author.select().count()
            return [obj.name for obj in await objects.execute(Author.select())]

        names = asyncio.run(handler())
        assert names == ["Yo, I can do it sync!", "Not bad. Watch this, I'm async!"]
        with objects.allow_sync():
            Author.drop_table(True)
    finally:
        database.close_all()
        Author._meta.database.initialize(None)
