"""Every public async method of the database and models, on each backend."""

from __future__ import annotations

import peewee
import pytest

from fastpeewee import AsyncModel, AsyncModelMixin

from ..conftest import AnyDatabase
from ..models import Tweet, User


async def test_create_get_and_variants(db):
    ann = await User.acreate(username="ann")
    assert ann.id is not None
    assert (await User.aget(User.username == "ann")).id == ann.id
    assert (await User.aget(username="ann")).id == ann.id
    assert (await User.aget_by_id(ann.id)).username == "ann"
    assert await User.aget_or_none(User.username == "nobody") is None
    with pytest.raises(User.DoesNotExist):
        await User.aget(User.username == "nobody")
    with pytest.raises(User.DoesNotExist):
        await User.aget_by_id(10**6)


async def test_get_or_create(db):
    user, created = await User.aget_or_create(username="bob")
    assert created
    again, created = await User.aget_or_create(username="bob")
    assert not created and again.id == user.id


async def test_set_and_delete_by_id(db):
    user = await User.acreate(username="c")
    assert await User.aset_by_id(user.id, {"username": "c2"}) == 1
    assert (await User.aget_by_id(user.id)).username == "c2"
    assert await User.adelete_by_id(user.id) == 1
    assert await User.adelete_by_id(user.id) == 0


async def test_save_and_delete_instance(db):
    user = User(username="d")
    assert await user.asave() == 1
    user.username = "d2"
    assert await user.asave() == 1
    assert (await User.aget_by_id(user.id)).username == "d2"
    await Tweet.acreate(user=user, content="x")
    assert await user.adelete_instance(recursive=True) == 1
    assert await db.count(Tweet.select()) == 0


async def test_bulk_create_and_update(db):
    users = [User(username=f"u{i}") for i in range(25)]
    await User.abulk_create(users, batch_size=10)
    assert await db.count(User.select()) == 25
    saved = await db.list(User.select().order_by(User.id))
    for user in saved:
        user.username = user.username.upper()
    assert await User.abulk_update(saved, [User.username], batch_size=7) == 25
    names = {u.username for u in await db.list(User.select())}
    assert names == {f"U{i}" for i in range(25)}


async def test_query_helpers(db):
    for name in "abc":
        await User.acreate(username=name)
    query = User.select().order_by(User.username)
    assert [u.username for u in await db.list(query)] == ["a", "b", "c"]
    assert (await db.get(query)).username == "a"
    # peewee's first() applies its limit to the query itself: use fresh ones.
    assert (await db.first(User.select().order_by(User.username))).username == "a"
    firsts = await db.first(User.select().order_by(User.username), n=2)
    assert [u.username for u in firsts] == ["a", "b"]
    assert await db.first(User.select().where(User.username == "z")) is None
    assert await db.scalar(User.select(peewee.fn.COUNT(User.id))) == 3
    assert await db.count(query) == 3
    assert await db.exists(query.where(User.username == "b"))
    assert not await db.exists(query.where(User.username == "z"))
    with pytest.raises(User.DoesNotExist):
        await db.get(query.where(User.username == "z"))


async def test_query_aexecute_for_every_query_kind(db):
    user_id = await User.insert(username="x").aexecute()
    assert user_id
    rows = await User.insert_many([{"username": f"m{i}"} for i in range(3)]).aexecute()
    assert rows is not None
    assert await User.update(username="y").where(User.id == user_id).aexecute() == 1
    assert [u.username for u in await User.select().where(User.id == user_id).aexecute()] == ["y"]
    assert await User.delete().where(User.username.startswith("m")).aexecute() == 3
    assert await db.aexecute(User.select()) is not None


async def test_aexecute_sql_and_run(db):
    cursor = await db.aexecute_sql("SELECT 1 + 1")
    assert cursor.fetchone()[0] == 2
    assert await db.run(lambda: User.create(username="r").username) == "r"


async def test_prefetch_and_afetch(db):
    ann = await User.acreate(username="ann")
    bob = await User.acreate(username="bob")
    for i in range(3):
        await Tweet.acreate(user=ann, content=f"a{i}")
    await Tweet.acreate(user=bob, content="b0")
    users = await db.aprefetch(User.select().order_by(User.id), Tweet.select().order_by(Tweet.id))
    assert [[t.content for t in u.tweets] for u in users] == [["a0", "a1", "a2"], ["b0"]]

    tweet = await Tweet.aget(Tweet.content == "b0")
    author = await tweet.afetch(Tweet.user)
    assert author.username == "bob"
    assert await tweet.afetch("user") is author  # cached after the first load
    with pytest.raises(ValueError, match="foreign-key"):
        await tweet.afetch(Tweet.content)


async def test_iterate_streams_rows(db):
    await User.abulk_create([User(username=f"s{i:03}") for i in range(250)])
    names = [u.username async for u in db.iterate(User.select().order_by(User.id), buffer_size=7)]
    assert names == [f"s{i:03}" for i in range(250)]
    dicts = [r async for r in db.iterate(User.select(User.username).limit(2).dicts())]
    assert dicts == [{"username": "s000"}, {"username": "s001"}]


async def test_iterate_early_break_frees_the_connection(db):
    await User.abulk_create([User(username=f"b{i}") for i in range(50)])
    rows = db.iterate(User.select(), buffer_size=5)
    async for _ in rows:
        break
    await rows.aclose()
    assert await db.count(User.select()) == 50


async def test_create_and_drop_tables(db: AnyDatabase):
    class Note(db.Model):
        body = peewee.TextField()

    await db.acreate_tables([Note])
    await Note.acreate(body="hi")
    assert await db.count(Note.select()) == 1
    await db.adrop_tables([Note])
    assert not await db.run(db.table_exists, "note")


async def test_mixin_on_plain_model(db):
    class Plain(AsyncModelMixin, peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = db

    await db.acreate_tables([Plain])
    assert (await Plain.acreate(name="p")).name == "p"
    await db.adrop_tables([Plain])


async def test_model_property_is_bound_and_cached(db):
    assert db.Model is db.Model
    assert issubclass(db.Model, AsyncModel)
    assert db.Model._meta.database is db


async def test_async_methods_refuse_a_plain_database():
    class Orphan(AsyncModel):
        class Meta:
            database = peewee.SqliteDatabase(":memory:")

    with pytest.raises(peewee.InterfaceError, match="no async support"):
        await Orphan.aget_by_id(1)


async def test_errors_are_peewee_errors(db):
    await User.acreate(username="dup")
    with pytest.raises(peewee.IntegrityError):
        await User.acreate(username="dup")
    # sqlite3 calls a missing table an OperationalError, PostgreSQL a ProgrammingError.
    with pytest.raises((peewee.OperationalError, peewee.ProgrammingError)):
        await db.aexecute_sql("SELECT * FROM no_such_table")
    # The connection that failed went back clean: the next query works.
    assert await db.count(User.select()) == 1


async def test_unicode_round_trips(db):
    text = "emoji \U0001f600 rtl \u05e9\u05dc\u05d5\u05dd cjk \u4e2d\u6587 e\u0301"
    user = await User.acreate(username=text)
    assert (await User.aget_by_id(user.id)).username == text


async def test_query_while_streaming_on_a_held_connection_fails_fast(db, monkeypatch):
    monkeypatch.setattr(db, "streaming_timeout", 0.2)
    await User.abulk_create([User(username=f"h{i}") for i in range(20)])
    async with db:
        rows = db.iterate(User.select(), buffer_size=2)
        await rows.__anext__()
        with pytest.raises(peewee.InterfaceError, match="busy streaming"):
            await db.count(User.select())
        await rows.aclose()
        assert await db.count(User.select()) == 20  # the connection is free again
