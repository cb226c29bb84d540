"""aiohttp integration: request scopes, transactions, lifespan, error mapping.

Every test serves the app for real on loopback (aiohttp's ``TestServer`` and
``TestClient``, or an ``AppRunner`` with the ``handler_cancellation`` setting
under test).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from fastpeewee import AsyncSqliteDatabase
from fastpeewee.integrations.aiohttp import DATABASES, database_middleware, setup

from ..conftest import make_database, settle
from ..harness import Outside
from ..models import MODELS, Tweet, User
from .support import in_use, opened


def usernames(outside: Outside) -> list[str]:
    """The committed usernames, read from outside the library."""
    table = "`user`" if outside.kind == "mysql" else '"user"'
    return sorted(name for (name,) in outside.query(f"SELECT username FROM {table}"))


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """``app`` on a loopback port (start-up and cleanup included), and a client for it."""
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_request_uses_one_connection_for_its_tasks_and_threads(db):
    app = web.Application()
    setup(app, db)

    def sync_part(name: str) -> int:
        User.create(username=name)
        return in_use(db)

    async def task_part(name: str) -> int:
        await User.acreate(username=name)
        return in_use(db)

    async def view(request: web.Request) -> web.Response:
        await User.acreate(username="view")
        seen = [in_use(db)]
        seen.append(await asyncio.to_thread(sync_part, "thread"))
        seen.append(await asyncio.create_task(task_part("task")))
        async with db.atomic():
            await User.acreate(username="atomic")
            seen.append(in_use(db))
        return web.json_response({"seen": seen, "users": await db.count(User.select())})

    app.router.add_get("/", view)
    async with served(app) as client:
        response = await client.get("/")
        assert response.status == 200, await response.text()
        assert await response.json() == {"seen": [1, 1, 1, 1], "users": 4}
        await settle(db)
        assert in_use(db) == 0


async def test_concurrent_requests_get_their_own_connections(db):
    app = web.Application(middlewares=[database_middleware(db)])
    entered = asyncio.Event()
    arrived = 0
    peak = 0

    async def hold(request: web.Request) -> web.Response:
        nonlocal arrived, peak
        await db.count(User.select())  # takes the request's connection
        arrived += 1
        if arrived == 3:
            peak = in_use(db)
            entered.set()
        await asyncio.wait_for(entered.wait(), 5)
        return web.json_response(await db.count(User.select()))

    app.router.add_get("/hold", hold)
    async with served(app) as client:
        responses = await asyncio.gather(*(client.get("/hold") for _ in range(3)))
        assert [r.status for r in responses] == [200, 200, 200]
    assert peak == 3
    await settle(db)
    assert in_use(db) == 0


async def test_requests_that_never_query_take_no_connection(db):
    app = web.Application(middlewares=[database_middleware(db)])

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app.router.add_get("/ping", ping)
    before = opened(db)
    async with served(app) as client:
        assert await (await client.get("/ping")).text() == "pong"
        assert (await client.get("/no-such-route")).status == 404
    assert opened(db) == before
    assert in_use(db) == 0


async def test_an_error_releases_the_connection_and_rolls_back(db):
    app = web.Application(middlewares=[database_middleware(db)])
    outside = Outside(db)

    async def boom(request: web.Request) -> web.Response:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        raise RuntimeError("boom")

    app.router.add_get("/boom", boom)
    try:
        async with served(app) as client:
            assert (await client.get("/boom")).status == 500  # aiohttp's own 500
        await settle(db)
        assert in_use(db) == 0
        await outside.wait_quiet()
        assert await asyncio.to_thread(usernames, outside) == []
    finally:
        outside.close()


@pytest.mark.parametrize("atomic", [False, True], ids=["scope", "atomic"])
@pytest.mark.parametrize("cancellation", [True, False], ids=["cancelled", "not-cancelled"])
async def test_a_client_disconnect_releases_the_connection(db, cancellation, atomic):
    """aiohttp >= 3.9 lets a handler run on after its client left, unless
    ``handler_cancellation=True``; the connection goes back either way."""
    app = web.Application()
    setup(app, db, atomic=atomic)
    outside = Outside(db)
    started, proceed, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[web.Request] = []

    async def slow(request: web.Request) -> web.Response:
        seen.append(request)
        if not atomic:
            await db.aexecute_sql("BEGIN")  # left open: rolled back at the end
        await User.acreate(username="written")
        started.set()
        try:
            await asyncio.wait_for(proceed.wait(), 5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response(text="finished")

    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, handler_cancellation=cancellation)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(started.wait(), 5)
        writer.close()  # the client goes away mid-request
        await writer.wait_closed()
        if cancellation:
            await asyncio.wait_for(cancelled.wait(), 5)
        else:
            for _ in range(250):  # until the server saw the connection go
                if seen[0].transport is None:
                    break
                await asyncio.sleep(0.02)
            assert seen[0].transport is None
            assert not cancelled.is_set()
            assert in_use(db) == 1  # the handler runs on, holding its connection
            proceed.set()
        await settle(db)
        assert in_use(db) == 0
        await outside.wait_quiet()
        committed = await asyncio.to_thread(usernames, outside)
        # Cancelled: nothing committed. Not cancelled: the handler finished,
        # so an atomic request committed; a bare BEGIN left open rolled back.
        assert committed == (["written"] if atomic and not cancellation else [])
    finally:
        await runner.cleanup()
        outside.close()
    assert db.pool_stats() == []  # cleanup closed the pool


async def test_atomic_requests_commit_on_success_and_roll_back_on_errors(db):
    app = web.Application()
    setup(app, db, atomic=True)
    outside = Outside(db)
    await User.acreate(username="taken")

    async def create(request: web.Request) -> web.Response:
        name, how = request.match_info["name"], request.match_info["how"]
        await User.acreate(username=name)
        await asyncio.to_thread(User.create, username=f"{name}-thread")  # joins it
        if how == "raise":
            raise RuntimeError("changed my mind")
        if how == "http":
            raise web.HTTPBadRequest(text="no")
        if how == "return":
            return web.json_response({"detail": "refused"}, status=422)
        if how == "conflict":
            await User.acreate(username="taken")  # mapped to a 409 by the middleware
        return web.json_response({"in_use": in_use(db)})

    app.router.add_post("/users/{name}/{how}", create)
    try:
        async with served(app) as client:
            codes = {}
            for how in ("ok", "raise", "http", "return", "conflict"):
                codes[how] = (await client.post(f"/users/{how}/{how}")).status
            assert codes == {"ok": 200, "raise": 500, "http": 400, "return": 422, "conflict": 409}
            await settle(db)
            assert in_use(db) == 0
            await outside.wait_quiet()
            assert await asyncio.to_thread(usernames, outside) == ["ok", "ok-thread", "taken"]
    finally:
        outside.close()


@pytest.mark.backends("postgres")
async def test_a_commit_that_fails_is_answered_as_a_database_error(db):
    app = web.Application(middlewares=[database_middleware(db, atomic=True)])
    await db.aexecute_sql(
        'CREATE TABLE deferred_ref (id SERIAL PRIMARY KEY, ref INTEGER REFERENCES "user"(id) '
        "DEFERRABLE INITIALLY DEFERRED)"
    )

    async def orphan(request: web.Request) -> web.Response:
        # The statement passes; the foreign key is checked at COMMIT, and fails there.
        await db.aexecute_sql("INSERT INTO deferred_ref (ref) VALUES (12345)")
        return web.json_response({"status": "created"})

    app.router.add_post("/orphan", orphan)
    try:
        async with served(app) as client:
            response = await client.post("/orphan")
            assert response.status == 409
            assert await response.json() == {"detail": "The request conflicts with existing data."}
        await settle(db)
        assert in_use(db) == 0
        assert (await db.aexecute_sql("SELECT count(*) FROM deferred_ref")).fetchone()[0] == 0
    finally:
        await db.aexecute_sql("DROP TABLE deferred_ref")


async def test_errors_are_answered_404_409_422_and_503(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.acreate_tables(MODELS)
    app = web.Application()
    setup(app, db, retry_after=3)
    release, held = asyncio.Event(), asyncio.Event()

    async def read(request: web.Request) -> web.Response:
        return web.Response(text=(await User.aget_by_id(int(request.match_info["id"]))).username)

    async def create(request: web.Request) -> web.Response:
        user = await User.acreate(username=request.match_info["name"])
        return web.json_response({"id": user.id})

    async def like(request: web.Request) -> web.Response:
        tweet = await Tweet.acreate(user=1, likes=int(request.match_info["likes"]))
        return web.json_response({"id": tweet.id})

    async def hold(request: web.Request) -> web.Response:
        await db.count(User.select())
        held.set()
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="done")

    async def bug(request: web.Request) -> web.Response:
        if request.match_info["kind"] == "sql":
            await db.aexecute_sql("SELEC 'secret-sql'")
        raise ValueError("not a database error")

    app.router.add_get("/users/{id:\\d+}", read)
    app.router.add_post("/users/{name}", create)
    app.router.add_post("/likes/{likes}", like)
    app.router.add_get("/hold", hold)
    app.router.add_get("/bug/{kind}", bug)
    async with served(app) as client:
        missing = await client.get("/users/42")
        assert missing.status == 404
        assert await missing.json() == {"detail": "User not found"}
        assert (await client.post("/users/ann")).status == 200
        duplicate = await client.post("/users/ann")
        assert duplicate.status == 409
        assert await duplicate.json() == {"detail": "The request conflicts with existing data."}
        too_big = await client.post(f"/likes/{2**40}")
        if backend == "sqlite":
            assert too_big.status == 200  # SQLite stores any 64-bit integer
        else:
            assert too_big.status == 422
            assert "INSERT" not in await too_big.text()
        for kind in ("sql", "other"):
            broken = await client.get(f"/bug/{kind}")
            assert broken.status == 500  # bugs stay aiohttp's 500
            assert "secret-sql" not in await broken.text()

        holder = asyncio.create_task(client.get("/hold"))
        await asyncio.wait_for(held.wait(), 5)
        busy = await client.get("/users/1")  # the pool's one connection is taken
        release.set()
        assert (await holder).status == 200
        assert busy.status == 503
        assert busy.headers["Retry-After"] == "3"
        assert await busy.json() == {"detail": "The database is busy; retry shortly."}
        await settle(db)
        assert in_use(db) == 0
    db.close_all()


async def test_the_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = web.Application()
    setup(app, db, models=MODELS)
    assert app[DATABASES] == (db,)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"users": await db.count(User.select())})

    app.router.add_get("/count", count)
    assert db.pool_stats() == []
    async with served(app) as client:
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
        assert [s.idle for s in db.pool_stats() if "[sync]" not in s.name] == [1]  # warmed
        assert await (await client.get("/count")).json() == {"users": 0}
    assert db.pool_stats() == []  # cleaned up: no pool left open
    db.close_all()


async def test_websockets_hold_a_connection_only_in_a_transaction(db):
    app = web.Application()
    setup(app, db, atomic=True)  # a WebSocket is never one transaction
    await User.acreate(username="ann")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.receive()
        count = await db.count(User.select())
        idle = in_use(db)  # a socket keeps no connection between statements...
        async with db.atomic():
            await User.acreate(username="bob")
            held = in_use(db)  # ...only while its transaction is open
        await socket.send_json({"users": count, "idle": idle, "held": held})
        await socket.close()
        return socket

    app.router.add_get("/ws", ws)
    async with served(app) as client:
        async with client.ws_connect("/ws") as socket:
            await socket.send_str("go")
            message = await asyncio.wait_for(socket.receive(), 5)
            assert message.type == WSMsgType.TEXT
            assert message.json() == {"users": 1, "idle": 0, "held": 1}
        assert await db.count(User.select()) == 2
        await settle(db)
        assert in_use(db) == 0


def test_setup_refuses_a_second_install_and_no_database():
    app = web.Application()
    with pytest.raises(ValueError, match="at least one database"):
        setup(app, [])
    with pytest.raises(ValueError, match="at least one database"):
        database_middleware([])
    database = AsyncSqliteDatabase(":memory:")
    setup(app, database)
    with pytest.raises(RuntimeError, match="setup once"):
        setup(app, database)
