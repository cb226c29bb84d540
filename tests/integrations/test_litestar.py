"""Litestar: middleware, per-request transactions, exception handlers, lifespan, DI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest
from litestar import Litestar, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from fastpeewee import AsyncDatabase
from fastpeewee.integrations.litestar import (
    DatabaseMiddleware,
    atomic_request,
    database_lifespan,
    exception_handlers,
    provide_database,
)

from ..conftest import make_database, settle
from ..models import MODELS, Tweet, User
from .support import (
    cancel_mid_request,
    client,
    eventually,
    in_use,
    opened,
    stream_then_hang_up,
    usernames_outside,
    uvicorn_server,
)


def make_app(db: Any, handlers: list[Any], *, atomic: bool = False, **options: Any) -> Litestar:
    return Litestar(
        route_handlers=handlers,
        middleware=[DatabaseMiddleware(db, atomic=atomic)],
        exception_handlers=exception_handlers(retry_after=3),
        **options,
    )


async def test_one_connection_per_request_shared_by_its_tasks_and_threads(db):
    arrived, peak, gate = 0, 0, asyncio.Event()

    @get("/shared/{name:str}")
    async def shared(name: FromPath[str], wait: FromQuery[bool] = True) -> list[int]:
        nonlocal arrived, peak
        await User.acreate(username=name)
        seen = [in_use(db)]

        async def child() -> int:
            await db.count(User.select())
            return in_use(db)

        def in_thread() -> int:
            User.create(username=f"{name}-thread")
            return in_use(db)

        seen.append(await asyncio.create_task(child()))
        seen.append(await asyncio.to_thread(in_thread))
        if wait:
            arrived += 1
            if arrived == 3:
                peak = in_use(db)  # all three requests hold their connection now
                gate.set()
            await asyncio.wait_for(gate.wait(), 5)
        return seen

    @get("/sync", sync_to_thread=True)
    def sync_handler() -> list[int]:  # Litestar runs it in a worker thread
        User.create(username="sync")
        return [in_use(db), User.select().count()]

    async with client(make_app(db, [shared, sync_handler])) as http:
        responses = await asyncio.gather(*(http.get(f"/shared/u{i}") for i in range(3)))
        assert [r.status_code for r in responses] == [200] * 3
        assert peak == 3  # three concurrent requests: three connections, none shared
        alone = await http.get("/shared/alone", params={"wait": False})
        sync = await http.get("/sync")
    assert alone.json() == [1, 1, 1]  # the handler, its task and its thread share one
    assert sync.json() == [1, 9]
    await settle(db)
    assert in_use(db) == 0
    assert len(await usernames_outside(db)) == 9


async def test_a_request_that_never_queries_takes_no_connection(db):
    @get("/ping")
    async def ping() -> str:
        return "pong"

    @get("/users/{user_id:int}")
    async def read(user_id: FromPath[int]) -> str:
        return (await User.aget_by_id(user_id)).username

    before = opened(db)
    async with client(make_app(db, [ping, read])) as http:
        responses = await asyncio.gather(*(http.get("/ping") for _ in range(5)))
        assert {r.text for r in responses} == {"pong"}
        assert (await http.get("/users/not-a-number")).status_code in (400, 404)
    assert opened(db) == before
    assert in_use(db) == 0


async def test_an_exception_releases_the_connection_and_rolls_back(db):
    @get("/boom")
    async def boom() -> None:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        raise RuntimeError("boom")

    async with client(make_app(db, [boom])) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert "never-committed" not in response.text
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == set()


async def test_cancellation_releases_the_connection_and_rolls_back(db):
    started = asyncio.Event()

    @get("/slow")
    async def slow() -> None:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="cancelled")
        started.set()
        await asyncio.sleep(30)

    sent = await cancel_mid_request(make_app(db, [slow]), "/slow", started)
    assert [m for m in sent if m["type"].startswith("http.")] == []
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == set()


async def test_a_client_hanging_up_on_a_real_server_releases_everything(db):
    chunks = 0
    finished = asyncio.Event()

    @get("/stream")
    async def stream() -> Stream:
        await User.acreate(username="before-stream")

        async def rows() -> AsyncIterator[str]:
            nonlocal chunks
            try:
                async with db.atomic():
                    await User.acreate(username="streamed")
                    while True:
                        chunks += 1
                        yield f"{await db.count(User.select())}\n"
                        await asyncio.sleep(0.01)
            finally:
                finished.set()

        return Stream(rows())

    async with uvicorn_server(make_app(db, [stream])) as port:
        received = await stream_then_hang_up(port, "/stream", lambda: chunks >= 3)
        assert b"200 OK" in received
        await asyncio.wait_for(finished.wait(), 5)  # the stream stopped: nobody listens
        assert await eventually(lambda: in_use(db) == 0)
    assert await usernames_outside(db) == {"before-stream"}  # "streamed" rolled back


@pytest.mark.parametrize("where", ["handler", "app"])
async def test_atomic_requests_commit_before_the_response_or_roll_back(db, where):
    def sync_part(name: str) -> None:
        User.create(username=f"{name}-thread")

    layer: dict[str, Any] = {"middleware": [atomic_request(db)]} if where == "handler" else {}

    @post("/a/{name:str}", **layer)
    async def create(name: FromPath[str], outcome: FromQuery[str] = "") -> Response[int]:
        await User.acreate(username=name)
        await asyncio.to_thread(sync_part, name)
        if outcome == "raise":
            raise HTTPException(status_code=400, detail="changed my mind")
        if outcome == "error":
            return Response(0, status_code=400)
        if outcome == "bug":
            raise RuntimeError("bug")
        if outcome == "integrity":
            await User.acreate(username=name)  # a duplicate: a 409 through the handlers
        return Response(await db.count(User.select()), status_code=201)

    @post("/s/{name:str}", sync_to_thread=True, **layer)
    def create_sync(name: FromPath[str]) -> int:
        User.create(username=name)
        return User.select().count()

    app = make_app(db, [create, create_sync], atomic=where == "app")
    async with client(app) as http:
        ok = await asyncio.gather(http.post("/a/ann"), http.post("/a/amy"))
        assert sorted(r.status_code for r in ok) == [201, 201]
        assert (await http.post("/a/bob", params={"outcome": "raise"})).status_code == 400
        assert (await http.post("/a/cat", params={"outcome": "error"})).status_code == 400
        assert (await http.post("/a/dan", params={"outcome": "bug"})).status_code == 500
        assert (await http.post("/a/eli", params={"outcome": "integrity"})).status_code == 409
        assert (await http.post("/s/eve")).json() == 5
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == {"ann", "ann-thread", "amy", "amy-thread", "eve"}


async def test_an_atomic_request_is_committed_before_the_client_hears_of_it(db):
    seen_from_outside: list[set[str]] = []

    @post("/users/{name:str}", middleware=[atomic_request(db)])
    async def create(name: FromPath[str]) -> int:
        return (await User.acreate(username=name)).id

    app = Litestar(route_handlers=[create])  # no app-level middleware: it opens the scope

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        async def spying_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen_from_outside.append(await usernames_outside(db))
            await send(message)

        await app(scope, receive, spying_send)

    async with client(spy) as http:
        assert (await http.post("/users/zoe")).status_code == 201
    assert seen_from_outside == [{"zoe"}]
    await settle(db)
    assert in_use(db) == 0


async def test_database_errors_become_404_409_422_and_503(backend, request, tmp_path):
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("fastpeewee.litestar").addHandler(handler)
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.acreate_tables(MODELS)
    held, release = asyncio.Event(), asyncio.Event()

    @get("/users/{user_id:int}")
    async def read(user_id: FromPath[int]) -> str:
        return (await User.aget_by_id(user_id)).username

    @post("/users/{name:str}")
    async def create(name: FromPath[str]) -> int:
        return (await User.acreate(username=name)).id

    @get("/huge")
    async def huge() -> None:
        if backend == "sqlite":  # SQLite stores any value: it never raises DataError itself
            raise peewee.DataError("value out of range")
        user = await User.acreate(username="liker")
        await Tweet.acreate(user=user, likes=2**40)

    @get("/hold")
    async def hold() -> str:
        await db.count(User.select())
        held.set()
        await release.wait()
        return "done"

    @get("/bug")
    async def bug() -> None:
        await db.aexecute_sql("SELEC 1")  # a syntax error is a bug: a 500

    @get("/plain")
    async def plain() -> None:
        raise ValueError("not a database error")

    app = make_app(db, [read, create, huge, hold, bug, plain])
    async with client(app) as http:
        missing = await http.get("/users/42")
        assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
        assert (await http.post("/users/ann")).status_code == 201
        duplicate = await http.post("/users/ann")
        assert duplicate.status_code == 409
        assert duplicate.json() == {"detail": "The request conflicts with existing data."}
        too_big = await http.get("/huge")
        assert too_big.status_code == 422, too_big.text
        assert "1099511627776" not in too_big.text
        for path in ("/bug", "/plain"):
            failed = await http.get(path)
            assert failed.status_code == 500
            assert failed.json()["detail"] == "Internal Server Error"
            assert "SELEC" not in failed.text
        holder = asyncio.create_task(http.get("/hold"))
        await asyncio.wait_for(held.wait(), 5)
        busy = await http.get("/users/1")
        release.set()
        assert (await holder).status_code == 200
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3"
    assert busy.json() == {"detail": "The database is busy; retry shortly."}
    for reply in (duplicate, too_big, busy):
        assert "INSERT" not in reply.text and "SELECT" not in reply.text
    logging.getLogger("fastpeewee.litestar").removeHandler(handler)
    assert any("on GET /users/1" in line for line in logged)  # the 503, with its request
    await settle(db)
    assert in_use(db) == 0
    await db.close_pool()
    db.close_all()


async def test_the_database_is_injected_where_handlers_ask_for_it(db):
    @get("/count")
    async def count(database: NamedDependency[AsyncDatabase]) -> list[Any]:
        return [database is db, await database.count(User.select())]

    app = make_app(db, [count], dependencies={"database": provide_database(db)})
    await User.acreate(username="ann")
    async with client(app) as http:
        assert (await http.get("/count")).json() == [True, 1]
    await settle(db)
    assert in_use(db) == 0


@pytest.mark.parametrize("warm", [True, False])
async def test_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path, warm):
    db = make_database(backend, request, tmp_path, pool_min_size=2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = Litestar(lifespan=[database_lifespan(db, MODELS, warm=warm)])
    async with app.lifespan():
        idle = sum(s.idle for s in db.pool_stats() if "[sync]" not in s.name)
        # The connection that created the tables stays, except on MySQL: the schema
        # lock's GET_LOCK changed its session, so it was closed rather than reused.
        assert idle == (2 if warm else 0 if backend == "mysql" else 1)
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
    assert db.pool_stats() == []
    db.close_all()


def test_the_middleware_needs_a_database():
    with pytest.raises(ValueError, match="at least one database"):
        DatabaseMiddleware([])
