"""Starlette (without FastAPI): middleware, ``@atomic_request``, exception handlers, lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from fastpeewee.integrations.starlette import (
    DatabaseMiddleware,
    add_exception_handlers,
    atomic_request,
    database_lifespan,
    exception_handlers,
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


def make_app(db: Any, routes: list[Route], **options: Any) -> Starlette:
    return Starlette(
        routes=routes,
        middleware=[Middleware(DatabaseMiddleware, database=db)],
        exception_handlers=exception_handlers(retry_after=3),
        **options,
    )


async def test_one_connection_per_request_shared_by_its_tasks_and_threads(db):
    arrived, peak, gate = 0, 0, asyncio.Event()

    async def shared(request: Request) -> JSONResponse:
        nonlocal arrived, peak
        name = request.path_params["name"]
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
        arrived += 1
        if arrived == 3:
            peak = in_use(db)  # all three requests hold their connection now
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)
        return JSONResponse(seen)

    def sync_endpoint(request: Request) -> JSONResponse:  # Starlette runs it in a thread
        User.create(username="sync")
        return JSONResponse([in_use(db), User.select().count()])

    app = make_app(db, [Route("/shared/{name}", shared), Route("/sync", sync_endpoint)])
    async with client(app) as http:
        responses = await asyncio.gather(*(http.get(f"/shared/u{i}") for i in range(3)))
        assert [r.status_code for r in responses] == [200] * 3
        assert peak == 3  # three concurrent requests: three connections, none shared
        # Alone, the handler, its task and its thread all use the one connection.
        arrived = 2
        alone = await http.get("/shared/alone")
        sync = await http.get("/sync")
    assert alone.json() == [1, 1, 1]
    assert sync.json() == [1, 9]
    await settle(db)
    assert in_use(db) == 0
    assert len(await usernames_outside(db)) == 9


async def test_a_request_that_never_queries_takes_no_connection(db):
    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    before = opened(db)
    async with client(make_app(db, [Route("/ping", ping)])) as http:
        responses = await asyncio.gather(*(http.get("/ping") for _ in range(5)))
        assert {r.text for r in responses} == {"pong"}
        assert (await http.get("/nowhere")).status_code == 404
    assert opened(db) == before
    assert in_use(db) == 0


async def test_an_exception_releases_the_connection_and_rolls_back(db):
    async def boom(request: Request) -> None:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        raise RuntimeError("boom")

    async with client(make_app(db, [Route("/boom", boom)])) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert "never-committed" not in response.text
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == set()


async def test_cancellation_releases_the_connection_and_rolls_back(db):
    started = asyncio.Event()

    async def slow(request: Request) -> None:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="cancelled")
        started.set()
        await asyncio.sleep(30)

    app = make_app(db, [Route("/slow", slow)])
    sent = await cancel_mid_request(app, "/slow", started)
    assert sent == []
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == set()


async def test_a_client_hanging_up_on_a_real_server_releases_everything(db):
    chunks = 0
    finished = asyncio.Event()

    async def stream(request: Request) -> StreamingResponse:
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

        return StreamingResponse(rows(), media_type="text/plain")

    app = make_app(db, [Route("/stream", stream)])
    async with uvicorn_server(app) as port:
        received = await stream_then_hang_up(port, "/stream", lambda: chunks >= 3)
        assert b"200 OK" in received
        await asyncio.wait_for(finished.wait(), 5)  # the stream stopped: nobody listens
        assert await eventually(lambda: in_use(db) == 0)
    # The stream's open transaction was rolled back; the committed row stays.
    assert await usernames_outside(db) == {"before-stream"}


async def test_atomic_request_commits_or_rolls_back_the_whole_endpoint(db):
    def sync_part(name: str) -> None:
        User.create(username=f"{name}-thread")

    @atomic_request(db)
    async def create(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        await User.acreate(username=name)
        await asyncio.to_thread(sync_part, name)
        outcome = request.query_params.get("outcome")
        if outcome == "raise":
            raise HTTPException(400, "changed my mind")
        if outcome == "error":
            return JSONResponse({"detail": "refused"}, status_code=400)
        if outcome == "bug":
            raise RuntimeError("bug")
        return JSONResponse(await db.count(User.select()))

    @atomic_request(db)
    def create_sync(request: Request) -> JSONResponse:
        User.create(username=request.path_params["name"])
        if request.query_params.get("outcome") == "raise":
            raise HTTPException(409, "no")
        return JSONResponse(User.select().count())

    app = make_app(
        db,
        [
            Route("/a/{name}", create, methods=["POST"]),
            Route("/s/{name}", create_sync, methods=["POST"]),
        ],
    )
    async with client(app) as http:
        ok = await asyncio.gather(http.post("/a/ann"), http.post("/a/amy"))
        assert sorted(r.status_code for r in ok) == [200, 200]
        assert (await http.post("/a/bob?outcome=raise")).status_code == 400
        assert (await http.post("/a/cat?outcome=error")).json() == {"detail": "refused"}
        assert (await http.post("/a/dan?outcome=bug")).status_code == 500
        assert (await http.post("/s/eve")).json() == 5
        assert (await http.post("/s/fay?outcome=raise")).status_code == 409
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == {"ann", "ann-thread", "amy", "amy-thread", "eve"}


async def test_atomic_request_without_the_middleware_opens_its_own_scope(db):
    @atomic_request(db)
    async def create(request: Request) -> JSONResponse:
        await User.acreate(username="solo")
        return JSONResponse(in_use(db))

    app = Starlette(routes=[Route("/", create, methods=["POST"])])
    async with client(app) as http:
        assert (await http.post("/")).json() == 1
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == {"solo"}


async def test_database_errors_become_404_409_422_and_503(backend, request, tmp_path, caplog):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.acreate_tables(MODELS)
    held, release = asyncio.Event(), asyncio.Event()

    async def read(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await User.aget_by_id(request.path_params["id"])).username)

    async def create(request: Request) -> JSONResponse:
        return JSONResponse((await User.acreate(username=request.path_params["name"])).id)

    async def huge(request: Request) -> None:
        if backend == "sqlite":  # SQLite stores any value: it never raises DataError itself
            raise peewee.DataError("value out of range")
        user = await User.acreate(username="liker")
        await Tweet.acreate(user=user, likes=2**40)

    async def hold(request: Request) -> PlainTextResponse:
        await db.count(User.select())
        held.set()
        await release.wait()
        return PlainTextResponse("done")

    async def bug(request: Request) -> None:
        await db.aexecute_sql("SELEC 1")  # a syntax error is a bug: a 500

    async def plain(request: Request) -> None:
        raise ValueError("not a database error")

    app = Starlette(
        routes=[
            Route("/users/{id:int}", read), Route("/users/{name}", create, methods=["POST"]),
            Route("/huge", huge), Route("/hold", hold), Route("/bug", bug), Route("/plain", plain),
        ],
        middleware=[Middleware(DatabaseMiddleware, database=db)],
    )  # fmt: skip
    add_exception_handlers(app, retry_after=3)
    async with client(app) as http:
        missing = await http.get("/users/42")
        assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
        assert (await http.post("/users/ann")).status_code == 200
        duplicate = await http.post("/users/ann")
        assert duplicate.status_code == 409
        assert duplicate.json() == {"detail": "The request conflicts with existing data."}
        too_big = await http.get("/huge")
        assert too_big.status_code == 422, too_big.text
        assert "1099511627776" not in too_big.text
        for path in ("/bug", "/plain"):
            failed = await http.get(path)
            assert failed.status_code == 500
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
    assert "on GET /users/1" in caplog.text  # the 503 is logged with its request
    await settle(db)
    assert in_use(db) == 0
    await db.close_pool()
    db.close_all()


@pytest.mark.parametrize("warm", [True, False])
async def test_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path, warm):
    db = make_database(backend, request, tmp_path, pool_min_size=2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = Starlette(lifespan=database_lifespan(db, MODELS, warm=warm))
    async with app.router.lifespan_context(app):
        idle = sum(s.idle for s in db.pool_stats() if "[sync]" not in s.name)
        # The connection that created the tables stays, except on MySQL: the schema
        # lock's GET_LOCK changed its session, so it was closed rather than reused.
        assert idle == (2 if warm else 0 if backend == "mysql" else 1)
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
    assert db.pool_stats() == []
    db.close_all()
