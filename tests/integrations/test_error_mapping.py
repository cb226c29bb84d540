"""Which database errors an app answers 503 (retry later) and which stay a 500 (S10, R1, R9).

The classification (``fastpeewee.errors.is_unavailable``) is checked on the
drivers' own exceptions; the answers are checked through a real app, with
real faults: a server nobody listens on, connections killed by the server
mid-transaction and mid-query, a transaction lost, a locked SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from fastpeewee import (
    AsyncDatabase,
    AsyncMySQLDatabase,
    AsyncPostgresqlDatabase,
    AsyncSqliteDatabase,
    DatabaseMiddleware,
    PoolClosed,
    PoolTimeout,
    TooManyWaiters,
    TransactionLost,
    errors,
    to_pydantic,
)
from fastpeewee.errors import translate_errors
from fastpeewee.integrations.fastapi import add_exception_handlers

from ..conftest import AnyDatabase, settle
from ..faults.test_faults import PIDS, SLEEP, SLEEPERS, kill
from ..models import Tweet, User
from ..servers import free_port
from .support import client

SECRET = "s3cret-Pw"
UNAVAILABLE = {"detail": "The database is unavailable; retry shortly."}


# -- the classification ---------------------------------------------------------


def translated(exc: BaseException) -> BaseException:
    """``exc`` as the library raises it: translated to peewee's class, ``from`` the original."""
    try:
        with translate_errors():
            raise exc
    except BaseException as raised:
        return raised


def _asyncpg(name: str, message: str = "x") -> BaseException:
    exceptions = pytest.importorskip("asyncpg.exceptions")
    return getattr(exceptions, name)(message)


def _psycopg(name: str, message: str = "x") -> BaseException:
    psycopg = pytest.importorskip("psycopg")
    return getattr(psycopg.errors, name)(message)


def _pymysql(name: str, code: int, message: str = "x") -> BaseException:
    pymysql = pytest.importorskip("pymysql")
    return getattr(pymysql.err, name)(code, message)


def _asyncmy(name: str, code: int, message: str = "x") -> BaseException:
    errors = pytest.importorskip("asyncmy.errors")
    return getattr(errors, name)(code, message)


DRIVER_ERRORS: list[tuple[str, Callable[[], BaseException], bool]] = [
    # Nobody listening, the link cut, a timeout: the network.
    ("refused", lambda: ConnectionRefusedError(111, "Connect call failed"), True),
    ("reset", lambda: ConnectionResetError(104, "Connection reset by peer"), True),
    ("timeout", lambda: TimeoutError(), True),
    ("eof", lambda: EOFError(), True),
    # asyncpg
    ("asyncpg-closed", lambda: _asyncpg("InterfaceError",
                                        "cannot perform operation: connection is closed"), True),
    ("asyncpg-closed-mid-op", lambda: _asyncpg("ConnectionDoesNotExistError"), True),
    ("asyncpg-admin-shutdown", lambda: _asyncpg("AdminShutdownError"), True),
    ("asyncpg-crash-shutdown", lambda: _asyncpg("CrashShutdownError"), True),
    ("asyncpg-starting-up", lambda: _asyncpg("CannotConnectNowError"), True),
    ("asyncpg-too-many", lambda: _asyncpg("TooManyConnectionsError"), True),
    ("asyncpg-link-failure", lambda: _asyncpg("ConnectionFailureError"), True),
    ("asyncpg-syntax", lambda: _asyncpg("PostgresSyntaxError"), False),
    ("asyncpg-no-table", lambda: _asyncpg("UndefinedTableError"), False),
    ("asyncpg-bad-password", lambda: _asyncpg("InvalidPasswordError"), False),
    ("asyncpg-no-database", lambda: _asyncpg("InvalidCatalogNameError"), False),
    ("asyncpg-statement-timeout", lambda: _asyncpg("QueryCanceledError"), False),
    ("asyncpg-deadlock", lambda: _asyncpg("DeadlockDetectedError"), False),
    ("asyncpg-protocol", lambda: _asyncpg("ProtocolViolationError"), False),
    ("asyncpg-busy", lambda: _asyncpg("InterfaceError", "cannot perform operation: another "
                                                        "operation is in progress"), False),
    # psycopg (threads)
    ("psycopg-refused", lambda: _psycopg("OperationalError", "connection failed: Connection "
                                                             "refused"), True),
    ("psycopg-admin-shutdown", lambda: _psycopg("AdminShutdown"), True),
    ("psycopg-starting-up", lambda: _psycopg("CannotConnectNow"), True),
    ("psycopg-too-many", lambda: _psycopg("TooManyConnections"), True),
    ("psycopg-closed", lambda: _psycopg("InterfaceError", "the connection is closed"), True),
    ("psycopg-syntax", lambda: _psycopg("SyntaxError"), False),
    ("psycopg-statement-timeout", lambda: _psycopg("QueryCanceled"), False),
    ("psycopg-lock-not-available", lambda: _psycopg("LockNotAvailable"), False),
    # MySQL / MariaDB, both drivers
    *[(f"{name}-{code}", (lambda f=f, code=code: f("OperationalError", code)), True)
      for name, f in (("pymysql", _pymysql), ("asyncmy", _asyncmy))
      for code in (2002, 2003, 2006, 2013, 1927, 1053, 1040, 4031)],
    ("pymysql-closed", lambda: _pymysql("InterfaceError", 0, ""), True),
    ("pymysql-syntax", lambda: _pymysql("ProgrammingError", 1064), False),
    ("pymysql-no-table", lambda: _pymysql("ProgrammingError", 1146), False),
    ("pymysql-access-denied", lambda: _pymysql("OperationalError", 1045), False),
    ("pymysql-unknown-database", lambda: _pymysql("OperationalError", 1049), False),
    ("pymysql-lock-wait", lambda: _pymysql("OperationalError", 1205), False),
    ("pymysql-deadlock", lambda: _pymysql("OperationalError", 1213), False),
    ("asyncmy-unknown-column", lambda: _asyncmy("OperationalError", 1054), False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "unavailable"),
    [(make, unavailable) for _, make, unavailable in DRIVER_ERRORS],
    ids=[name for name, _, _ in DRIVER_ERRORS],
)
def test_driver_errors_that_mean_the_database_is_unavailable(make, unavailable):
    exc = make()
    assert errors.is_unavailable(exc) is unavailable
    wrapped = translated(exc)
    assert isinstance(wrapped, peewee.PeeweeException)
    assert errors.is_unavailable(wrapped) is unavailable


def sqlite_error(tmp_path: Path, sql: str) -> sqlite3.Error:
    conn = sqlite3.connect(tmp_path / "app.db", timeout=0)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError(f"{sql!r} did not fail")


def test_sqlite_programming_errors_are_not_unavailability(tmp_path):
    # SQLite reports these as OperationalError, like a locked file.
    for sql in ("SELEC 1", "SELECT * FROM no_such_table", "SELECT no_such_column FROM t",
                "INSERT INTO t VALUES (1, 2)"):  # fmt: skip
        exc = sqlite_error(tmp_path, sql)
        assert isinstance(exc, sqlite3.OperationalError)
        assert not errors.is_unavailable(exc), sql
        assert not errors.is_unavailable(translated(exc)), sql


def test_sqlite_locked_or_unopenable_files_are_unavailability(tmp_path):
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(tmp_path / "missing" / "app.db")
    assert errors.is_unavailable(translated(cannot_open.value))
    holder = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = sqlite_error(tmp_path, "SELECT 1 FROM sqlite_master")
    finally:
        holder.close()
    assert "locked" in str(locked)
    assert errors.is_unavailable(translated(locked))


def test_fastpeewee_errors():
    assert errors.is_unavailable(TransactionLost("lost"))
    assert errors.is_unavailable(PoolTimeout("no connection"))
    assert errors.is_unavailable(TooManyWaiters("queue full"))
    assert errors.is_unavailable(PoolClosed("closed"))
    # peewee's own misuse errors are bugs, not outages.
    assert not errors.is_unavailable(peewee.OperationalError("Connection already opened."))
    assert not errors.is_unavailable(peewee.InterfaceError("Query must be bound to a database"))
    assert not errors.is_unavailable(ValueError("not a database error"))


def test_only_causes_count_not_context():
    # An outage handled earlier in the same except block is not this error's cause.
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError:
            raise peewee.OperationalError("Connection already opened.")  # noqa: B904
    except peewee.OperationalError as exc:
        assert isinstance(exc.__context__, OSError)
        assert not errors.is_unavailable(exc)


# -- through an app -----------------------------------------------------------------


async def own_pid(db: AsyncDatabase) -> int:
    query = PIDS["mysql" if isinstance(db, AsyncMySQLDatabase) else "postgres"]
    return int((await db.aexecute_sql(query)).fetchone()[0])  # type: ignore[index]


def fault_app(db: AsyncDatabase) -> FastAPI:
    """Routes that read, write, and kill their own connection at chosen points."""
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    add_exception_handlers(app, retry_after=2)

    @app.get("/count")
    async def count() -> int:
        return await db.count(User.select())

    @app.get("/count-sync")
    def count_sync() -> int:
        return int(User.select().count())

    @app.post("/killed-mid-transaction")
    async def killed_mid_transaction() -> None:
        async with db.atomic():
            await User.acreate(username="first")
            await kill(db, await own_pid(db))
            await asyncio.sleep(0.1)
            await User.acreate(username="second")  # the connection is gone

    @app.post("/killed-mid-transaction-sync")
    def killed_mid_transaction_sync() -> None:
        query = PIDS["mysql" if isinstance(db, AsyncMySQLDatabase) else "postgres"]
        with db.atomic():
            User.create(username="first")
            asyncio.run(kill(db, db.execute_sql(query).fetchone()[0]))  # type: ignore[index]
            time.sleep(0.1)
            User.create(username="second")

    @app.post("/transaction-lost")
    async def transaction_lost() -> None:
        async with db.atomic():
            await User.acreate(username="first")
            await kill(db, await own_pid(db))
            await asyncio.sleep(0.1)
            with contextlib.suppress(peewee.DatabaseError, peewee.InterfaceError):
                await User.acreate(username="second")
            await User.acreate(username="third")  # TransactionLost: no silent reconnect

    @app.get("/sleep")
    async def sleep() -> None:
        backend = "mysql" if isinstance(db, AsyncMySQLDatabase) else "postgres"
        await db.aexecute_sql(SLEEP[backend])

    @app.get("/bug/{kind}")
    async def bug(kind: str) -> None:
        sql = {"syntax": "SELEC 1", "table": "SELECT * FROM no_such_table",
               "column": "SELECT no_such_column FROM user"}[kind]  # fmt: skip
        await db.aexecute_sql(sql)

    return app


def assert_unavailable(response: httpx.Response, *hidden: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    assert response.json() == UNAVAILABLE
    for text in ("SELECT", "INSERT", "127.0.0.1", SECRET, *hidden):
        assert text not in response.text


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="fastpeewee.fastapi")
    return caplog


def down_database(backend: str, tmp_path: Path) -> AnyDatabase:
    """A database nobody serves: a port nobody listens on, a file that cannot be opened."""
    port = free_port()
    options: dict[str, Any] = {"pool_size": 2, "acquire_timeout": 2.0}
    if backend == "postgres":
        dsn = f"postgresql://ann@127.0.0.1:{port}/app?password={SECRET}"
        return AsyncPostgresqlDatabase(dsn, **options)
    if backend == "mysql":
        return AsyncMySQLDatabase(
            "app", host="127.0.0.1", port=port, user="ann", password=SECRET, **options
        )
    return AsyncSqliteDatabase(str(tmp_path / "missing-dir" / "app.db"), **options)


async def test_a_database_that_is_down_answers_503(backend, tmp_path, warnings_log):
    db = down_database(backend, tmp_path)
    User.bind(db)
    try:
        async with client(fault_app(db)) as http:
            for path in ("/count", "/count-sync"):
                started = time.monotonic()
                response = await http.get(path)
                assert time.monotonic() - started < 2.0, path  # refused at once, no pool wait
                assert_unavailable(response, "missing-dir")
    finally:
        await db.close_pool()
        await asyncio.to_thread(db.close_all)
    records = [r for r in warnings_log.records if r.name == "fastpeewee.fastapi"]
    assert len(records) == 2
    assert all("GET /count" in r.getMessage() for r in records)
    # The details are in the log, the password is not.
    detail = {"postgres": "Connect call failed", "mysql": "Can't connect",
              "sqlite": "unable to open"}[backend]  # fmt: skip
    assert detail in records[0].getMessage()
    assert SECRET not in warnings_log.text


async def test_a_locked_sqlite_file_answers_503(tmp_path):
    db = AsyncSqliteDatabase(str(tmp_path / "app.db"), timeout=0)
    User.bind(db)
    await db.acreate_tables([User])
    holder = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        async with client(fault_app(db)) as http:
            assert_unavailable(await http.get("/count"))
            holder.rollback()
            assert (await http.get("/count")).status_code == 200
    finally:
        holder.close()
        await db.close_pool()
        db.close_all()


@pytest.fixture
async def fault_db(db: AsyncDatabase) -> AsyncIterator[AsyncDatabase]:
    yield db
    await settle(db)


@pytest.mark.backends("postgres", "mysql")
@pytest.mark.parametrize(
    "path",
    ["/killed-mid-transaction", "/killed-mid-transaction-sync", "/transaction-lost"],
    ids=["async", "sync", "transaction-lost"],
)
async def test_a_connection_killed_in_a_transaction_answers_503(
    fault_db, backend, path, warnings_log
):
    db = fault_db
    async with client(fault_app(db)) as http:
        assert_unavailable(await http.post(path))
        # Nothing was committed, and the next request is served.
        assert (await http.get("/count")).json() == 0
    assert await db.count(User.select()) == 0
    [record] = [r for r in warnings_log.records if r.name == "fastpeewee.fastapi"]
    if path == "/transaction-lost":
        assert "TransactionLost" in record.getMessage()


@pytest.mark.backends("postgres", "mysql")
async def test_a_connection_killed_mid_query_answers_503(fault_db, backend):
    db = fault_db
    async with client(fault_app(db)) as http:
        sleeping = asyncio.create_task(http.get("/sleep"))
        for _ in range(100):
            rows = (await db.aexecute_sql(SLEEPERS[backend])).fetchall()
            if rows:
                break
            await asyncio.sleep(0.02)
        await kill(db, rows[0][0])
        assert_unavailable(await sleeping)
        assert (await http.get("/count")).status_code == 200


@pytest.mark.parametrize("kind", ["syntax", "table", "column"])
async def test_programming_errors_stay_500(db, backend, kind):
    # On SQLite these are OperationalErrors too: still bugs, not outages.
    async with client(fault_app(db)) as http:
        response = await http.get(f"/bug/{kind}")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert "SELEC" not in response.text and "no_such" not in response.text


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=50)  # a constrained str: pydantic refuses surrogates


# A TextField: no length limit, so only the generated schema's own check stands
# between a lone surrogate and the driver's UTF-8 encoder.
TweetCreate = to_pydantic(Tweet, variant="create", model_name="TweetCreate")


async def test_a_validation_error_echoing_a_lone_surrogate_is_a_422():
    app = FastAPI()
    add_exception_handlers(app)

    @app.post("/things")
    async def create(thing: Strict) -> str:
        return thing.name

    async with client(app) as http:
        bad_key = await http.post(
            "/things", content=b'{"name": "ok", "\\ud800": 1}',
            headers={"content-type": "application/json"},
        )  # fmt: skip
        bad_value = await http.post(
            "/things", content=b'{"name": "x\\udfffy"}',
            headers={"content-type": "application/json"},
        )  # fmt: skip
    assert bad_key.status_code == 422, bad_key.text
    # pydantic refuses the key itself: it echoes it back, escaped.
    assert bad_key.json()["detail"][0]["input"] == "\\ud800"
    assert bad_value.status_code == 422, bad_value.text
    assert bad_value.json()["detail"][0]["input"] == "x\\udfffy"
    assert bad_value.json()["detail"][0]["loc"] == ["body", "name"]


async def test_text_no_driver_can_encode_is_a_422_from_a_generated_schema(db, backend):
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    add_exception_handlers(app)

    @app.post("/tweets", status_code=201)
    async def create(tweet: TweetCreate) -> int:
        return (await Tweet.acreate(**tweet.model_dump())).id

    user = await User.acreate(username="ann")
    bodies = [b'{"user_id": %d, "content": "\\ud800"}', b'{"user_id": %d, "content": "a\\udfffb"}',
              b'{"user_id": %d, "content": "\xed\xa0\x80"}']  # fmt: skip
    async with client(app) as http:
        for body in bodies:
            response = await http.post(
                "/tweets", content=body % user.id, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (body, response.text)
            assert [e["loc"] for e in response.json()["detail"]] == [["body", "content"]]
        ok = await http.post("/tweets", json={"user_id": user.id, "content": "\U0001f40d \u05d0"})
        assert ok.status_code == 201, ok.text
    assert [t.content for t in await db.list(Tweet.select())] == ["\U0001f40d \u05d0"]


async def test_pool_errors_keep_their_answers():
    app = FastAPI()
    add_exception_handlers(app, retry_after=2)
    raised = {"timeout": PoolTimeout("x"), "waiters": TooManyWaiters("x"),
              "closed": PoolClosed("x")}  # fmt: skip

    @app.get("/{kind}")
    async def fail(kind: str) -> None:
        raise raised[kind]

    async with client(app) as http:
        answers = {kind: await http.get(f"/{kind}") for kind in raised}
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(raised, 503)
    assert answers["timeout"].json() == {"detail": "The database is busy; retry shortly."}
    assert answers["closed"].json() == {"detail": "The database is shutting down."}
    assert all(r.headers["retry-after"] == "2" for r in answers.values())
