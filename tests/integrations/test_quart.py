"""Quart integration: request scopes, transactions, lifespan, error mapping.

Through Quart's own test client (``app.test_client()``, ``app.test_app()`` for
the lifespan) and, for client disconnects, a real Hypercorn server on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, abort, websocket

from fastpeewee import AsyncSqliteDatabase
from fastpeewee.integrations.quart import init_app

from ..conftest import make_database, settle
from ..harness import Outside
from ..models import MODELS, Tweet, User
from ..servers import free_port
from .support import in_use, opened


def quart_app(db: Any, **options: Any) -> Quart:
    app = Quart(__name__)
    init_app(app, db, **options)
    return app


def usernames(outside: Outside) -> list[str]:
    """The committed usernames, read from outside the library."""
    table = "`user`" if outside.kind == "mysql" else '"user"'
    return sorted(name for (name,) in outside.query(f"SELECT username FROM {table}"))


async def test_a_request_uses_one_connection_for_its_tasks_and_threads(db):
    app = quart_app(db)

    def sync_part(name: str) -> int:
        User.create(username=name)
        return in_use(db)

    async def task_part(name: str) -> int:
        await User.acreate(username=name)
        return in_use(db)

    @app.get("/async")
    async def async_view() -> dict[str, Any]:
        await User.acreate(username="view")
        seen = [in_use(db)]
        seen.append(await asyncio.to_thread(sync_part, "thread"))
        seen.append(await asyncio.create_task(task_part("task")))
        async with db.atomic():  # the view's own transaction, on the same connection
            await User.acreate(username="atomic")
            seen.append(in_use(db))
        return {"seen": seen, "users": await db.count(User.select())}

    @app.get("/sync")
    def sync_view() -> dict[str, Any]:  # Quart runs it in its executor
        User.create(username="sync")
        with db.atomic():
            User.create(username="sync-atomic")
            return {"seen": [in_use(db)], "users": User.select().count()}

    client = app.test_client()
    response = await client.get("/async")
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert await response.get_json() == {"seen": [1, 1, 1, 1], "users": 4}
    response = await client.get("/sync")
    assert await response.get_json() == {"seen": [1], "users": 6}
    await settle(db)
    assert in_use(db) == 0


async def test_concurrent_requests_get_their_own_connections(db):
    app = quart_app(db)
    entered = asyncio.Event()
    arrived = 0
    peak = 0

    @app.get("/hold")
    async def hold() -> dict[str, int]:
        nonlocal arrived, peak
        await db.count(User.select())  # takes the request's connection
        arrived += 1
        if arrived == 3:
            peak = in_use(db)
            entered.set()
        await asyncio.wait_for(entered.wait(), 5)
        return {"users": await db.count(User.select())}

    client = app.test_client()
    responses = await asyncio.gather(*(client.get("/hold") for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert peak == 3  # three requests in flight, three connections
    await settle(db)
    assert in_use(db) == 0


async def test_requests_that_never_query_take_no_connection(db):
    app = quart_app(db)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    before = opened(db)
    client = app.test_client()
    assert await (await client.get("/ping")).get_data(as_text=True) == "pong"
    assert (await client.get("/no-such-route")).status_code == 404
    assert opened(db) == before
    assert in_use(db) == 0


async def test_streamed_bodies_query_inside_the_request_scope(db):
    app = quart_app(db)
    await User.acreate(username="ann")

    @app.get("/stream")
    async def stream() -> Any:
        async def rows() -> AsyncIterator[bytes]:
            for _ in range(3):
                # Sent after teardown_request ran: still the request's connection.
                yield f"{await db.count(User.select())}:{in_use(db)}\n".encode()

        return rows()

    response = await app.test_client().get("/stream")
    assert await response.get_data(as_text=True) == "1:1\n1:1\n1:1\n"
    await settle(db)
    assert in_use(db) == 0


async def test_an_error_releases_the_connection_and_rolls_back(db):
    app = quart_app(db)
    outside = Outside(db)

    @app.get("/boom")
    async def boom() -> str:
        await db.aexecute_sql("BEGIN")
        await User.acreate(username="never-committed")
        raise RuntimeError("boom")

    try:
        response = await app.test_client().get("/boom")
        assert response.status_code == 500  # Quart's own 500
        await settle(db)
        assert in_use(db) == 0
        await outside.wait_quiet()
        assert await asyncio.to_thread(usernames, outside) == []
    finally:
        outside.close()


@asynccontextmanager
async def hypercorn(app: Quart) -> AsyncIterator[int]:
    """Serve ``app`` with Hypercorn on a free loopback port (lifespan included)."""
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 2
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            break
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)


@pytest.mark.parametrize("atomic", [False, True], ids=["scope", "atomic"])
async def test_a_client_disconnect_releases_the_connection_and_rolls_back(db, atomic):
    app = quart_app(db, atomic=atomic)
    outside = Outside(db)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.get("/slow")
    async def slow() -> str:
        if not atomic:
            await db.aexecute_sql("BEGIN")
        await User.acreate(username="uncommitted")
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    try:
        async with hypercorn(app) as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            await writer.drain()
            await asyncio.wait_for(started.wait(), 5)
            assert in_use(db) == 1
            writer.close()  # the client goes away mid-request
            await writer.wait_closed()
            await asyncio.wait_for(cancelled.wait(), 5)  # Quart cancels the view
            await settle(db)
            assert in_use(db) == 0
            await outside.wait_quiet()
            assert await asyncio.to_thread(usernames, outside) == []
        assert db.pool_stats() == []  # the lifespan closed the pool at shutdown
    finally:
        outside.close()


async def test_atomic_requests_commit_on_success_and_roll_back_on_errors(db):
    app = quart_app(db, atomic=True)
    outside = Outside(db)
    await User.acreate(username="taken")

    @app.post("/users/<name>/<how>")
    async def create(name: str, how: str) -> Any:
        await User.acreate(username=name)
        await asyncio.to_thread(User.create, username=f"{name}-thread")  # joins it
        if how == "raise":
            raise RuntimeError("changed my mind")
        if how == "abort":
            abort(400)
        if how == "return":
            return {"detail": "refused"}, 422
        if how == "conflict":
            await User.acreate(username="taken")  # 409 through the error handler
        return {"in_use": in_use(db)}

    @app.post("/sync/<name>/<how>")
    def create_sync(name: str, how: str) -> Any:
        User.create(username=name)
        if how == "abort":
            abort(409)
        return {"users": User.select().count()}

    client = app.test_client()
    codes = {}
    for how in ("ok", "raise", "abort", "return", "conflict"):
        codes[how] = (await client.post(f"/users/{how}/{how}")).status_code
    codes["sync-ok"] = (await client.post("/sync/sync-ok/ok")).status_code
    codes["sync-abort"] = (await client.post("/sync/sync-abort/abort")).status_code
    assert codes == {"ok": 200, "raise": 500, "abort": 400, "return": 422, "conflict": 409,
                     "sync-ok": 200, "sync-abort": 409}  # fmt: skip
    try:
        await settle(db)
        assert in_use(db) == 0
        await outside.wait_quiet()
        # Only the successful requests' rows were committed, all of them.
        assert await asyncio.to_thread(usernames, outside) == [
            "ok",
            "ok-thread",
            "sync-ok",
            "taken",
        ]
    finally:
        outside.close()


@pytest.mark.backends("postgres")
async def test_a_commit_that_fails_is_answered_as_a_database_error(db):
    app = quart_app(db, atomic=True)
    await db.aexecute_sql(
        'CREATE TABLE deferred_ref (id SERIAL PRIMARY KEY, ref INTEGER REFERENCES "user"(id) '
        "DEFERRABLE INITIALLY DEFERRED)"
    )

    @app.post("/orphan")
    async def orphan() -> dict[str, str]:
        # The statement passes; the foreign key is checked at COMMIT, and fails there.
        await db.aexecute_sql("INSERT INTO deferred_ref (ref) VALUES (12345)")
        return {"status": "created"}

    try:
        response = await app.test_client().post("/orphan")
        assert response.status_code == 409
        assert await response.get_json() == {"detail": "The request conflicts with existing data."}
        await settle(db)
        assert in_use(db) == 0
        assert (await db.aexecute_sql("SELECT count(*) FROM deferred_ref")).fetchone()[0] == 0
    finally:
        await db.aexecute_sql("DROP TABLE deferred_ref")


async def test_error_handlers_answer_404_409_422_and_503(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.acreate_tables(MODELS)
    app = quart_app(db, retry_after=3)
    release, held = asyncio.Event(), asyncio.Event()

    @app.get("/users/<int:user_id>")
    async def read(user_id: int) -> str:
        return (await User.aget_by_id(user_id)).username

    @app.post("/users/<name>")
    async def create(name: str) -> dict[str, int]:
        return {"id": (await User.acreate(username=name)).id}

    @app.post("/users/<int:user_id>/likes/<int:likes>")
    async def like(user_id: int, likes: int) -> dict[str, int]:
        return {"id": (await Tweet.acreate(user=user_id, likes=likes)).id}

    @app.get("/hold")
    async def hold() -> str:
        await db.count(User.select())
        held.set()
        await asyncio.wait_for(release.wait(), 5)
        return "done"

    @app.get("/bug/<kind>")
    async def bug(kind: str) -> str:
        if kind == "sql":
            await db.aexecute_sql("SELEC 'secret-sql'")
        raise ValueError("not a database error")

    client = app.test_client()
    missing = await client.get("/users/42")
    assert missing.status_code == 404
    assert await missing.get_json() == {"detail": "User not found"}
    assert (await client.post("/users/ann")).status_code == 200
    duplicate = await client.post("/users/ann")
    assert duplicate.status_code == 409
    assert await duplicate.get_json() == {"detail": "The request conflicts with existing data."}
    too_big = await client.post(f"/users/1/likes/{2**40}")
    if backend == "sqlite":
        assert too_big.status_code == 200  # SQLite stores any 64-bit integer
    else:
        assert too_big.status_code == 422
        assert "INSERT" not in await too_big.get_data(as_text=True)
    for kind in ("sql", "other"):
        broken = await client.get(f"/bug/{kind}")
        assert broken.status_code == 500  # bugs stay Quart's 500
        assert "secret-sql" not in await broken.get_data(as_text=True)

    holder = asyncio.create_task(client.get("/hold"))
    await asyncio.wait_for(held.wait(), 5)
    busy = await client.get("/users/1")  # the pool's one connection is taken
    release.set()
    assert (await holder).status_code == 200
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "3"
    assert await busy.get_json() == {"detail": "The database is busy; retry shortly."}
    await settle(db)
    assert in_use(db) == 0
    await db.close_pool()
    db.close_all()


async def test_the_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = quart_app(db, models=MODELS)
    assert db.pool_stats() == []

    @app.get("/count")
    async def count() -> dict[str, int]:
        return {"users": await db.count(User.select())}

    async with app.test_app() as serving:
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
        assert [s.idle for s in db.pool_stats() if "[sync]" not in s.name] == [1]  # warmed
        response = await serving.test_client().get("/count")
        assert await response.get_json() == {"users": 0}
    assert db.pool_stats() == []  # shut down: no pool left open
    db.close_all()


async def test_websockets_hold_a_connection_only_in_a_transaction(db):
    app = quart_app(db)
    await User.acreate(username="ann")

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.receive()
        count = await db.count(User.select())
        idle = in_use(db)  # a socket keeps no connection between statements...
        async with db.atomic():
            await User.acreate(username="bob")
            held = in_use(db)  # ...only while its transaction is open
        await websocket.send_json({"users": count, "idle": idle, "held": held})

    async with app.test_client().websocket("/ws") as socket:
        await socket.send("go")
        assert await asyncio.wait_for(socket.receive_json(), 5) == {
            "users": 1, "idle": 0, "held": 1
        }  # fmt: skip
    assert await db.count(User.select()) == 2
    await settle(db)
    assert in_use(db) == 0


def test_init_app_refuses_a_second_install_and_no_database():
    app = Quart(__name__)
    with pytest.raises(ValueError, match="at least one database"):
        init_app(app, [])
    database = AsyncSqliteDatabase(":memory:")
    init_app(app, database)
    with pytest.raises(RuntimeError, match="init_app once"):
        init_app(app, database)
