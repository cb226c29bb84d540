"""The compiled fast paths of aget_by_id / acreate / asave: same results as peewee's
own methods, for new values, new shapes, schema changes and other databases."""

from __future__ import annotations

from typing import Any

import peewee
import pytest

from fastpeewee import AsyncModel, AsyncSqliteDatabase
from fastpeewee.fast import fastpath

from ..conftest import make_database
from ..harness import Outside
from ..models import Tweet, User


def snapshot(obj: Any) -> tuple[Any, ...]:
    """What makes two fetched model objects the same to a user."""
    return type(obj), dict(obj.__data__), set(obj._dirty), dict(obj.__rel__)


def plans_of(model: type[Any]) -> list[Any]:
    return list(fastpath.plans_of(model))


async def make_thing(db: Any, name: str = "thing") -> type[Any]:
    class Thing(AsyncModel):
        label = peewee.CharField()
        size = peewee.IntegerField(default=lambda: 42)

        class Meta:
            database = db
            table_name = name

    await db.adrop_tables([Thing], safe=True)
    await db.acreate_tables([Thing])
    return Thing


async def test_get_by_id_matches_peewee_for_many_values(db):
    users = [await User.acreate(username=f"u{i}") for i in range(5)]
    for user in users:
        fast = await User.aget_by_id(user.id)
        slow = await db.run(User.get_by_id, user.id)
        assert snapshot(fast) == snapshot(slow)
        assert fast.username == user.username
    assert any(key[0] == "get_by_id" for key in plans_of(User))


async def test_missing_row_raises_like_peewee(db):
    with pytest.raises(User.DoesNotExist) as fast:
        await User.aget_by_id(123456)
    with pytest.raises(User.DoesNotExist) as slow:
        await db.run(User.get_by_id, 123456)
    assert str(fast.value) == str(slow.value)


async def test_unusual_keys_take_peewee_path(db):
    ann = await User.acreate(username="ann")
    with pytest.raises(User.DoesNotExist):
        await User.aget_by_id(None)  # peewee renders IS NULL
    subquery = User.select(User.id).where(User.username == "ann")
    assert (await User.aget_by_id(subquery)).id == ann.id  # a node is SQL, not a value


async def test_create_and_save_match_peewee(db):
    ann = await User.acreate(username="ann")
    fast = await Tweet.acreate(user=ann, content="hi")
    slow = await db.run(Tweet.create, user=ann, content="hi")
    assert fast.id is not None and slow.id == fast.id + 1
    assert fast._dirty == slow._dirty == set()  # type: ignore[attr-defined]
    assert fast.__rel__ == {"user": ann}
    assert (fast.likes, fast.user_id) == (0, ann.id)

    fast.likes = 5
    assert await fast.asave() == 1
    assert fast._dirty == set()  # type: ignore[attr-defined]
    stored = await Tweet.aget_by_id(fast.id)
    assert (stored.likes, stored.content, stored.user_id) == (5, "hi", ann.id)


async def test_save_only_and_expressions(db):
    ann = await User.acreate(username="ann")
    tweet = await Tweet.acreate(user=ann, content="a", likes=1)
    tweet.content = "changed"
    tweet.likes = 9
    assert await tweet.asave(only=[Tweet.likes]) == 1
    stored = await Tweet.aget_by_id(tweet.id)
    assert (stored.content, stored.likes) == ("a", 9)
    assert tweet._dirty == {"content"}  # type: ignore[attr-defined]
    # An expression as a value is SQL: peewee's own path runs it.
    tweet.likes = Tweet.likes + 1  # type: ignore[assignment]
    await tweet.asave()
    assert (await Tweet.aget_by_id(tweet.id)).likes == 10


async def test_only_save_dirty_and_no_primary_key(db):
    class Note(AsyncModel):
        text = peewee.CharField()
        n = peewee.IntegerField(default=0)

        class Meta:
            database = db
            only_save_dirty = True

    class Log(AsyncModel):
        line = peewee.CharField()

        class Meta:
            database = db
            primary_key = False

    await db.acreate_tables([Note, Log])
    try:
        note = await Note.acreate(text="x")
        assert await note.asave() is False  # nothing dirty
        note.n = 3
        assert await note.asave() == 1
        assert (await Note.aget_by_id(note.id)).n == 3
        await Log.acreate(line="one")
        await Log.acreate(line="one")
        assert await db.count(Log.select()) == 2
    finally:
        await db.adrop_tables([Note, Log])


async def test_overridden_save_is_still_called(db):
    calls: list[str] = []

    class Audited(AsyncModel):
        name = peewee.CharField()

        class Meta:
            database = db

        def save(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(self.name)
            return super().save(*args, **kwargs)

    await db.acreate_tables([Audited])
    try:
        item = await Audited.acreate(name="a")
        item.name = "b"
        await item.asave()
        assert calls == ["a", "b"]
    finally:
        await db.adrop_tables([Audited])


@pytest.mark.parametrize("where", ["model", "base"])
@pytest.mark.parametrize("name", ["create", "save", "insert", "update", "_pk_expr"])
async def test_methods_patched_at_run_time_are_noticed(db, where, name, monkeypatch):
    """acreate / asave look the methods up at every call: a method patched on the
    model (or on a base class) after fast-path calls takes effect on the next one."""

    class Base(AsyncModel):
        pass

    class Patched(Base):
        name = peewee.CharField()

        class Meta:
            database = db

    await db.acreate_tables([Patched])
    try:
        first = await Patched.acreate(name="a")  # fast path: plans compiled and cached
        first.name = "b"
        await first.asave()
        calls: list[str] = []
        original = getattr(peewee.Model, name)
        func = getattr(original, "__func__", original)

        def spy(self_or_cls: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return func(self_or_cls, *args, **kwargs)

        patched = classmethod(spy) if hasattr(original, "__func__") else spy
        monkeypatch.setattr(Patched if where == "model" else Base, name, patched, raising=False)
        second = await Patched.acreate(name="c")
        second.name = "d"
        await second.asave()
        assert calls, f"patched {name} on the {where} was not called"
        outside = Outside(db)
        try:
            rows = outside.query(f"SELECT name FROM {Patched._meta.table_name} ORDER BY id")
        finally:
            outside.close()
        assert [r[0] for r in rows] == ["b", "d"]
    finally:
        await db.adrop_tables([Patched])


async def test_added_and_renamed_fields_recompile(db):
    Thing = await make_thing(db)
    first = await Thing.acreate(label="one")
    assert (await Thing.aget_by_id(first.id)).size == 42

    await db.aexecute_sql("ALTER TABLE thing ADD COLUMN note VARCHAR(20)")
    Thing._meta.add_field("note", peewee.CharField(null=True))
    second = await Thing.acreate(label="two", note="added")
    assert (await Thing.aget_by_id(second.id)).note == "added"

    await db.aexecute_sql("ALTER TABLE thing RENAME COLUMN label TO title")
    Thing._meta.remove_field("label")
    Thing._meta.add_field("label", peewee.CharField(column_name="title"))
    got = await Thing.aget_by_id(second.id)
    assert (got.label, got.note) == ("two", "added")
    got.label = "renamed"
    await got.asave()
    rows = await db.aexecute_sql(f"SELECT title FROM thing WHERE id = {int(got.id)}")
    assert rows.fetchone()[0] == "renamed"
    await db.adrop_tables([Thing])


async def test_rows_of_a_kept_select_plan_follow_added_and_renamed_fields(db):
    """db.get / db.list keep each select plan's row layout: a changed model gets a
    new plan, and so a new layout."""
    Thing = await make_thing(db)
    first = await Thing.acreate(label="one")
    for _ in range(3):  # the plan is checked, then its layout kept
        got = await db.get(Thing.select().where(Thing.id == first.id))
        assert got.__data__ == {"id": first.id, "label": "one", "size": 42}

    await db.aexecute_sql("ALTER TABLE thing ADD COLUMN note VARCHAR(20)")
    Thing._meta.add_field("note", peewee.CharField(null=True))
    await db.aexecute_sql("ALTER TABLE thing RENAME COLUMN label TO title")
    Thing._meta.remove_field("label")
    Thing._meta.add_field("label", peewee.CharField(column_name="title"))
    second = await Thing.acreate(label="two", note="added")
    for _ in range(3):
        got = await db.get(Thing.select().where(Thing.id == second.id))
        assert (got.label, got.note, got.size) == ("two", "added", 42)
        rows = await db.list(Thing.select().order_by(Thing.id).limit(5))
        assert [(r.label, r.note) for r in rows] == [("one", None), ("two", "added")]
    await db.adrop_tables([Thing])


async def test_renamed_table_recompiles(db):
    Thing = await make_thing(db, "thing_a")
    item = await Thing.acreate(label="x")
    assert (await Thing.aget_by_id(item.id)).label == "x"
    await db.aexecute_sql("ALTER TABLE thing_a RENAME TO thing_b")
    Thing._meta.set_table_name("thing_b")
    assert (await Thing.aget_by_id(item.id)).label == "x"
    await Thing.acreate(label="y")
    assert await db.count(Thing.select()) == 2
    await db.adrop_tables([Thing])


@pytest.mark.backends("sqlite", "postgres")  # a second MariaDB database is not set up here
async def test_two_databases(db, backend, request, tmp_path):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = make_database(backend, request, other_dir)
    Thing = await make_thing(db, "thing_two_dbs")
    here = await Thing.acreate(label="here")
    if backend == "postgres":
        # Same server: keep the second copy of the table in its own schema.
        await db.aexecute_sql("DROP SCHEMA IF EXISTS other_db CASCADE")
        await db.aexecute_sql("CREATE SCHEMA other_db")
        await db.aexecute_sql(
            "CREATE TABLE other_db.thing_two_dbs (id SERIAL PRIMARY KEY, "
            "label VARCHAR(255) NOT NULL, size INTEGER NOT NULL)"
        )
        Thing._meta.schema = "other_db"
        del Thing._meta.table
    try:
        with Thing.bind_ctx(other):
            if backend == "sqlite":
                await other.acreate_tables([Thing])
            with pytest.raises(Thing.DoesNotExist):
                await Thing.aget_by_id(here.id)
            there = await Thing.acreate(label="there")
            assert (await Thing.aget_by_id(there.id)).label == "there"
        if backend == "postgres":
            Thing._meta.schema = None
            del Thing._meta.table
        assert (await Thing.aget_by_id(here.id)).label == "here"
        assert await db.count(Thing.select()) == 1
    finally:
        if backend == "postgres":
            await db.aexecute_sql("DROP SCHEMA other_db CASCADE")
        await db.adrop_tables([Thing])
        await other.close_pool()
        other.close_all()


@pytest.mark.backends("sqlite")
async def test_sqlite_with_returning_clause(tmp_path):
    db = AsyncSqliteDatabase(str(tmp_path / "r.db"), returning_clause=True)
    Thing = await make_thing(db)
    item = await Thing.acreate(label="r")
    slow = await db.run(Thing.create, label="s")
    assert (item.id, slow.id) == (1, 2)
    assert (await Thing.aget_by_id(2)).label == "s"
    await db.close_pool()


async def test_returned_keys_go_through_python_value(db, backend):
    class Tagged(peewee.AutoField):
        def python_value(self, value: Any) -> Any:
            return None if value is None else f"id-{value}"

        def db_value(self, value: Any) -> Any:
            if isinstance(value, str) and value.startswith("id-"):
                value = value[3:]
            return super().db_value(value)

    class Labelled(AsyncModel):
        id = Tagged()
        name = peewee.CharField()

        class Meta:
            database = db

    await db.acreate_tables([Labelled])
    try:
        fast = await Labelled.acreate(name="a")
        slow = await db.run(Labelled.create, name="b")
        # PostgreSQL reads the key back through RETURNING (and python_value);
        # SQLite takes cursor.lastrowid as it is. The fast path does the same.
        expected = ("id-1", "id-2") if backend == "postgres" else (1, 2)
        assert (fast.id, slow.id) == expected
        assert (await Labelled.aget_by_id(fast.id)).name == "a"
    finally:
        await db.adrop_tables([Labelled])
