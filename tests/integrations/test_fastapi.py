"""FastAPI/ASGI integration: request scopes, transactions, lifespan, error mapping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, WebSocket
from fastapi.responses import StreamingResponse

from fastpeewee import DatabaseMiddleware
from fastpeewee.integrations.fastapi import (
    add_exception_handlers,
    atomic_request,
    database_lifespan,
    request_scope,
)

from ..conftest import make_database, settle
from ..models import MODELS, User
from .support import client, in_use, opened


def sharing_app(db: Any, *, middleware: bool) -> FastAPI:
    """Routes whose async and sync parts report the connections in use mid-request."""
    app = FastAPI(dependencies=[] if middleware else [request_scope(db)])
    if middleware:
        app.add_middleware(DatabaseMiddleware, database=db)

    async def async_dep() -> int:
        await User.acreate(username="from-async-dep")
        return in_use(db)

    def sync_dep(seen: int = Depends(async_dep)) -> list[int]:
        User.create(username="from-sync-dep")
        return [seen, in_use(db)]

    @app.get("/sync")
    def sync_endpoint(seen: list[int] = Depends(sync_dep)) -> list[int]:  # noqa: B008
        with db.atomic():
            User.create(username="from-sync-endpoint")
            return [*seen, in_use(db), User.select().count()]

    @app.get("/async")
    async def async_endpoint(seen: list[int] = Depends(sync_dep)) -> list[int]:  # noqa: B008
        async with db.atomic():
            await User.acreate(username="from-async-endpoint")
            return [*seen, in_use(db), await db.count(User.select())]

    return app


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "dependency"])
async def test_a_request_uses_one_connection_for_its_tasks_and_threads(db, middleware):
    app = sharing_app(db, middleware=middleware)
    async with client(app) as http:
        for path in ("/sync", "/async"):
            await User.delete().aexecute()
            response = await http.get(path)
            assert response.status_code == 200, response.text
            # Every part of the request saw exactly one connection in use.
            assert response.json() == [1, 1, 1, 3]
            await settle(db)
            assert in_use(db) == 0


async def test_concurrent_requests_get_their_own_connections(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    entered = asyncio.Event()
    arrived = 0
    peak = 0

    @app.get("/hold")
    async def hold() -> int:
        nonlocal arrived, peak
        await db.count(User.select())  # takes the request's connection
        arrived += 1
        if arrived == 3:
            peak = in_use(db)
            entered.set()
        await asyncio.wait_for(entered.wait(), 5)
        return await db.count(User.select())

    async with client(app) as http:
        responses = await asyncio.gather(*(http.get("/hold") for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert peak == 3
    await settle(db)
    assert in_use(db) == 0


async def test_rejected_and_database_free_requests_take_no_connection(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)

    @app.get("/users/{user_id}")
    async def read(user_id: int) -> str:
        return (await User.aget_by_id(user_id)).username

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    before = opened(db)
    async with client(app) as http:
        assert (await http.get("/users/not-a-number")).status_code == 422
        assert (await http.get("/ping")).json() == "pong"
    assert opened(db) == before
    assert in_use(db) == 0


async def test_connection_goes_back_after_an_error(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)

    @app.get("/boom")
    async def boom() -> None:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        raise RuntimeError("boom")

    async with client(app) as http:
        assert (await http.get("/boom")).status_code == 500
    await settle(db)
    assert in_use(db) == 0
    assert await db.count(User.select()) == 0  # the open transaction was rolled back


async def test_connection_goes_back_when_the_request_is_cancelled(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    started = asyncio.Event()

    @app.get("/slow")
    async def slow() -> None:
        await db.count(User.select())
        started.set()
        await asyncio.sleep(30)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/slow", "raw_path": b"/slow", "root_path": "",
        "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(started.wait(), 5)
    assert in_use(db) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(db)
    assert in_use(db) == 0


async def test_connection_goes_back_when_a_streaming_client_disconnects(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    chunks = 0

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def rows() -> AsyncIterator[str]:
            nonlocal chunks
            while True:
                chunks += 1
                yield f"{await db.count(User.select())}\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(rows())

    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not disconnected.is_set():
            await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and chunks >= 3:
            disconnected.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/stream", "raw_path": b"/stream",
        "root_path": "", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert chunks >= 3
    await settle(db)
    assert in_use(db) == 0


async def test_atomic_request_commits_or_rolls_back_the_whole_request(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)

    def sync_part(name: str) -> None:
        User.create(username=f"{name}-sync")

    @app.post("/users/{name}", dependencies=[atomic_request(db)])
    async def create(name: str, fail: bool = False) -> int:
        await User.acreate(username=name)
        await asyncio.to_thread(sync_part, name)
        if fail:
            raise HTTPException(status_code=400, detail="changed my mind")
        return await db.count(User.select())

    @app.post("/sync/{name}", dependencies=[atomic_request(db)])
    def create_sync(name: str, fail: bool = False) -> int:
        User.create(username=name)
        if fail:
            raise HTTPException(status_code=400, detail="changed my mind")
        return User.select().count()

    async with client(app) as http:
        assert (await http.post("/users/ann")).json() == 2
        assert (await http.post("/users/bob", params={"fail": True})).status_code == 400
        assert (await http.post("/sync/cat")).json() == 3
        assert (await http.post("/sync/dan", params={"fail": True})).status_code == 400
    names = sorted(u.username for u in await db.list(User.select()))
    assert names == ["ann", "ann-sync", "cat"]


async def test_atomic_request_without_the_middleware_opens_its_own_scope(db):
    app = FastAPI()

    @app.post("/users/{name}", dependencies=[atomic_request(db)])
    def create(name: str) -> int:
        User.create(username=name)
        return in_use(db)

    async with client(app) as http:
        assert (await http.post("/users/eve")).json() == 1
    await settle(db)
    assert in_use(db) == 0
    assert await db.count(User.select().where(User.username == "eve")) == 1


async def test_lifespan_creates_tables_and_closes_the_pool(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    app = FastAPI(lifespan=database_lifespan(db, MODELS))
    async with app.router.lifespan_context(app):
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
        assert await db.count(User.select()) == 0
        assert db.pool_stats() != []
    assert db.pool_stats() == []  # shut down: no pool left open
    db.close_all()


async def test_exception_handlers_answer_404_409_and_503(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.acreate_tables(MODELS)
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    add_exception_handlers(app, retry_after=3)
    release, held = asyncio.Event(), asyncio.Event()

    @app.get("/users/{user_id}")
    async def read(user_id: int) -> str:
        return (await User.aget_by_id(user_id)).username

    @app.post("/users/{name}")
    async def create(name: str) -> int:
        return (await User.acreate(username=name)).id

    @app.get("/hold")
    async def hold() -> None:
        await db.count(User.select())
        held.set()
        await release.wait()

    async with client(app) as http:
        missing = await http.get("/users/42")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "User not found"}
        assert (await http.post("/users/ann")).status_code == 200
        duplicate = await http.post("/users/ann")
        assert duplicate.status_code == 409
        assert "detail" in duplicate.json()
        assert "INSERT" not in duplicate.text  # no SQL leaks out

        holder = asyncio.create_task(http.get("/hold"))
        await asyncio.wait_for(held.wait(), 5)
        busy = await http.get("/users/1")
        release.set()
        assert (await holder).status_code == 200
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3"
    assert busy.json() == {"detail": "The database is busy; retry shortly."}
    await settle(db)
    assert in_use(db) == 0
    await db.close_pool()
    db.close_all()


async def test_websocket_connections_are_scoped_too(db):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    await User.acreate(username="ann")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        count = await db.count(User.select())
        idle = in_use(db)  # a socket keeps no connection between statements...
        async with db.atomic():
            await User.acreate(username="bob")
            held = in_use(db)  # ...only while its transaction is open
        await websocket.send_json({"users": count, "idle": idle, "held": held})
        await websocket.close()

    incoming = [{"type": "websocket.connect"}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "scheme": "ws", "path": "/ws", "raw_path": b"/ws", "root_path": "",
        "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("t", 80),
        "subprotocols": [],
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)

    texts = [m["text"] for m in sent if m["type"] == "websocket.send"]
    assert [json.loads(t) for t in texts] == [{"users": 1, "idle": 0, "held": 1}]
    assert await db.count(User.select()) == 2
    await settle(db)
    assert in_use(db) == 0


def test_middleware_needs_a_database():
    with pytest.raises(ValueError, match="at least one database"):
        DatabaseMiddleware(FastAPI(), [])
    with pytest.raises(ValueError, match="at least one database"):
        request_scope()


async def test_middleware_accepts_several_databases(db, backend, request, tmp_path):
    (tmp_path / "other").mkdir()
    other = make_database("sqlite", request, tmp_path / "other")
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=[db, other])

    @app.get("/both")
    async def both() -> list[int]:
        await db.count(User.select())
        await other.aexecute_sql("SELECT 1")
        return [in_use(db), in_use(other)]

    async with client(app) as http:
        assert (await http.get("/both")).json() == [1, 1]
    await settle(db)
    await settle(other)
    assert in_use(db) == in_use(other) == 0
    await other.close_pool()
    other.close_all()
