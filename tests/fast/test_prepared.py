"""Prepared queries (``db.prepare``): the right rows and results, through the one
execution path (hooks, tracing, transactions, scopes), clear errors, no leak when
cancelled; the same with the fast paths off."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import peewee
import pytest

from fastpeewee import Param, PreparedQuery, Uncompilable

from ..harness import (
    LEDGER,
    Outside,
    cancel_at_every_step,
    check_invariants,
    ledger_database,
)
from ..models import Tweet, User

# The application calls this API itself: the switch leaves it on.
pytestmark = pytest.mark.without_fast_paths

NAMES = [f"u{i}" for i in range(12)]


def _t(outside: Outside) -> str:
    name = User._meta.table_name
    return f'"{name}"' if outside.kind == "postgres" else name


async def _users(db: Any) -> list[Any]:
    await User.insert_many([{"username": n} for n in NAMES]).aexecute()
    return await db.list(User.select().order_by(User.id))


async def test_get_first_list_give_what_peewee_gives(db):
    users = await _users(db)
    by_name = db.prepare(User.select().where(User.username == Param("name")))
    assert isinstance(by_name, PreparedQuery)
    assert by_name.names == ["name"]
    got = await by_name.get(name="u3")
    assert type(got) is User
    assert (got.id, got.username) == (users[3].id, "u3")
    assert got.__data__ == users[3].__data__
    assert not got.is_dirty()
    assert await by_name.first(name="nobody") is None
    with pytest.raises(User.DoesNotExist, match="instance matching query does not exist"):
        await by_name.get(name="nobody")

    page = db.prepare(User.select().order_by(User.id).limit(Param("n")).offset(Param("at")))
    for n, at in [(5, 0), (5, 5), (100, 10), (3, 20)]:
        rows = await page.list(n=n, at=at)
        expected = await db.list(User.select().order_by(User.id).limit(n).offset(at))
        assert [(u.id, u.username) for u in rows] == [(u.id, u.username) for u in expected]
    # A query with a LIMIT of its own keeps it (and its OFFSET) for get/first.
    assert (await page.first(n=5, at=3)).username == "u3"
    assert "LIMIT" in page.sql and page._one is page.template
    # The same prepared query again and again: the kept row layout stays right.
    assert [u.username for u in await page.list(n=2, at=1)] == ["u1", "u2"]


async def test_selected_columns_and_joins(db):
    await _users(db)
    names = db.prepare(User.select(User.username).where(User.id > Param("id")).order_by(User.id))
    first = (await db.list(User.select().order_by(User.id)))[0]
    rows = await names.list(id=first.id + 9)
    assert [u.username for u in rows] == ["u10", "u11"]
    assert all(u.id is None for u in rows)

    u = await User.aget(User.username == "u1")
    await Tweet.acreate(user=u, content="hello", likes=3)
    joined = db.prepare(Tweet.select(Tweet, User).join(User).where(User.username == Param("name")))
    (tweet,) = await joined.list(name="u1")
    assert (tweet.content, tweet.user.username) == ("hello", "u1")
    assert await joined.list(name="u2") == []


async def test_execute_writes_return_what_peewee_returns(db, backend):
    outside = Outside(db)
    try:
        add = db.prepare(User.insert(username=Param("name")))
        new_id = await add.execute(name="ann")
        assert isinstance(new_id, int)
        assert outside.query(f"SELECT id, username FROM {_t(outside)} WHERE username = 'ann'") == [
            (new_id, "ann")
        ]
        rename = db.prepare(User.update(username=Param("to")).where(User.id == Param("id")))
        assert await rename.execute(to="bob", id=new_id) == 1
        assert await rename.execute(to="bob", id=new_id + 1000) == 0
        drop = db.prepare(User.delete().where(User.username == Param("name")))
        assert await drop.execute(name="bob") == 1
        assert outside.query(f"SELECT count(*) FROM {_t(outside)}") == [(0,)]
        cursor = await db.prepare(User.select().where(User.id > Param("id"))).execute(id=0)
        assert list(cursor) == []
    finally:
        outside.close()


async def test_the_hooks_and_the_tracer_see_each_run(db):
    await _users(db)
    seen: list[Any] = []
    db.query_hooks.append(seen.append)
    started: list[str] = []

    class Tracer:
        def start(self, _db, sql, bulk):
            started.append(sql)

        def end(self, span, exc, pool_wait):
            pass

        def acquired(self, pool, seconds):
            pass

    from fastpeewee.tracing import Watch

    db._set_watch(Watch(None, Tracer()))
    try:
        q = db.prepare(User.select().where(User.username == Param("name")))
        await q.get(name="u1")
        await q.list(name="u2")
        await asyncio.to_thread(q.list_sync, name="u3")
    finally:
        db._set_watch(None)
        db.query_hooks.remove(seen.append)
    assert [e.sql for e in seen] == [q._one.sql, q.sql, q.sql]
    assert [list(e.params) for e in seen][1:] == [["u2"], ["u3"]]
    assert all(e.exception is None for e in seen)
    assert started == [e.sql for e in seen]


async def test_inside_a_transaction_and_a_scope(db):
    outside = Outside(db)
    try:
        add = db.prepare(User.insert(username=Param("name")))
        by_name = db.prepare(User.select().where(User.username == Param("name")))
        with pytest.raises(RuntimeError):
            async with db.atomic():
                await add.execute(name="inside")
                assert (await by_name.get(name="inside")).username == "inside"
                raise RuntimeError("roll it back")
        assert outside.query(f"SELECT count(*) FROM {_t(outside)}") == [(0,)]
        async with db.atomic():
            await add.execute(name="kept")
        assert outside.query(f"SELECT username FROM {_t(outside)}") == [("kept",)]

        async with db.scope():
            found = await asyncio.gather(*(by_name.get(name="kept") for _ in range(3)))
            in_thread = await asyncio.to_thread(by_name.get_sync, name="kept")
        assert {u.username for u in found} == {"kept"} == {in_thread.username}
    finally:
        outside.close()


async def test_sync_twins_from_a_thread(db):
    await _users(db)
    q = db.prepare(User.select().where(User.username.in_(["u1", "u2"]) | (User.id == Param("id"))))
    rows = await asyncio.to_thread(q.list_sync, id=-1)
    assert sorted(u.username for u in rows) == ["u1", "u2"]
    one = db.prepare(User.select().where(User.username == Param("name")))
    assert (await asyncio.to_thread(one.first_sync, name="u4")).username == "u4"
    assert await asyncio.to_thread(one.first_sync, name="none") is None
    with pytest.raises(User.DoesNotExist):
        await asyncio.to_thread(one.get_sync, name="none")
    add = db.prepare(User.insert(username=Param("name")))
    new_id = await asyncio.to_thread(add.execute_sync, name="t")
    assert (await User.aget_by_id(new_id)).username == "t"


async def test_wrong_or_missing_names_say_which(db):
    q = db.prepare(User.select().where((User.username == Param("name")) & (User.id > Param("id"))))
    with pytest.raises(TypeError, match=r"takes the values \['id', 'name'\].*missing \['id'\]"):
        await q.list(name="x")
    with pytest.raises(TypeError, match=r"unexpected \['nme'\]"):
        await q.get(nme="x", id=1, name="y")
    with pytest.raises(TypeError, match="SQL expression"):
        await q.list(name=peewee.fn.LOWER("X"), id=1)
    with pytest.raises(TypeError, match="execute"):
        await db.prepare(User.delete().where(User.id == Param("id"))).list(id=1)
    with pytest.raises(TypeError, match="name every Param with a string"):
        db.prepare(User.select().where(User.id == Param(0)))
    assert db.pool_stats()[0].in_use == 0  # nothing was sent, nothing held


def test_a_query_of_literals_cannot_be_prepared(db):
    with pytest.raises(Uncompilable, match="cannot prepare this query"):
        db.prepare(User.select().where(peewee.ValueLiterals(User.username == Param("n"))))


_tags = itertools.count()


def _allowed(result: Any, n: int) -> set[int]:
    """n rows if it completed, none if the body did not finish, else either (COMMIT)."""
    if result.completed:
        return {n}
    return {0, n} if result.marks.get("body") else {0}


async def test_cancelled_at_every_step_leaks_nothing(backend, request, tmp_path):
    async with ledger_database(backend, request, tmp_path) as (db, outside):

        class Ledger(peewee.Model):
            tag = peewee.CharField()

            class Meta:
                database = db
                table_name = LEDGER

        add = db.prepare(Ledger.insert(tag=Param("tag")))
        count = db.prepare(Ledger.select().where(Ledger.tag == Param("tag")))
        current: dict[str, str] = {}

        def op(marks: dict[str, bool]) -> Any:
            tag = current["tag"] = f"p{next(_tags)}"  # before the task starts: k may be 0
            return body(tag, marks)

        async def body(tag: str, marks: dict[str, bool]) -> None:
            async with db.atomic():
                await add.execute(tag=tag)
                assert len(await count.list(tag=tag)) == 1
                await add.execute(tag=tag)
                marks["body"] = True

        async def check(result: Any) -> None:
            await check_invariants(db, outside, probe=f"probe-{current['tag']}")
            got = (await asyncio.to_thread(outside.tags)).get(current["tag"], 0)
            assert got in _allowed(result, 2), (result, got)

        runs = await cancel_at_every_step(op, check)
        assert runs >= 3
