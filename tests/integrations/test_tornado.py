"""Tornado integration, against a real HTTPServer on 127.0.0.1 in the test's loop:
request scopes, transactions, disconnects, lifespan, error mapping, and the
handler shape of peewee-async's Tornado example."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import peewee
import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

import fastpeewee.compat.peewee_async as peewee_async
from fastpeewee.integrations.tornado import DatabaseHandlerMixin, lifespan

from ..conftest import make_database, settle
from ..harness import Outside
from ..models import MODELS, Tweet, User
from .support import in_use, one_socket, opened


@asynccontextmanager
async def serving(app: tornado.web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in this event loop."""
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 5)


def usernames_outside(outside: Outside) -> list[str]:
    table = {"postgres": '"user"', "mysql": "`user`", "sqlite": '"user"'}[outside.kind]
    return sorted(r[0] for r in outside.query(f"SELECT username FROM {table}"))


class Base(DatabaseHandlerMixin, tornado.web.RequestHandler):
    """The database comes from the application's ``database`` setting."""


async def test_prepare_the_verb_its_tasks_and_threads_share_one_connection(db):
    class Share(Base):
        async def prepare(self) -> None:
            await db.count(User.select())
            self.seen = [in_use(db)]

        async def get(self) -> None:
            def sync_part() -> list[int]:
                User.create(username="from-thread")
                return [in_use(db), User.select().count()]

            await User.acreate(username="from-verb")
            self.seen.append(in_use(db))
            self.seen += await asyncio.to_thread(sync_part)
            self.seen.append(await asyncio.create_task(db.count(User.select())))
            self.write({"seen": self.seen})

    app = tornado.web.Application([(r"/share", Share)], database=db)
    async with serving(app) as url, one_socket(url) as http:
        response = await http.get("/share")
    assert response.json() == {"seen": [1, 1, 1, 2, 2]}
    await settle(db)
    assert in_use(db) == 0


async def test_concurrent_requests_get_their_own_connections(db):
    arrived, entered = 0, asyncio.Event()
    peak = 0

    class Hold(Base):
        async def get(self) -> None:
            nonlocal arrived, peak
            await db.count(User.select())
            arrived += 1
            if arrived == 3:
                peak = in_use(db)
                entered.set()
            await asyncio.wait_for(entered.wait(), 5)
            self.write({"count": await db.count(User.select())})

    app = tornado.web.Application([(r"/hold", Hold)], database=db)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        responses = await asyncio.gather(*(http.get("/hold") for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert peak == 3
    await settle(db)
    assert in_use(db) == 0


async def test_requests_that_never_query_take_no_connection(db):
    class Ping(Base):
        def get(self) -> None:
            self.write("pong")

    app = tornado.web.Application([(r"/ping", Ping)], database=db)
    before = opened(db)
    async with serving(app) as url, one_socket(url) as http:
        assert (await http.get("/ping")).text == "pong"
        assert (await http.post("/ping")).status_code == 405
        assert (await http.get("/nowhere")).status_code == 404
    assert opened(db) == before
    assert in_use(db) == 0


@pytest.mark.parametrize("ending", ["raises", "returns", "prepare-raises", "prepare-finishes"])
async def test_a_request_never_leaves_state_to_the_next_one(db, ending):
    states: list[object] = []

    class LeaveOpen(Base):
        async def prepare(self) -> None:
            if ending.startswith("prepare"):
                await self.open_transaction()
                if ending == "prepare-raises":
                    raise RuntimeError("boom")
                self.finish("answered in prepare")

        async def open_transaction(self) -> None:
            await db.aexecute_sql("BEGIN")
            await User.acreate(username="uncommitted")
            states.append(db._state)

        async def post(self) -> None:
            await self.open_transaction()
            if ending == "raises":
                raise RuntimeError("boom")
            self.write("left it open")

    class Look(Base):
        async def get(self) -> None:
            held_before = in_use(db)
            count = await db.count(User.select())
            states.append(db._state)
            self.write({"held_before": held_before, "count": count,
                        "in_transaction": db.in_transaction()})  # fmt: skip

    app = tornado.web.Application([(r"/leave-open", LeaveOpen), (r"/look", Look)], database=db)
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
    assert first.status_code == (500 if ending.endswith("raises") else 200)
    assert "boom" not in first.text
    look = second.json()
    if ending == "prepare-finishes":
        # prepare() sent the answer itself, so the rollback and release run just
        # after it: the next request may arrive first (on a state of its own).
        look["held_before"] = 0
    assert look == {"held_before": 0, "count": 0, "in_transaction": False}
    assert states[0] is not states[1]


async def test_a_client_that_disconnects_mid_request_gives_the_connection_back(db):
    started, cancelled = asyncio.Event(), asyncio.Event()

    class Slow(Base):
        async def get(self) -> None:
            await db.aexecute_sql("BEGIN")
            await User.acreate(username="never-committed")
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    app = tornado.web.Application([(r"/slow", Slow)], database=db)
    outside = Outside(db)
    try:
        async with serving(app) as url:
            http = httpx.AsyncClient(base_url=url, timeout=10)
            request = asyncio.create_task(http.get("/slow"))
            await asyncio.wait_for(started.wait(), 5)
            assert in_use(db) == 1
            request.cancel()
            await http.aclose()  # the socket closes: the handler's task is cancelled
            await asyncio.wait_for(cancelled.wait(), 5)
            await settle(db)
            assert in_use(db) == 0
            await outside.wait_quiet()
            assert usernames_outside(outside) == []
    finally:
        outside.close()


async def test_atomic_handlers_commit_or_roll_back(db):
    class Create(Base):
        atomic = True

        async def prepare(self) -> None:
            await User.acreate(username=f"{self.path_args[0]}-prepare")

        async def post(self, name: str) -> None:
            def sync_part() -> None:
                User.create(username=f"{name}-sync")

            await User.acreate(username=name)
            await asyncio.to_thread(sync_part)
            how = self.get_argument("fail", "")
            if how == "raise":
                raise RuntimeError("changed my mind")
            if how == "400":
                raise tornado.web.HTTPError(400)
            if how in ("503", "404"):
                self.set_status(int(how))
                self.write("gave up")
                return
            self.set_status(201)
            self.write({"count": await db.count(User.select())})

    app = tornado.web.Application([(r"/users/(\w+)", Create)], database=db)
    async with serving(app) as url, one_socket(url) as http:
        assert (await http.post("/users/ann", content=b"")).json() == {"count": 3}
        assert (await http.post("/users/bob?fail=raise", content=b"")).status_code == 500
        assert (await http.post("/users/cat?fail=400", content=b"")).status_code == 400
        assert (await http.post("/users/dan?fail=503", content=b"")).status_code == 503
        assert (await http.post("/users/eve?fail=404", content=b"")).status_code == 404
        duplicate = await http.post("/users/ann", content=b"")
    assert duplicate.status_code == 409
    names = sorted(u.username for u in await db.list(User.select()))
    assert names == ["ann", "ann-prepare", "ann-sync"]


@pytest.mark.backends("postgres")
async def test_a_failed_commit_is_an_error_answer_not_a_success(db, backend):
    """A deferred constraint fails at COMMIT, which runs before the response is finished."""
    await db.aexecute_sql("DROP TABLE IF EXISTS deferred_check")
    await db.aexecute_sql(
        "CREATE TABLE deferred_check (id INTEGER, "
        "CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
    )

    class Twice(Base):
        async def post(self) -> None:
            await db.aexecute_sql("INSERT INTO deferred_check VALUES (1)")
            await db.aexecute_sql("INSERT INTO deferred_check VALUES (1)")  # fine until COMMIT
            self.set_status(201)
            self.write("created")

    app = tornado.web.Application([(r"/twice", Twice)], database=db, database_atomic=True)
    async with serving(app) as url, one_socket(url) as http:
        response = await http.post("/twice", content=b"")
    assert response.status_code == 409, response.text  # never the 201
    rows = (await db.aexecute_sql("SELECT count(*) FROM deferred_check")).fetchone()
    assert rows == (0,)
    await db.aexecute_sql("DROP TABLE deferred_check")


async def test_database_errors_map_to_404_409_422_and_503(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    release, held = asyncio.Event(), asyncio.Event()

    class Users(Base):
        retry_after = 3

        async def get(self, user_id: str) -> None:
            self.write((await User.aget_by_id(int(user_id))).username)

        async def post(self, name: str) -> None:
            self.set_status(201)
            self.write({"id": (await User.acreate(username=name)).id})

    class Bad(Base):
        async def post(self) -> None:
            await Tweet.acreate(user=await User.aget(), likes=2**40)  # out of INTEGER's range
            self.write("stored")

    class Bug(Base):
        async def get(self) -> None:
            await db.aexecute_sql("SELECT * FROM no_such_table")

    class Hold(Base):
        async def get(self) -> None:
            await db.count(User.select())
            held.set()
            await release.wait()

    app = tornado.web.Application(
        [(r"/users/(\w+)", Users), (r"/bad", Bad), (r"/bug", Bug), (r"/hold", Hold)],
        database=db,
    )
    async with (
        lifespan(app, MODELS),
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        missing = await http.get("/users/42")
        assert (await http.post("/users/ann", content=b"")).status_code == 201
        duplicate = await http.post("/users/ann", content=b"")
        too_big = await http.post("/bad", content=b"")
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
    assert db.pool_stats() == []  # the lifespan closed the pool
    db.close_all()


async def test_the_lifespan_creates_tables_warms_and_closes_the_pool(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_min_size=2)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    app = tornado.web.Application([], database=db)
    async with lifespan(app, MODELS):
        # MySQL: the connection that took the schema lock (GET_LOCK) was closed.
        opened = 3 if backend == "mysql" else 2
        assert [(s.opened, s.idle) for s in db.pool_stats()] == [(opened, 2)]
        assert {"user", "tweet"} <= set(await db.run(db.get_tables))
    assert db.pool_stats() == []
    db.close_all()


def test_without_a_database_the_error_says_how_to_give_one():
    with pytest.raises(LookupError, match="database=db"):
        lifespan(tornado.web.Application())


async def test_peewee_async_tornado_example_shape_works(db):
    """peewee-async 0.6's Tornado example (docs 4.3): a Manager on the application,
    async verbs, a task with a transaction of its own, HTTPError(404)."""

    class TestNameModel(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = db

    objects = peewee_async.Manager(db)
    await db.acreate_tables([TestNameModel])
    for i in (1, 2, 3):
        await objects.create(TestNameModel, name=f"TestNameModel id={i}")  # ids 1, 2, 3

    class RootHandler(DatabaseHandlerMixin, tornado.web.RequestHandler):
        async def post(self) -> None:
            name = self.get_argument("name")
            obj = await self.application.objects.create(TestNameModel, name=name)  # type: ignore[attr-defined]
            self.write({"id": obj.id, "name": obj.name})

        async def get(self) -> None:
            obj_id = self.get_argument("id", None)
            if not obj_id:
                self.write("Please provide the 'id' query argument, i.e. ?id=1")
                return
            try:
                obj = await self.application.objects.get(TestNameModel, id=obj_id)  # type: ignore[attr-defined]
                self.write({"id": obj.id, "name": obj.name})
            except TestNameModel.DoesNotExist:
                raise tornado.web.HTTPError(404, "Object not found!") from None

    class CreateHandler(DatabaseHandlerMixin, tornado.web.RequestHandler):
        async def get(self) -> None:
            task = asyncio.get_running_loop().create_task(self.get_or_create())
            obj = await task
            self.write({"obj": str(obj.name), "in_use": in_use(db)})

        async def get_or_create(self) -> Any:
            obj_id = self.get_argument("id", None)
            async with self.application.objects.atomic():  # type: ignore[attr-defined]
                obj, _created = await self.application.objects.get_or_create(  # type: ignore[attr-defined]
                    TestNameModel, id=obj_id, defaults={"name": f"TestNameModel id={obj_id}"}
                )
                return obj

    app = tornado.web.Application(database=db)
    app.objects = objects  # type: ignore[attr-defined]
    # The example's host pattern "" matches no host on Tornado 6 (it becomes "$").
    app.add_handlers(r".*", [(r"/", RootHandler), (r"/create", CreateHandler)])
    try:
        async with serving(app) as url, one_socket(url) as http:
            assert (await http.get("/", params={"id": 2})).json() == {
                "id": 2, "name": "TestNameModel id=2"
            }  # fmt: skip
            assert (await http.get("/", params={"id": 9})).status_code == 404
            assert "provide" in (await http.get("/")).text
            created = await http.post("/", data={"name": "posted"})
            assert created.json()["name"] == "posted"
            made = await http.get("/create", params={"id": 100})
            assert made.json() == {"obj": "TestNameModel id=100", "in_use": 1}
        assert await db.count(TestNameModel.select()) == 5
        await settle(db)
        assert in_use(db) == 0
    finally:
        await db.adrop_tables([TestNameModel])
