"""Fast hydration and native selects give the objects peewee's own path gives."""

from __future__ import annotations

from typing import Any

import peewee
import pytest

from fastpeewee import AsyncModel
from fastpeewee.fast.rows import ModelRows

from ..models import Tweet, User


def snapshot(obj: Any) -> Any:
    if isinstance(obj, peewee.Model):
        return type(obj), dict(obj.__data__), list(obj.__data__), set(obj._dirty), obj.__rel__  # type: ignore[attr-defined]
    return obj


async def both(db: Any, make: Any) -> tuple[list[Any], list[Any]]:
    fast = await db.list(make())
    slow = await db.run(lambda: list(make()))
    return [snapshot(o) for o in fast], [snapshot(o) for o in slow]


@pytest.fixture
async def data(db):
    ann = await User.acreate(username="ann")
    for i in range(3):
        await Tweet.acreate(user=ann, content=f"t{i}", likes=i)
    return ann


QUERIES = [
    lambda: Tweet.select().order_by(Tweet.id),
    lambda: Tweet.select(Tweet.content, Tweet.user).order_by(Tweet.id),
    lambda: Tweet.select(Tweet.content.alias("text"), Tweet.likes).order_by(Tweet.id),
    lambda: Tweet.select().order_by(Tweet.id).dicts(),
    lambda: Tweet.select().order_by(Tweet.id).tuples(),
    lambda: Tweet.select(Tweet, User).join(User).order_by(Tweet.id),
    lambda: Tweet.select(peewee.fn.COUNT(Tweet.id).alias("n")),
    lambda: Tweet.select().order_by(Tweet.id).namedtuples(),
    lambda: Tweet.select(Tweet.content).order_by(Tweet.id).objects(lambda **kw: kw),
]


@pytest.mark.parametrize("make", QUERIES)
async def test_get_gives_what_peewee_get_gives(db, data, make):
    fast = snapshot(await db.get(make()))
    assert fast == snapshot(await db.run(lambda: make().get()))
    assert type(fast) is not type(None)


@pytest.mark.parametrize("make", QUERIES)
async def test_same_objects_as_peewee(db, data, make):
    fast, slow = await both(db, make)
    assert fast == slow and len(fast) >= 1


async def test_fast_rows_are_used_for_plain_selects(db, data):
    query = Tweet.select().order_by(Tweet.id)
    rows = await db.list(query)
    assert isinstance(query._cursor_wrapper, ModelRows)  # type: ignore[attr-defined]
    assert [t.likes for t in rows] == [0, 1, 2]
    # peewee caches the result on the query: iterating again runs no statement.
    assert [t.id for t in query] == [t.id for t in rows]
    assert rows[0].user_id == data.id and rows[0].__rel__ == {}


async def test_custom_init_is_still_called(db):
    built: list[Any] = []

    class Noted(AsyncModel):
        name = peewee.CharField()

        class Meta:
            database = db

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(kwargs.get("name"))

    await db.acreate_tables([Noted])
    try:
        await Noted.acreate(name="x")
        built.clear()
        assert [n.name for n in await db.list(Noted.select())] == ["x"]
        assert built == ["x"]
    finally:
        await db.adrop_tables([Noted])


async def test_get_and_aexecute(db, data):
    first = await db.get(Tweet.select().where(Tweet.likes == 1))
    assert snapshot(first) == snapshot(await db.run(Tweet.select().where(Tweet.likes == 1).get))
    with pytest.raises(Tweet.DoesNotExist) as fast:
        await db.get(Tweet.select().where(Tweet.likes == 99))
    with pytest.raises(Tweet.DoesNotExist) as slow:
        await db.run(Tweet.select().where(Tweet.likes == 99).get)
    assert str(fast.value) == str(slow.value)
    cursor = await Tweet.select().where(Tweet.likes > 0).order_by(Tweet.id).aexecute()
    assert [t.likes for t in cursor] == [1, 2]
