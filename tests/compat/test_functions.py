"""peewee-async's module-level functions and database methods on real databases."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import peewee
import pytest
from playhouse import db_url

import fastpeewee.compat.peewee_async as peewee_async

from .support import Author, Book


async def test_object_functions(compat_db: Any) -> None:
    ann = await peewee_async.create_object(Author, name="ann")
    assert (await peewee_async.get_object(Author, Author.id == ann.id)).name == "ann"
    query = Author.select().where(Author.name == "ann")
    assert (await peewee_async.get_object(query)).id == ann.id
    with pytest.raises(Author.DoesNotExist):
        await peewee_async.get_object(Author, Author.name == "zed")
    ann.bio = "updated"
    assert await peewee_async.update_object(ann) == 1
    assert (await peewee_async.get_object(Author, Author.id == ann.id)).bio == "updated"
    book = await peewee_async.create_object(Book, author=ann, title="t")
    assert await peewee_async.delete_object(ann, recursive=True, delete_nullable=True) == 1
    assert await peewee_async.count(Book.select().where(Book.id == book.id)) == 0


async def test_query_functions(compat_db: Any) -> None:
    for i in range(4):
        author = await peewee_async.create_object(Author, name=f"a{i}")
        await peewee_async.create_object(Book, author=author, title=f"b{i}", pages=i)
    rows = await peewee_async.execute(Author.select().order_by(Author.name))
    assert [a.name for a in rows] == ["a0", "a1", "a2", "a3"]
    assert await peewee_async.execute(Book.update(pages=9).where(Book.pages > 1)) == 2
    assert await peewee_async.count(Book.select().limit(1)) == 1
    assert await peewee_async.count(Book.select().limit(1), clear_limit=True) == 4
    assert await peewee_async.scalar(Book.select(peewee.fn.SUM(Book.pages))) == 19
    pair = Book.select(peewee.fn.COUNT(Book.id), peewee.fn.MAX(Book.pages))
    assert await peewee_async.scalar(pair, as_tuple=True) == (4, 9)
    authors = await peewee_async.prefetch(Author.select().order_by(Author.name), Book.select())
    assert [[b.title for b in a.books] for a in authors] == [["b0"], ["b1"], ["b2"], ["b3"]]


async def test_transaction_functions(compat_db: Any) -> None:
    with pytest.raises(ValueError):
        async with peewee_async.atomic(compat_db):
            await peewee_async.create_object(Author, name="gone")
            raise ValueError
    with pytest.raises(ValueError):
        async with peewee_async.transaction(compat_db):
            await peewee_async.create_object(Author, name="gone too")
            raise ValueError
    async with peewee_async.transaction(compat_db):
        await peewee_async.create_object(Author, name="kept")
        with pytest.raises(ValueError):
            async with peewee_async.savepoint(compat_db):
                await peewee_async.create_object(Author, name="savepoint")
                raise ValueError
        async with peewee_async.savepoint(compat_db, sid="sp2"):
            await peewee_async.create_object(Author, name="savepoint kept")
    names = sorted(a.name for a in await peewee_async.execute(Author.select()))
    assert names == ["kept", "savepoint kept"]


async def test_functions_follow_a_proxy_bound_model(compat_db: Any) -> None:
    # The models are bound to a DatabaseProxy; the functions follow it.
    assert isinstance(Author._meta.database, peewee.DatabaseProxy)
    await peewee_async.create_object(Author, name="via proxy")
    assert await peewee_async.count(Author.select()) == 1


async def test_functions_refuse_an_unbound_query() -> None:
    class Loose(peewee.Model):
        name = peewee.CharField()

    with pytest.raises(peewee.InterfaceError, match="not bound"):
        await peewee_async.execute(Loose.select())


async def test_database_methods_of_0_6(compat_db: Any) -> None:
    await compat_db.connect_async(timeout=5)
    assert compat_db.is_connected
    with pytest.raises(RuntimeError):
        async with compat_db.atomic_async():
            await peewee_async.create_object(Author, name="gone")
            raise RuntimeError
    async with compat_db.transaction_async():
        await peewee_async.create_object(Author, name="kept")
        with pytest.raises(RuntimeError):
            async with compat_db.savepoint_async():
                await peewee_async.create_object(Author, name="sp")
                raise RuntimeError
    assert [a.name for a in await compat_db.aio_execute(Author.select())] == ["kept"]
    await compat_db.close_async()
    assert not compat_db.is_connected


async def test_database_methods_of_0_12(compat_db: Any) -> None:
    await compat_db.aio_connect()
    assert compat_db.is_connected
    async with compat_db.aio_atomic():
        await peewee_async.create_object(Author, name="ann")
        async with compat_db.aio_atomic():  # nested: a savepoint
            await peewee_async.create_object(Author, name="bob")
    assert await compat_db.aio_execute(Author.delete()) == 2
    await compat_db.aio_close()
    assert not compat_db.is_connected


async def test_connection_context_holds_one_connection(compat_db: Any, backend: str) -> None:
    assert peewee_async.connection_context.get() is None
    async with compat_db.connection_context():
        held = peewee_async.connection_context.get()
        assert held is not None and not held.transaction_is_opened
        await peewee_async.create_object(Author, name="ann")
        async with compat_db.connection_context():  # nested: same connection
            assert peewee_async.connection_context.get().connection is held.connection
        async with compat_db.atomic():
            assert peewee_async.connection_context.get().transaction_is_opened
        assert peewee_async.connection_context.get().connection is held.connection
        assert sum(s.in_use for s in compat_db.pool_stats()) == 1
    assert peewee_async.connection_context.get() is None
    assert sum(s.in_use for s in compat_db.pool_stats()) == 0
    with pytest.raises(TypeError, match="cannot be set"):
        peewee_async.connection_context.set(None)


async def test_connection_context_decorates_coroutines(compat_db: Any) -> None:
    @compat_db.connection_context()
    async def work() -> bool:
        await peewee_async.create_object(Author, name="ann")
        return peewee_async.connection_context.get() is not None

    assert await work()
    assert peewee_async.connection_context.get() is None


async def test_connection_context_sync_in_a_thread(compat_db: Any) -> None:
    def work() -> int:
        with compat_db.connection_context():
            Author.create(name="thread")
            return Author.select().count()

    assert await asyncio.to_thread(work) == 1


def test_max_connections_sets_the_pool_size() -> None:
    db = peewee_async.PooledPostgresqlDatabase("x", max_connections=3, min_connections=2)
    assert (db.pool_config.pool_size, db.pool_config.pool_min_size) == (3, 2)
    deferred = peewee_async.PostgresqlDatabase(None)
    deferred.init("x", max_connections=1)
    assert (deferred.pool_config.pool_size, deferred.pool_config.pool_min_size) == (1, 1)
    assert "max_connections" not in deferred.connect_params


@pytest.mark.backends("postgres", "mysql")
async def test_db_url_schemes_of_peewee_async(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(
        "postgres_server" if backend == "postgres" else "mariadb_server"
    )
    params = server.connect_params
    auth = params["user"] + (f":{params['password']}" if "password" in params else "")
    scheme = "postgresql" if backend == "postgres" else "mysql"
    where = f"{auth}@127.0.0.1:{params['port']}/{server.database}"
    pooled = db_url.connect(f"{scheme}+pool+async://{where}?max_connections=3")
    single = db_url.connect(f"{scheme}+async://{where}")
    expected = {
        "postgres": (peewee_async.PooledPostgresqlDatabase, peewee_async.PostgresqlDatabase),
        "mysql": (peewee_async.PooledMySQLDatabase, peewee_async.MySQLDatabase),
    }[backend]
    assert (type(pooled), type(single)) == expected
    assert pooled.pool_config.pool_size == 3
    try:
        assert await pooled.run(lambda: pooled.execute_sql("SELECT 1").fetchone()) == (1,)
        assert (await single.aexecute_sql("SELECT 2")).fetchone()[0] == 2
    finally:
        await pooled.close_pool()
        await single.close_pool()


async def test_single_connection_classes_give_each_task_its_own(compat_db: Any) -> None:
    # peewee-async 0.6's PostgresqlDatabase shared one connection between tasks,
    # so a sibling's rollback took this task's insert with it. Not here.
    a_ready, b_started = asyncio.Event(), asyncio.Event()

    async def rolls_back() -> None:
        with contextlib.suppress(RuntimeError):
            async with compat_db.atomic():
                await peewee_async.create_object(Author, name="a")
                a_ready.set()
                await b_started.wait()
                raise RuntimeError("roll back this task's transaction only")

    async def commits() -> None:
        await a_ready.wait()
        async with compat_db.atomic():
            b_started.set()
            await peewee_async.create_object(Author, name="b")

    await asyncio.gather(rolls_back(), commits())
    names = [a.name for a in await compat_db.list(Author.select())]
    assert names == ["b"]
