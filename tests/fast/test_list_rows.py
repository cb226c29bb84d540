"""``db.list`` reads a plain select's rows in one loop: the query is left exactly as
``list(query)`` leaves it (rows cached on its cursor wrapper), a failing row included."""

from __future__ import annotations

from typing import Any

import peewee
import pytest

from fastpeewee.fast.rows import ModelRows

from ..models import Tweet, User


def wrapper_of(query: Any) -> Any:
    return query._cursor_wrapper


def state(wrapper: Any) -> tuple[Any, ...]:
    return (
        wrapper.count,
        wrapper.populated,
        wrapper.initialized,
        [dict(o.__data__) for o in wrapper.row_cache],
        wrapper.cursor.fetchone(),
    )


@pytest.fixture
async def tweets(db):
    ann = await User.acreate(username="ann")
    for i in range(4):
        await Tweet.acreate(user=ann, content=f"t{i}", likes=i)
    return ann


async def test_list_leaves_the_query_as_peewee_does(db, tweets) -> None:
    fast_query = Tweet.select().order_by(Tweet.id)
    slow_query = Tweet.select().order_by(Tweet.id)
    fast = await db.list(fast_query)
    slow = await db.run(lambda: list(slow_query))
    assert [dict(o.__data__) for o in fast] == [dict(o.__data__) for o in slow]
    assert [o.content for o in fast] == ["t0", "t1", "t2", "t3"]
    assert type(wrapper_of(fast_query)) is ModelRows
    assert state(wrapper_of(fast_query)) == state(wrapper_of(slow_query))
    # Iterating the query again gives the cached objects, as peewee's.
    assert [id(o) for o in fast_query] == [id(o) for o in fast]
    assert fast is not wrapper_of(fast_query).row_cache  # a copy, as list() makes


async def test_empty_list(db) -> None:
    query = Tweet.select()
    assert await db.list(query) == []
    wrapper = wrapper_of(query)
    assert (wrapper.count, wrapper.populated, wrapper.row_cache) == (0, True, [])


async def test_a_failing_row_leaves_the_wrapper_as_peewee_does(db, tweets) -> None:
    class Broken(peewee.IntegerField):
        def python_value(self, value: Any) -> Any:
            if value == 2:
                raise ValueError("bad row")
            return value

    likes = Broken()
    # A converter of this select only: Tweet keeps its own field and accessor.
    likes.bind(Tweet, "likes", set_attribute=False)
    columns = [Tweet.id, Tweet.content]

    def make() -> Any:
        return Tweet.select(*columns, likes).order_by(Tweet.id)

    fast_query, slow_query = make(), make()
    with pytest.raises(ValueError, match="bad row"):
        await db.list(fast_query)
    with pytest.raises(ValueError, match="bad row"):
        await db.run(lambda: list(slow_query))
    assert type(wrapper_of(fast_query)) is ModelRows
    assert wrapper_of(fast_query)._plan is not None  # rows built without peewee's setattr
    fast_state, slow_state = state(wrapper_of(fast_query)), state(wrapper_of(slow_query))
    assert fast_state[:4] == slow_state[:4]
    assert fast_state[0] == 3  # counted before converting, as peewee counts
    # The rows after the failing one are still unread in both.
    assert fast_state[4] is not None and slow_state[4] is not None
    assert fast_state[4][0] == slow_state[4][0]


async def test_first_reads_as_peewee_does(db, tweets) -> None:
    for n in (1, 2, 9):
        fast_query = Tweet.select().order_by(Tweet.id)
        slow_query = Tweet.select().order_by(Tweet.id)
        fast = await db.first(fast_query, n=n)
        slow = await db.run(slow_query.first, n=n)
        if n == 1:
            fast, slow = [fast], [slow]
        assert [dict(o.__data__) for o in fast] == [dict(o.__data__) for o in slow]
        assert len(fast) == min(n, 4)
        # The LIMIT is set on the query and its rows cached on it, as peewee leaves them.
        assert fast_query._limit == slow_query._limit == n  # type: ignore[attr-defined]
        assert state(wrapper_of(fast_query)) == state(wrapper_of(slow_query))
        again = await db.first(fast_query, n=n)  # read from the cache: no new query
        assert (again if n != 1 else [again]) == fast
    assert await db.first(Tweet.select().where(Tweet.likes > 100)) is None
    # A query of another LIMIT is read again under the new one, as peewee does.
    query = Tweet.select().order_by(Tweet.id).limit(3)
    assert [t.content for t in await db.first(query, n=2)] == ["t0", "t1"]
    assert (await db.first(query)).content == "t0"
