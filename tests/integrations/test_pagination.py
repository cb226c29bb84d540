"""fastapi-pagination over fastpeewee: libraries that test ``isinstance(db,
playhouse.pwasyncio.AsyncDatabaseMixin)`` take their async branch.

fastapi-pagination's ``apaginate`` picks its peewee code path with that check:
the async branch awaits ``db.count(query)`` and ``db.list(query)`` (or
``db.aprefetch``); the sync branch runs ``db.execute(count_query)`` and
``list(query)``, which fastpeewee refuses on the event loop
(:class:`~fastpeewee.MissingGreenletBridge`). :class:`fastpeewee.AsyncDatabase`
is a subclass of pwasyncio's mixin for that reason; the tests below also pin
that the mixin contributes nothing else.

Sync ``paginate`` sees the same check and so treats a fastpeewee database as
async everywhere, in worker threads too (as it does pwasyncio's own
databases), and its sync flow refuses the coroutines: a ``def`` endpoint hands
``apaginate`` to the event loop with ``anyio.from_thread.run``, where it runs in
the request's scope.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import anyio.from_thread
import peewee
import playhouse.pwasyncio
import pytest
from fastapi import Depends, FastAPI
from fastapi_pagination import Page, Params
from fastapi_pagination.ext.peewee import apaginate, paginate
from pydantic import BaseModel, ConfigDict

import fastpeewee
from fastpeewee import (
    AsyncDatabase,
    AsyncMySQLDatabase,
    AsyncPostgresqlDatabase,
    AsyncSqliteDatabase,
    DatabaseMiddleware,
    MissingGreenletBridge,
)
from fastpeewee.compat import peewee_async, peewee_asyncext

from ..conftest import assert_no_leaks, settle
from ..harness import Outside
from ..models import Tweet, User
from .support import client, in_use

PwMixin = playhouse.pwasyncio.AsyncDatabaseMixin

USERS = 25


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str


class TweetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    content: str


class UserWithTweets(UserOut):
    tweets: list[TweetOut]


def ordered() -> Any:
    return User.select().order_by(User.id)


async def seed(db: Any) -> None:
    users = [User(username=f"user-{i:02}") for i in range(USERS)]
    await User.abulk_create(users)
    first = await User.aget(User.username == "user-00")
    await Tweet.acreate(user=first, content="hello")
    await Tweet.acreate(user=first, content="again")


def spy(monkeypatch: pytest.MonkeyPatch, db: Any) -> list[str]:
    """Record the async-branch calls fastapi-pagination makes on ``db`` (still run for real)."""
    calls: list[str] = []
    for name in ("count", "list", "aprefetch"):
        method = getattr(db, name)

        async def recorded(*args: Any, _name: str = name, _method: Any = method) -> Any:
            calls.append(_name)
            return await _method(*args)

        monkeypatch.setattr(db, name, recorded)
    return calls


def pagination_app(db: Any, *, gate: asyncio.Event | None = None) -> tuple[FastAPI, list[int]]:
    """Paged routes: ``async def`` awaiting apaginate, ``def`` handing it to the loop."""
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    seen: list[int] = []  # connections in use mid-request

    @app.get("/users")
    async def users(params: Params = Depends()) -> Page[UserOut]:  # noqa: B008
        page = await apaginate(ordered(), params)
        seen.append(in_use(db))
        if gate is not None:  # hold the connection until every request has one
            if len(seen) == 3:
                gate.set()
            await asyncio.wait_for(gate.wait(), 5)
        return page

    @app.get("/users-with-tweets")
    async def with_tweets(params: Params = Depends()) -> Page[UserWithTweets]:  # noqa: B008
        return await apaginate(ordered(), params, prefetch=(Tweet.select(),))

    @app.get("/sync-users")
    def sync_users(params: Params = Depends()) -> Page[UserOut]:  # noqa: B008
        # A worker thread: apaginate runs on the loop, in this request's scope.
        page = anyio.from_thread.run(apaginate, ordered(), params)
        seen.append(in_use(db))
        return page

    return app, seen


# -- the check ----------------------------------------------------------------------


def all_database_classes() -> list[type[Any]]:
    classes: list[type[Any]] = [AsyncSqliteDatabase, AsyncPostgresqlDatabase, AsyncMySQLDatabase]
    for module in (peewee_async, peewee_asyncext):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, peewee.Database):
                classes.append(value)
    return classes


def test_every_database_class_passes_the_pwasyncio_check():
    classes = all_database_classes()
    assert len(classes) >= 3 + 5 + 2  # three backends, peewee_async's five, asyncext's two
    for cls in classes:
        db = cls(None)  # deferred: nothing is opened
        assert isinstance(db, PwMixin), cls
        assert isinstance(db, AsyncDatabase), cls
    assert issubclass(fastpeewee.AsyncDatabaseMixin, PwMixin)


# The mixin's names that fastpeewee leaves to it: the hooks of pwasyncio's own
# pool, which nothing but pwasyncio's (never run) code calls. Each is absent
# from peewee's Database, so inheriting it shadows nothing of peewee's.
DELIBERATELY_INHERITED = {
    "_acquire_conn_async": "pwasyncio's pool: fastpeewee's pools are fastpeewee.pool",
    "_create_pool_async": "pwasyncio's pool",
    "_ensure_pool": "pwasyncio's pool",
    "_pool_acquire": "pwasyncio's pool",
    "_pool_close": "pwasyncio's pool",
    "_pool_release": "pwasyncio's pool",
    "_release_conn": "pwasyncio's pool",
}
# Python's own entries of any class dict.
CLASS_BOILERPLATE = {"__dict__", "__doc__", "__module__", "__weakref__", "__qualname__"}


def _owner(cls: type[Any], name: str) -> type[Any]:
    return next(klass for klass in cls.__mro__ if name in vars(klass))


@pytest.mark.parametrize("cls", all_database_classes(), ids=lambda c: c.__name__)
def test_fastpeewee_wins_every_name_of_the_mixin(cls):
    names = set(vars(PwMixin)) - CLASS_BOILERPLATE
    # A name a newer peewee adds to the mixin must be looked at, and listed here.
    assert names - set(DELIBERATELY_INHERITED) <= {
        name for name in names if _owner(AsyncDatabase, name) is AsyncDatabase
    }, "the mixin has names AsyncDatabase does not define: define them or list them above"
    for name in names:
        owner = _owner(cls, name)
        if name in DELIBERATELY_INHERITED:
            assert owner is PwMixin, name
            assert not hasattr(peewee.Database, name), f"{name} would shadow peewee's"
        else:
            assert owner.__module__.startswith("fastpeewee."), (name, owner)
    # The mixin sits just below AsyncDatabase, above the peewee class.
    mro = cls.__mro__
    assert mro.index(AsyncDatabase) + 1 == mro.index(PwMixin)
    assert mro.index(PwMixin) < mro.index(peewee.Database)


def test_the_mixin_init_never_runs():
    db = AsyncSqliteDatabase(None)
    pwasyncio_only = {"_pool", "_pool_lock", "_closing", "_pool_size", "_pool_min_size"}
    assert not pwasyncio_only & set(vars(db))
    assert "_acquire_timeout" not in vars(db)
    assert db.pool_config.pool_size == 10  # fastpeewee's own defaults and config


def test_after_commit_is_peewees_not_the_mixins(tmp_path):
    db = AsyncSqliteDatabase(str(tmp_path / "after.db"))
    ran: list[str] = []
    try:
        with db.atomic():
            db.after_commit(lambda: ran.append("committed"))
            assert ran == []
        assert ran == ["committed"]
        # peewee's after_commit outside a transaction runs at once; pwasyncio's
        # refusal of coroutine functions is not in the path.
        assert AsyncDatabase.after_commit is not PwMixin.after_commit
        db.after_commit(lambda: ran.append("now"))
        assert ran == ["committed", "now"]
    finally:
        db.close_all()


async def test_pwasyncio_models_run_on_a_fastpeewee_database(db):
    """pwasyncio's own AsyncModel makes the same check (``_aio_database``)."""

    class PwUser(playhouse.pwasyncio.AsyncModel):  # type: ignore[misc]
        username = peewee.CharField()

        class Meta:
            database = db
            table_name = User._meta.table_name

    created = await PwUser.acreate(username="pw")
    assert (await User.aget_by_id(created.id)).username == "pw"
    assert (await PwUser.aget(PwUser.username == "pw")).id == created.id


# -- apaginate and paginate in an app ---------------------------------------------------


async def test_apaginate_takes_the_async_branch(db, monkeypatch):
    await seed(db)
    calls = spy(monkeypatch, db)
    app, seen = pagination_app(db)
    async with client(app) as http:
        first = await http.get("/users", params={"page": 1, "size": 10})
        last = await http.get("/users", params={"page": 3, "size": 10})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["total"], body["pages"], body["page"], body["size"]) == (USERS, 3, 1, 10)
    assert [u["username"] for u in body["items"]] == [f"user-{i:02}" for i in range(10)]
    assert [u["username"] for u in last.json()["items"]] == [f"user-{i:02}" for i in range(20, 25)]
    assert calls == ["count", "list", "count", "list"]
    assert seen == [1, 1]  # one connection per request, count and page on it
    await settle(db)
    assert_no_leaks(db)
    outside = Outside(db)
    try:
        await outside.wait_quiet()
    finally:
        outside.close()


async def test_apaginate_prefetch_uses_aprefetch(db, monkeypatch):
    await seed(db)
    calls = spy(monkeypatch, db)
    app, _ = pagination_app(db)
    async with client(app) as http:
        response = await http.get("/users-with-tweets", params={"page": 1, "size": 2})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [t["content"] for t in items[0]["tweets"]] == ["hello", "again"]
    assert items[1]["tweets"] == []
    assert calls == ["count", "aprefetch"]
    await settle(db)
    assert_no_leaks(db)


async def test_concurrent_pages_each_hold_their_own_connection(db):
    await seed(db)
    gate = asyncio.Event()
    app, seen = pagination_app(db, gate=gate)
    async with client(app) as http:
        pages = await asyncio.gather(
            *(http.get("/users", params={"page": p, "size": 10}) for p in (1, 2, 3))
        )
    assert [r.status_code for r in pages] == [200, 200, 200]
    names = [u["username"] for r in pages for u in r.json()["items"]]
    assert names == [f"user-{i:02}" for i in range(USERS)]
    assert len(seen) == 3
    assert max(seen) == 3  # three requests held three connections at once
    await settle(db)
    assert_no_leaks(db)


async def test_the_sync_branch_on_the_loop_is_refused(db):
    """What fastapi-pagination did before the subclassing: its sync branch, on the loop."""
    await seed(db)
    view = peewee.DatabaseProxy()
    view.initialize(db)
    with pytest.raises(MissingGreenletBridge, match="event-loop thread"):
        await apaginate(ordered(), Params(page=1, size=10), db=view)  # type: ignore[arg-type]
    await settle(db)
    assert_no_leaks(db)


async def test_a_def_endpoint_hands_apaginate_to_the_loop(db):
    await seed(db)
    app, seen = pagination_app(db)
    async with client(app) as http:
        response = await http.get("/sync-users", params={"page": 2, "size": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["page"]) == (USERS, 2)
    assert [u["username"] for u in body["items"]] == [f"user-{i:02}" for i in range(10, 20)]
    assert seen == [1]  # the worker thread used the request's one connection
    await settle(db)
    assert_no_leaks(db)


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_plain_paginate_treats_the_database_as_async_in_threads_too(db):
    """fastapi-pagination's rule for any pwasyncio database: the async branch,
    whose coroutines its sync flow refuses. Hence anyio.from_thread.run above."""
    with pytest.raises(TypeError, match="not allowed in sync flow"):
        await asyncio.to_thread(paginate, ordered(), Params(page=1, size=10))
    gc.collect()  # the refused coroutine goes now, under this test's filter
    await settle(db)
    assert_no_leaks(db)
