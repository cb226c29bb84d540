"""peewee-async's Manager on real databases: every method, with plain peewee models."""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import pytest

import fastpeewee.compat.peewee_async as peewee_async
from fastpeewee import AsyncDatabase

from .support import Author, Book, Note, Review, proxy


@pytest.fixture
def objects(compat_db: Any) -> peewee_async.Manager:
    return peewee_async.Manager(compat_db)


async def test_create_and_get_every_way(objects: peewee_async.Manager) -> None:
    ann = await objects.create(Author, name="ann", bio="x")
    assert ann.id is not None and not ann.dirty_fields
    by_kwargs = await objects.get(Author, id=ann.id)
    by_expr = await objects.get(Author, Author.name == "ann")
    by_query = await objects.get(Author.select().where(Author.id == ann.id))
    by_lookup = await objects.get(Author, name__in=["ann", "zed"])
    assert {by_kwargs.id, by_expr.id, by_query.id, by_lookup.id} == {ann.id}
    assert by_kwargs.bio == "x"
    with pytest.raises(Author.DoesNotExist):
        await objects.get(Author, name="nobody")
    assert await objects.get_or_none(Author, name="nobody") is None
    assert (await objects.get_or_none(Author, Author.name == "ann")).id == ann.id


async def test_get_keeps_the_offset_of_a_query(objects: peewee_async.Manager) -> None:
    for name in ("a", "b", "c"):
        await objects.create(Author, name=name)
    second = await objects.get(Author.select().order_by(Author.name).offset(1))
    assert second.name == "b"


async def test_update_all_fields_or_only_some(objects: peewee_async.Manager) -> None:
    ann = await objects.create(Author, name="ann", bio="old")
    ann.name, ann.bio = "anna", "new"
    assert await objects.update(ann, only=[Author.bio]) == 1
    row = await objects.get(Author, id=ann.id)
    assert (row.name, row.bio) == ("ann", "new")
    assert [f.name for f in ann.dirty_fields] == ["name"]  # not saved: still dirty
    assert await objects.update(ann, only=["name"]) == 1
    assert (await objects.get(Author, id=ann.id)).name == "anna"
    ann.bio = "both"
    assert await objects.update(ann) == 1
    assert (await objects.get(Author, id=ann.id)).bio == "both"


async def test_update_skips_save(objects: peewee_async.Manager, compat_db: Any) -> None:
    saves: list[int] = []

    class Audited(Author):
        def save(self, *args: Any, **kwargs: Any) -> Any:
            saves.append(1)
            return super().save(*args, **kwargs)

        class Meta:
            table_name = "compat_author"

    obj = await objects.create(Audited, name="ann")
    obj.bio = "changed"
    await objects.update(obj)
    assert saves == []  # as documented: update() and create() do not call save()
    assert (await objects.get(Author, id=obj.id)).bio == "changed"


async def test_delete_goes_through_delete_instance(objects: peewee_async.Manager) -> None:
    calls: list[tuple[bool, bool]] = []

    class Tracked(Author):
        def delete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
            calls.append((recursive, delete_nullable))
            return super().delete_instance(recursive, delete_nullable)

        class Meta:
            table_name = "compat_author"

    obj = await objects.create(Tracked, name="ann")
    assert await objects.delete(obj) == 1
    assert calls == [(False, False)]
    assert await objects.count(Author.select()) == 0


async def _author_with_books(objects: peewee_async.Manager) -> tuple[Any, Any, Any]:
    ann = await objects.create(Author, name="ann")
    book = await objects.create(Book, author=ann, title="one")
    await objects.create(Review, book=book, stars=5)
    other = await objects.create(Book, author=None, title="orphan")
    return ann, book, other


async def test_delete_recursive_detaches_nullable_dependants(
    objects: peewee_async.Manager,
) -> None:
    ann, book, _ = await _author_with_books(objects)
    assert await objects.delete(ann, recursive=True) == 1
    kept = await objects.get(Book, id=book.id)
    assert kept.author_id is None  # nullable FK: detached, not deleted
    assert await objects.count(Review.select()) == 1


async def test_delete_recursive_with_delete_nullable(objects: peewee_async.Manager) -> None:
    ann, _, other = await _author_with_books(objects)
    assert await objects.delete(ann, recursive=True, delete_nullable=True) == 1
    assert [b.id for b in await objects.execute(Book.select())] == [other.id]
    assert await objects.count(Review.select()) == 0


async def test_delete_without_recursive_fails_on_dependants(
    objects: peewee_async.Manager,
) -> None:
    ann, _, _ = await _author_with_books(objects)
    with pytest.raises(peewee.IntegrityError):
        await objects.delete(ann)


async def test_unbound_model_through_the_manager(objects: peewee_async.Manager) -> None:
    note = await objects.create(Note, text="hi")
    assert (await objects.get(Note, id=note.id)).text == "hi"
    note.text = "bye"
    assert await objects.update(note) == 1
    assert await objects.scalar(Note.select(Note.text)) == "bye"
    assert await objects.count(Note.select()) == 1
    assert await objects.delete(note) == 1
    assert await objects.get_or_none(Note, id=note.id) is None


async def test_get_or_create(objects: peewee_async.Manager) -> None:
    defaults = {"bio": "from defaults"}
    ann, created = await objects.get_or_create(Author, defaults=defaults, name="ann")
    assert created and ann.bio == "from defaults"
    assert defaults == {"bio": "from defaults"}  # the caller's dict is left alone
    again, created = await objects.get_or_create(Author, defaults={"bio": "no"}, name="ann")
    assert not created and again.id == ann.id and again.bio == "from defaults"


async def test_get_or_create_race_ends_with_one_row(objects: peewee_async.Manager) -> None:
    results = await asyncio.gather(
        *(objects.get_or_create(Author, name="race", defaults={"bio": str(i)}) for i in range(6))
    )
    assert sum(created for _, created in results) == 1
    assert len({obj.id for obj, _ in results}) == 1
    raced = await asyncio.gather(*(objects.create_or_get(Author, name="twice") for _ in range(6)))
    assert sum(created for _, created in raced) == 1
    assert await objects.count(Author.select()) == 2


async def test_create_or_get_on_a_unique_conflict(objects: peewee_async.Manager) -> None:
    ann, created = await objects.create_or_get(Author, name="ann", bio="first")
    assert created
    same, created = await objects.create_or_get(Author, name="ann", bio="second")
    assert not created and same.id == ann.id and same.bio == "first"
    assert await objects.count(Author.select()) == 1


async def test_create_or_get_inside_a_transaction_keeps_it(
    objects: peewee_async.Manager,
) -> None:
    await objects.create(Author, name="ann")
    async with objects.atomic():
        await objects.create(Author, name="bob")
        same, created = await objects.create_or_get(Author, name="ann")
        assert not created and same.name == "ann"
        await objects.create(Author, name="cid")  # the transaction is still usable
    assert await objects.count(Author.select()) == 3


async def test_create_or_get_gets_by_primary_key(objects: peewee_async.Manager) -> None:
    book = await objects.create(Book, title="t")
    same, created = await objects.create_or_get(Book, id=book.id, title="t")
    assert not created and same.id == book.id
    with pytest.raises(peewee.IntegrityError):
        await objects.create_or_get(Review, book=book.id + 1000, stars=1)


async def test_execute_every_kind_of_query(objects: peewee_async.Manager) -> None:
    pk = await objects.execute(Author.insert(name="ann"))
    assert (await objects.get(Author, id=pk)).name == "ann"
    query = Author.select().order_by(Author.name)
    assert [a.name for a in await objects.execute(query)] == ["ann"]
    await objects.execute(Author.insert(name="bob"))
    rows = await objects.execute(query)  # the same query object runs afresh
    assert [a.name for a in rows] == ["ann", "bob"] and len(rows) == 2 and rows[1].name == "bob"
    assert await objects.execute(Author.update(bio="b").where(Author.name == "bob")) == 1
    assert await objects.execute(Author.delete().where(Author.name == "ann")) == 1
    raw = Author.raw(f"SELECT * FROM compat_author WHERE name = {objects.database.param}", "bob")
    assert [a.bio for a in await objects.execute(raw)] == ["b"]
    await objects.execute(Author.update(bio="c").where(Author.name == "bob"))
    assert [a.bio for a in await objects.execute(raw)] == ["c"]  # raw queries run afresh too
    insert = Book.insert(title="twice")
    first, second = await objects.execute(insert), await objects.execute(insert)
    assert first != second and await objects.count(Book.select()) == 2
    dicts = await objects.execute(Author.select(Author.name, Author.bio).dicts())
    assert list(dicts) == [{"name": "bob", "bio": "c"}]


async def test_prefetch(objects: peewee_async.Manager) -> None:
    objects.database.set_allow_sync(False)  # a lazy load below would raise, not run
    for name, titles in (("ann", ["a1", "a2"]), ("bob", []), ("cid", ["c1"])):
        author = await objects.create(Author, name=name)
        for title in titles:
            book = await objects.create(Book, author=author, title=title)
            await objects.create(Review, book=book, stars=len(title))
    for kind in (peewee.PREFETCH_TYPE.WHERE, peewee.PREFETCH_TYPE.JOIN):
        authors = await objects.prefetch(
            Author.select().order_by(Author.name), Book.select(), Review, prefetch_type=kind
        )
        # Backrefs are lists now: reading them runs no query (a lazy load on the
        # event loop would raise SyncQueryNotAllowed in the strict mode).
        shape = {a.name: sorted(b.title for b in a.books) for a in authors}
        assert shape == {"ann": ["a1", "a2"], "bob": [], "cid": ["c1"]}
        assert all(len(b.reviews) == 1 for a in authors for b in a.books)
    plain = await objects.prefetch(Author.select().where(Author.name == "bob"))
    assert [a.name for a in plain] == ["bob"]


async def test_prefetch_unbound_model_runs_on_the_manager_database(
    objects: peewee_async.Manager,
) -> None:
    await objects.create(Note, text="n")
    assert [n.text for n in await objects.prefetch(Note.select())] == ["n"]


async def test_count_and_scalar_variants(objects: peewee_async.Manager) -> None:
    for i in range(5):
        await objects.create(Book, title=f"b{i}", pages=i * 10)
    limited = Book.select().order_by(Book.id).limit(2)
    assert await objects.count(limited) == 2
    assert await objects.count(limited, clear_limit=True) == 5
    assert await objects.count(Book.select().where(Book.pages > 15)) == 3
    top = Book.select(peewee.fn.MAX(Book.pages), peewee.fn.MIN(Book.pages))
    assert await objects.scalar(top) == 40
    assert await objects.scalar(top, as_tuple=True) == (40, 0)
    assert await objects.scalar(Book.select(Book.id).where(Book.pages > 100)) is None


async def test_atomic_rolls_back_on_error(objects: peewee_async.Manager) -> None:
    with pytest.raises(RuntimeError):
        async with objects.atomic():
            await objects.create(Author, name="ann")
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        async with objects.transaction():
            await objects.create(Author, name="bob")
            raise RuntimeError("boom")
    assert await objects.count(Author.select()) == 0


async def test_nested_savepoints(objects: peewee_async.Manager) -> None:
    async with objects.atomic():
        await objects.create(Author, name="outer")
        with pytest.raises(RuntimeError):
            async with objects.savepoint():
                await objects.create(Author, name="inner")
                raise RuntimeError("roll back the savepoint only")
        async with objects.savepoint(sid="named"):
            await objects.create(Author, name="kept")
            with pytest.raises(RuntimeError):
                async with objects.atomic():  # nested atomic: another savepoint
                    await objects.create(Author, name="deepest")
                    raise RuntimeError("boom")
    names = sorted(a.name for a in await objects.execute(Author.select()))
    assert names == ["kept", "outer"]


async def test_transaction_commits(objects: peewee_async.Manager) -> None:
    async with objects.transaction():
        await objects.create(Author, name="ann")
        async with objects.transaction():  # joins the outer one
            await objects.create(Author, name="bob")
    assert await objects.count(Author.select()) == 2


async def test_connect_and_close(objects: peewee_async.Manager, compat_db: Any) -> None:
    await objects.close()
    assert not objects.is_connected
    await objects.connect()
    assert objects.is_connected and compat_db.is_connected
    await objects.close()
    assert not objects.is_connected
    await objects.create(Author, name="after close")  # reopens on demand
    assert objects.is_connected


async def test_manager_with_class_attribute_and_proxy(compat_db: Any) -> None:
    class MyManager(peewee_async.Manager):
        database = compat_db

    plain_proxy = peewee.Proxy()
    plain_proxy.initialize(compat_db)
    by_class = MyManager()
    by_proxy = peewee_async.Manager(proxy)
    by_plain_proxy = peewee_async.Manager(plain_proxy)
    ann = await by_class.create(Author, name="ann")
    assert (await by_proxy.get(Author, id=ann.id)).name == "ann"
    assert await by_plain_proxy.count(Author.select()) == 1


@pytest.mark.backends("sqlite")
async def test_manager_on_a_plain_fastpeewee_database(compat_db: Any) -> None:
    # Any fastpeewee database works with the Manager (allow_sync needs a compat class).
    from fastpeewee import AsyncSqliteDatabase

    plain = AsyncSqliteDatabase(compat_db.database)
    objects = peewee_async.Manager(plain)
    try:
        note = await objects.create(Note, text="plain")
        assert (await objects.get(Note, id=note.id)).text == "plain"
        with pytest.raises(TypeError, match="allow_sync"):
            objects.allow_sync()
    finally:
        await plain.close_pool()


def test_manager_needs_a_database() -> None:
    with pytest.raises(ValueError, match="needs a database"):
        peewee_async.Manager()


async def test_manager_refuses_a_plain_peewee_database() -> None:
    objects = peewee_async.Manager(peewee.SqliteDatabase(":memory:"))
    with pytest.raises(peewee.InterfaceError, match="fastpeewee database"):
        await objects.get(Note, id=1)


async def test_manager_with_an_uninitialized_proxy() -> None:
    objects = peewee_async.Manager(peewee.DatabaseProxy())
    with pytest.raises(peewee.InterfaceError, match="not initialized"):
        await objects.count(Note.select())


def test_compat_classes_are_fastpeewee_databases() -> None:
    assert issubclass(peewee_async.PostgresqlDatabase, AsyncDatabase)
    assert issubclass(peewee_async.PooledPostgresqlDatabase, peewee.PostgresqlDatabase)
