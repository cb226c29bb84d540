"""The framework-neutral core: request_scope, database_lifespan, error_reply, warm_pool."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import peewee
import pytest

from fastpeewee import PoolClosed, PoolTimeout, TooManyWaiters, TransactionLost
from fastpeewee.integrations.core import (
    ERROR_STATUSES,
    ErrorReply,
    database_lifespan,
    error_reply,
    request_scope,
)

from ..conftest import make_database, settle
from ..models import MODELS, User
from .support import in_use, opened, usernames_outside

SECRET = "s3cret-Pw"
UNSTORABLE = "A value in the request cannot be stored by the database."
ROOT = Path(__file__).resolve().parents[2]


async def test_one_scope_shares_one_connection_with_tasks_and_threads(db):
    async def child() -> int:
        await db.count(User.select())
        return in_use(db)

    def in_thread() -> int:
        User.create(username="bob")
        return in_use(db)

    async with request_scope([db]):
        await User.acreate(username="ann")
        seen = [in_use(db), await asyncio.create_task(child()), await asyncio.to_thread(in_thread)]
    assert seen == [1, 1, 1]
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == {"ann", "bob"}


async def test_concurrent_scopes_never_share_and_idle_ones_take_nothing(db):
    before = opened(db)
    async with request_scope([db]):
        pass  # never queries: takes no slot
    assert opened(db) == before and in_use(db) == 0
    arrived, peak, gate = 0, 0, asyncio.Event()

    async def one() -> None:
        nonlocal arrived, peak
        async with request_scope([db]):
            await db.count(User.select())
            arrived += 1
            if arrived == 3:
                peak = in_use(db)
                gate.set()
            await asyncio.wait_for(gate.wait(), 5)

    await asyncio.gather(one(), one(), one())
    assert peak == 3
    await settle(db)
    assert in_use(db) == 0


async def test_two_databases_atomic_commits_both_or_neither(db, request, tmp_path):
    (tmp_path / "other").mkdir()
    other = make_database("sqlite", request, tmp_path / "other")
    await other.aexecute_sql("CREATE TABLE note (text VARCHAR(20) NOT NULL)")
    try:
        async with request_scope([db, other], atomic=True):
            await User.acreate(username="kept")
            await other.aexecute_sql("INSERT INTO note VALUES ('kept')")
            assert [in_use(db), in_use(other)] == [1, 1]
        with pytest.raises(RuntimeError):
            async with request_scope([db, other], atomic=True):
                await User.acreate(username="lost")
                await other.aexecute_sql("INSERT INTO note VALUES ('lost')")
                raise RuntimeError("fail")
        await settle(db)
        await settle(other)
        assert in_use(db) == in_use(other) == 0
        assert await usernames_outside(db) == {"kept"}
        rows = await other.aexecute_sql("SELECT text FROM note")
        assert [tuple(r) for r in rows.fetchall()] == [("kept",)]
    finally:
        await other.close_pool()
        other.close_all()


async def test_an_exception_or_a_cancellation_releases_and_rolls_back(db):
    with pytest.raises(ValueError):
        async with request_scope([db]):
            await db.aexecute_sql("BEGIN")
            await User.acreate(username="raised")
            raise ValueError("boom")
    started = asyncio.Event()

    async def cancelled() -> None:
        async with request_scope([db]):
            await db.aexecute_sql("BEGIN")
            await User.acreate(username="cancelled")
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled())
    await asyncio.wait_for(started.wait(), 5)
    assert in_use(db) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(db)
    assert in_use(db) == 0
    assert await usernames_outside(db) == set()


async def test_hold_false_gives_the_connection_back_between_statements(db):
    async with request_scope([db], hold=False):
        await db.count(User.select())
        between = in_use(db)
        async with db.atomic():
            await User.acreate(username="ann")
            inside = in_use(db)
    async with request_scope([db], hold=True):
        await db.count(User.select())
        held = in_use(db)
    assert (between, inside, held) == (0, 1, 1)


@pytest.mark.parametrize("with_app", [True, False])
async def test_lifespan_creates_tables_warms_and_closes(backend, request, tmp_path, with_app):
    db = make_database(backend, request, tmp_path, pool_min_size=3)
    db.bind(MODELS)
    await db.adrop_tables(MODELS, safe=True)
    await db.close_pool()
    lifespan = database_lifespan(db, MODELS)
    async with lifespan(object()) if with_app else lifespan():
        assert set(await db.run(db.get_tables)) >= {"user", "tweet"}
        stats = [s for s in db.pool_stats() if "[sync]" not in s.name]
        assert [(s.idle, s.in_use) for s in stats] == [(3, 0)]
    assert db.pool_stats() == []
    with pytest.raises(RuntimeError, match="boom"):
        async with lifespan():
            assert db.pool_stats() != []
            raise RuntimeError("boom")
    assert db.pool_stats() == []  # closed even though the body raised
    db.close_all()


async def test_warm_pool_opens_pool_min_size_connections(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_min_size=2, pool_size=4)
    try:
        assert await db.warm_pool() == 2
        assert await db.warm_pool() == 2  # connections already open count
        stats = [s for s in db.pool_stats() if "[sync]" not in s.name]
        assert [(s.opened, s.in_use) for s in stats] == [(2, 0)]
    finally:
        await db.close_pool()
        db.close_all()


class Thing(peewee.Model):
    pass


@pytest.mark.parametrize(
    ("exc", "status", "detail"),
    [
        (User.DoesNotExist("x"), 404, "User not found"),
        (Thing.DoesNotExist("x"), 404, "Thing not found"),
        (peewee.DoesNotExist("x"), 404, "Object not found"),
        (peewee.IntegrityError("UNIQUE failed"), 409, "The request conflicts with existing data."),
        (peewee.DataError("out of range"), 422, UNSTORABLE),
        (PoolTimeout("x"), 503, "The database is busy; retry shortly."),
        (TooManyWaiters("x"), 503, "The database is busy; retry shortly."),
        (PoolClosed("x"), 503, "The database is shutting down."),
        (TransactionLost("x"), 503, "The database is unavailable; retry shortly."),
    ],
)  # fmt: skip
def test_error_reply_maps_each_class(exc, status, detail):
    reply = error_reply(exc, retry_after=7)
    assert reply is not None
    assert (reply.status, reply.detail, reply.body) == (status, detail, {"detail": detail})
    assert dict(reply.headers) == ({"Retry-After": "7"} if status == 503 else {})


@pytest.mark.parametrize(
    "exc",
    [ValueError("x"), RuntimeError("x"), peewee.ProgrammingError("syntax error"),
     peewee.OperationalError("no such table: nope"), KeyError("x")],
)  # fmt: skip
def test_error_reply_leaves_other_errors_to_the_framework(exc):
    assert error_reply(exc) is None


def test_every_mapped_class_is_covered_by_the_table():
    statuses = dict(ERROR_STATUSES)
    assert statuses[peewee.DoesNotExist] == 404 and statuses[peewee.IntegrityError] == 409
    assert statuses[peewee.DataError] == 422 and {503} <= set(statuses.values())
    assert ErrorReply(418, "teapot").body == {"detail": "teapot"}


def test_a_password_never_reaches_the_detail_and_is_masked_in_the_log(caplog):
    dsn = f"postgresql://ann:{SECRET}@127.0.0.1:1/app"
    log = logging.getLogger("fastpeewee.test_core")
    with caplog.at_level(logging.INFO, logger="fastpeewee.test_core"):
        busy = error_reply(PoolTimeout(f"no connection from {dsn}"), request="GET /x", log=log)
        clash = error_reply(peewee.IntegrityError(f"dup key; password={SECRET}"), log=log)
    assert busy is not None and clash is not None
    assert SECRET not in busy.detail + clash.detail + str(busy.headers)
    assert SECRET not in caplog.text
    assert "postgresql://ann:***@127.0.0.1:1/app" in caplog.text
    assert "password=***" in caplog.text
    assert "on GET /x" in caplog.text


async def test_a_server_nobody_listens_on_is_a_503_without_the_password(
    backend, request, tmp_path
):
    if backend == "sqlite":
        pytest.skip("SQLite has no server to be down")
    from ..servers import free_port

    good = make_database(backend, request, tmp_path)
    params = dict(good.connect_params, port=free_port(), password=SECRET)
    down = type(good)(good.database, **{**params, "acquire_timeout": 1.0})
    try:
        with pytest.raises(Exception) as raised:
            await down.aexecute_sql("SELECT 1")
        reply = error_reply(raised.value, retry_after=2)
        assert reply is not None and reply.status == 503
        assert reply.headers == {"Retry-After": "2"}
        assert SECRET not in reply.detail
    finally:
        await down.close_pool()
        down.close_all()
        good.close_all()


def test_the_core_imports_without_any_web_framework(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, sys
        from importlib.abc import MetaPathFinder

        BLOCKED = {"fastapi", "starlette", "litestar", "quart", "aiohttp", "sanic", "tornado",
                   "flask", "django", "bottle", "falcon", "pyramid", "cherrypy", "werkzeug",
                   "uvicorn", "httpx", "pydantic"}

        class Refuse(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked")
                return None

        sys.meta_path.insert(0, Refuse())
        import fastpeewee, fastpeewee.integrations.core
        import fastpeewee.integrations.asgi, fastpeewee.integrations.wsgi
        from fastpeewee import AsyncSqliteDatabase, AsyncModel
        from fastpeewee.integrations.core import database_lifespan, error_reply, request_scope
        import peewee

        class Note(AsyncModel):
            text = peewee.TextField()

        db = AsyncSqliteDatabase(sys.argv[1])
        db.bind([Note])

        async def main():
            async with database_lifespan(db, [Note])():
                async with request_scope([db], atomic=True):
                    await Note.acreate(text="hi")
                print(await db.count(Note.select()), db.pool_stats() != [])
            print(db.pool_stats() == [], error_reply(Note.DoesNotExist()).status)
            loaded = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
            print(loaded)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "core.db")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["1 True", "True 404", "[]"]
