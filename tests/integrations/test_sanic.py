"""Sanic integration, against a real Sanic server on 127.0.0.1 in the test's loop:
request scopes (kept-alive sockets above all), transactions, lifespan, error mapping."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sanic import Request, Sanic
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse, json, text

from fastpeewee.integrations.sanic import add_request_scope, setup

from ..conftest import make_database, settle
from ..harness import Outside
from ..models import MODELS, Tweet, User
from .support import in_use, one_socket, opened

_names = itertools.count()


@pytest.fixture(autouse=True)
def _sanic_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several apps in one process: TouchUp (which drops the dispatch of signals
    # nobody listens to from Sanic's request path) rebuilds from the originals.
    monkeypatch.setattr(Sanic, "test_mode", True)


def new_app() -> Sanic[Any, Any]:
    app = Sanic(f"fastpeewee_test_{next(_names)}")
    app.config.KEEP_ALIVE_TIMEOUT = 10
    app.config.MOTD = False  # its banner imports every Sanic extension installed
    return app


@asynccontextmanager
async def serving(app: Sanic[Any, Any]) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in this event loop, with its listeners."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    server = await app.create_server(sock=sock, access_log=False, return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.before_stop()
        closing = server.close()
        for connection in list(server.connections):
            connection.close_if_idle()
        if closing is not None:
            await asyncio.wait_for(closing, 5)
        await server.after_stop()
        sock.close()


def client_port(request: Request) -> int:
    assert request.conn_info is not None
    return request.conn_info.client_port


def usernames_outside(outside: Outside) -> list[str]:
    table = {"postgres": '"user"', "mysql": "`user`", "sqlite": '"user"'}[outside.kind]
    return sorted(r[0] for r in outside.query(f"SELECT username FROM {table}"))


@pytest.mark.parametrize("ending", ["raises", "returns"])
async def test_a_kept_alive_socket_never_carries_state_to_the_next_request(db, ending):
    """Sanic serves a connection's requests in one task: the scope must not outlive one."""
    app = new_app()
    setup(app, db, lifespan=False)
    states: list[object] = []
    tasks: list[object] = []

    @app.post("/leave-open")
    async def leave_open(request: Request) -> HTTPResponse:
        tasks.append(asyncio.current_task())
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="uncommitted")
        states.append(db._state)
        if ending == "raises":
            raise RuntimeError("boom")
        return json({"port": client_port(request)})

    @app.get("/look")
    async def look(request: Request) -> HTTPResponse:
        tasks.append(asyncio.current_task())
        held_before = in_use(db)
        count = await db.count(User.select())
        states.append(db._state)
        return json({
            "held_before": held_before, "count": count, "in_transaction": db.in_transaction(),
            "port": client_port(request),
        })  # fmt: skip

    outside = Outside(db)
    try:
        async with serving(app) as url, one_socket(url) as http:
            first = await http.post("/leave-open")
            second = await http.get("/look")
            await settle(db)
            assert usernames_outside(outside) == []
            await outside.wait_quiet()
            assert in_use(db) == 0
    finally:
        outside.close()
    assert first.status_code == (500 if ending == "raises" else 200)
    assert "boom" not in first.text
    assert tasks[0] is tasks[1]  # the same task served both: the hazard is real
    if ending == "returns":
        assert second.json()["port"] == first.json()["port"]  # the same socket
    assert second.json() | {"port": 0} == {
        "held_before": 0, "count": 0, "in_transaction": False, "port": 0,
    }  # fmt: skip
    assert states[0] is not states[1]


async def test_without_the_scope_a_kept_alive_socket_carries_the_transaction(db):
    """The control for the test above: with no scope, request 2 is inside request 1's
    transaction, because both run in the connection's one task."""
    app = new_app()

    @app.post("/leave-open")
    async def leave_open(request: Request) -> HTTPResponse:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="uncommitted")
        return text("ok")

    @app.get("/look")
    async def look(request: Request) -> HTTPResponse:
        return json(await db.count(User.select()))

    async with serving(app) as url:
        async with one_socket(url) as http:
            assert (await http.post("/leave-open")).status_code == 200
            assert (await http.get("/look")).json() == 1  # request 1's uncommitted row
        # The client closed its socket: the task ended and gave the connection back.
        await settle(db)
    assert in_use(db) == 0
    assert await db.count(User.select()) == 0


async def test_a_request_shares_one_connection_with_its_tasks_and_threads(db):
    app = new_app()
    setup(app, db, lifespan=False)

    def sync_part() -> list[int]:
        User.create(username="from-thread")
        return [in_use(db), User.select().count()]

    @app.on_request
    async def middleware(request: Request) -> None:
        await db.count(User.select())
        request.ctx.seen = [in_use(db)]

    @app.get("/share")
    async def share(request: Request) -> HTTPResponse:
        seen = request.ctx.seen
        await User.acreate(username="from-handler")
        seen.append(in_use(db))
        seen += await asyncio.to_thread(sync_part)
        seen.append(await asyncio.create_task(db.count(User.select())))
        seen.append(in_use(db))
        return json(seen)

    async with serving(app) as url, one_socket(url) as http:
        response = await http.get("/share")
    assert response.json() == [1, 1, 1, 2, 2, 1]
    await settle(db)
    assert in_use(db) == 0


async def test_concurrent_requests_get_their_own_connections(db):
    app = new_app()
    setup(app, db, lifespan=False)
    arrived, entered = 0, asyncio.Event()
    peak = 0

    @app.get("/hold")
    async def hold(request: Request) -> HTTPResponse:
        nonlocal arrived, peak
        await db.count(User.select())
        arrived += 1
        if arrived == 3:
            peak = in_use(db)
            entered.set()
        await asyncio.wait_for(entered.wait(), 5)
        return json(await db.count(User.select()))

    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        responses = await asyncio.gather(*(http.get("/hold") for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert peak == 3
    await settle(db)
    assert in_use(db) == 0


async def test_requests_that_never_query_take_no_connection(db):
    app = new_app()
    setup(app, db, lifespan=False)

    @app.get("/ping")
    async def ping(request: Request) -> HTTPResponse:
        return text("pong")

    @app.get("/users/<user_id:int>")
    async def read(request: Request, user_id: int) -> HTTPResponse:
        return text((await User.aget_by_id(user_id)).username)

    before = opened(db)
    async with serving(app) as url, one_socket(url) as http:
        assert (await http.get("/ping")).text == "pong"
        assert (await http.get("/users/not-a-number")).status_code == 404  # no route
        assert (await http.get("/nowhere")).status_code == 404
    assert opened(db) == before
    assert in_use(db) == 0


async def test_a_client_that_disconnects_mid_request_gives_the_connection_back(db):
    app = new_app()
    setup(app, db, lifespan=False)
    started, cancelled = asyncio.Event(), asyncio.Event()

    @app.get("/slow")
    async def slow(request: Request) -> HTTPResponse:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return text("too late")

    outside = Outside(db)
    try:
        async with serving(app) as url:
            http = httpx.AsyncClient(base_url=url, timeout=10)
            request = asyncio.create_task(http.get("/slow"))
            await asyncio.wait_for(started.wait(), 5)
            assert in_use(db) == 1
            request.cancel()
            await http.aclose()  # the socket closes: Sanic cancels the request
            await asyncio.wait_for(cancelled.wait(), 5)
            await settle(db)
            assert in_use(db) == 0
            await outside.wait_quiet()
            assert usernames_outside(outside) == []
    finally:
        outside.close()


async def test_atomic_requests_commit_or_roll_back(db):
    app = new_app()
    setup(app, db, atomic=True, lifespan=False)

    def sync_part(name: str) -> None:
        User.create(username=f"{name}-sync")

    @app.post("/users/<name:str>")
    async def create(request: Request, name: str) -> HTTPResponse:
        await User.acreate(username=name)
        await asyncio.to_thread(sync_part, name)
        how = request.args.get("fail")
        if how == "raise":
            raise RuntimeError("changed my mind")
        if how == "400":
            raise BadRequest("changed my mind")
        if how == "503":
            return text("gave up", status=503)
        if how == "404":
            return text("returned, not raised", status=404)
        return json(await db.count(User.select()), status=201)

    async with serving(app) as url, one_socket(url) as http:
        assert (await http.post("/users/ann")).json() == 2
        assert (await http.post("/users/bob?fail=raise")).status_code == 500
        assert (await http.post("/users/cat?fail=400")).status_code == 400
        assert (await http.post("/users/dan?fail=503")).status_code == 503
        assert (await http.post("/users/eve?fail=404")).status_code == 404
        duplicate = await http.post("/users/ann")
    assert duplicate.status_code == 409
    names = sorted(u.username for u in await db.list(User.select()))
    assert names == ["ann", "ann-sync"]


async def test_one_route_can_ask_for_its_own_transaction(db):
    app = new_app()
    add_request_scope(app, db)

    @app.post("/atomic/<name:str>", ctx_atomic=True)
    async def atomic(request: Request, name: str) -> HTTPResponse:
        await User.acreate(username=name)
        raise RuntimeError("rolled back")

    @app.post("/plain/<name:str>")
    async def plain(request: Request, name: str) -> HTTPResponse:
        await User.acreate(username=name)
        raise RuntimeError("autocommitted already")

    async with serving(app) as url, one_socket(url) as http:
        assert (await http.post("/atomic/ann")).status_code == 500
        assert (await http.post("/plain/bob")).status_code == 500
    assert [u.username for u in await db.list(User.select())] == ["bob"]


@pytest.mark.backends("postgres")
async def test_a_failed_commit_is_an_error_response_not_a_success(db, backend):
    """A deferred constraint fails at COMMIT, which runs before the response is sent."""
    await db.aexecute_sql("DROP TABLE IF EXISTS deferred_check")
    await db.aexecute_sql(
        "CREATE TABLE deferred_check (id INTEGER, "
        "CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    app = new_app()
    setup(app, db, atomic=True, lifespan=False)

    @app.post("/twice")
    async def twice(request: Request) -> HTTPResponse:
        await db.aexecute_sql("INSERT INTO deferred_check VALUES (1)")
        await db.aexecute_sql("INSERT INTO deferred_check VALUES (1)")  # fine until COMMIT
        return text("created", status=201)

    async with serving(app) as url, one_socket(url) as http:
        response = await http.post("/twice")
        after = await http.get("/nowhere")  # the socket still serves
    assert response.status_code == 409, response.text  # never the 201
    assert after.status_code == 404
    rows = (await db.aexecute_sql("SELECT count(*) FROM deferred_check")).fetchone()
    assert rows == (0,)
    await db.aexecute_sql("DROP TABLE deferred_check")


async def test_database_errors_map_to_404_409_422_and_503(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    app = new_app()
    setup(app, db, models=MODELS, retry_after=3)
    release, held = asyncio.Event(), asyncio.Event()

    @app.get("/users/<user_id:int>")
    async def read(request: Request, user_id: int) -> HTTPResponse:
        return text((await User.aget_by_id(user_id)).username)

    @app.post("/users/<name:str>")
    async def create(request: Request, name: str) -> HTTPResponse:
        return json((await User.acreate(username=name)).id, status=201)

    @app.post("/bad")
    async def bad(request: Request) -> HTTPResponse:
        user = await User.aget()
        await Tweet.acreate(user=user, likes=2**40)  # out of an INTEGER's range
        return text("stored?")

    @app.get("/bug")
    async def bug(request: Request) -> HTTPResponse:
        await db.aexecute_sql("SELECT * FROM no_such_table")
        return text("unreachable")

    @app.get("/hold")
    async def hold(request: Request) -> HTTPResponse:
        await db.count(User.select())
        held.set()
        await release.wait()
        return text("done")

    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        missing = await http.get("/users/42")
        assert (await http.post("/users/ann")).status_code == 201
        duplicate = await http.post("/users/ann")
        too_big = await http.post("/bad")
        buggy = await http.get("/bug")
        holder = asyncio.create_task(http.get("/hold"))
        await asyncio.wait_for(held.wait(), 5)
        busy = await http.get("/users/1")
        release.set()
        assert (await holder).status_code == 200
    assert missing.status_code == 404
    assert missing.json() == {"detail": "User not found"}
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "The request conflicts with existing data."}
    # SQLite's INTEGER holds 64 bits: there the row is stored.
    assert too_big.status_code == (200 if backend == "sqlite" else 422), too_big.text
    assert buggy.status_code == 500
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3"
    assert busy.json() == {"detail": "The database is busy; retry shortly."}
    for response in (duplicate, too_big, buggy, busy):
        for secret in ("INSERT", "SELECT", "no_such_table", "127.0.0.1"):
            assert secret not in response.text
    assert db.pool_stats() == []  # the server stopped: the pool is closed
    db.close_all()


async def test_the_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_min_size=2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = new_app()
    setup(app, db, models=MODELS)
    seen: list[Any] = []

    @app.get("/tables")
    async def tables(request: Request) -> HTTPResponse:
        return json(sorted(await db.run(db.get_tables)))

    @app.after_server_start
    async def started(app: Sanic[Any, Any]) -> None:
        seen.append([(s.opened, s.idle) for s in db.pool_stats()])

    async with serving(app) as url, one_socket(url) as http:
        assert {"user", "tweet"} <= set((await http.get("/tables")).json())
    # Warmed before the first request (MySQL: after the connection that took the
    # schema lock was closed, GET_LOCK having changed its session).
    assert seen == [[(3 if backend == "mysql" else 2, 2)]]
    assert db.pool_stats() == []  # closed at shutdown
    db.close_all()
