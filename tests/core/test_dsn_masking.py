"""Passwords never reach pool names, ``PoolTimeout`` messages or logs, in any DSN form (S10)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from fastpeewee import AsyncPostgresqlDatabase, PoolTimeout
from fastpeewee.db_url import connect
from fastpeewee.errors import mask_password

SECRET = "s3cret-Pw"

MASKED = [
    ("postgresql://ann:s3cret-Pw@db:5432/app", "postgresql://ann:***@db:5432/app"),
    ("postgres://ann:s3cret-Pw@db/app", "postgres://ann:***@db/app"),
    ("mysql://root:s3cret-Pw@127.0.0.1:3306/app", "mysql://root:***@127.0.0.1:3306/app"),
    ("mysql+pymysql://root:s3cret-Pw@h/app", "mysql+pymysql://root:***@h/app"),
    ("postgresql://:s3cret-Pw@db/app", "postgresql://:***@db/app"),
    ("postgresql://ann@db/app?password=s3cret-Pw", "postgresql://ann@db/app?password=***"),
    ("postgresql://ann@db/app?sslmode=require&password=s3cret-Pw&connect_timeout=3",
     "postgresql://ann@db/app?sslmode=require&password=***&connect_timeout=3"),
    ("postgresql://ann@db/app?PASSWORD=s3cret-Pw#frag", "postgresql://ann@db/app?PASSWORD=***#frag"),
    ("mysql://root@h/app?passwd=s3cret-Pw", "mysql://root@h/app?passwd=***"),
    ("postgresql:///app?host=/tmp&sslpassword=s3cret-Pw", "postgresql:///app?host=/tmp&sslpassword=***"),
    ("host=db user=ann password=s3cret-Pw dbname=app", "host=db user=ann password=*** dbname=app"),
    ("host=db password = s3cret-Pw dbname=app", "host=db password = *** dbname=app"),
    ("host=db password='s3cret-Pw with \\' spaces' dbname=app", "host=db password=*** dbname=app"),
    ("host=db password='s3cret-Pw", "host=db password=***"),  # an unclosed quote
    ("{'user': 'ann', 'password': 's3cret-Pw'}", "{'user': 'ann', 'password': ***}"),
    ('{"user": "ann", "password": "s3cret-Pw"}', '{"user": "ann", "password": ***}'),
    # Characters a careless URL leaves unescaped still belong to the password.
    ("postgresql://ann:s3cret-Pw/x@db/app", "postgresql://ann:***@db/app"),
    ("postgresql://ann:p@ss:s3cret-Pw@db/app", "postgresql://ann:***@db/app"),
    ("postgresql://ann:s3cret-Pw%40x@db/app", "postgresql://ann:***@db/app"),
    ("pool 'AsyncPostgresqlDatabase('postgresql://a:s3cret-Pw@h/d')' is closed",
     "pool 'AsyncPostgresqlDatabase('postgresql://a:***@h/d')' is closed"),
]  # fmt: skip

UNCHANGED = [
    "postgresql://ann@db/app",
    "postgresql://db:5432/app",
    "postgresql://ann@db/app?sslmode=require",
    "app.db",
    ":memory:",
    "file:app.db?mode=ro&cache=shared",
    "no connection from pool 'x' after 0.50 s (pool_size=2, in_use=2, waiting=0)",
]


@pytest.mark.parametrize(("dsn", "masked"), MASKED, ids=[m for m, _ in MASKED])
def test_every_form_of_password_is_masked(dsn, masked):
    assert mask_password(dsn) == masked
    assert SECRET not in mask_password(dsn)


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_a_password_is_left_alone(text):
    assert mask_password(text) == text


@pytest.mark.parametrize(
    "text",
    ["://a:" * 50_000, "password='" * 40_000, "a.b-" * 100_000, "x://u:p@" * 40_000,
     "password=" * 40_000, "'password': '" * 30_000],
    ids=["urls", "unclosed-quotes", "dotted", "userinfos", "keys", "dict-keys"],
)  # fmt: skip
def test_masking_takes_linear_time(text):
    # Error messages can quote user input at length (PostgreSQL echoes a value
    # it cannot parse): masking must never be quadratic in it.
    started = time.perf_counter()
    mask_password(text)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann@127.0.0.1:1/app?password=s3cret-Pw",
        "postgres://ann:s3cret-Pw@127.0.0.1:1/app",
        "mysql://ann:s3cret-Pw@127.0.0.1:1/app",
        "mysql://ann@127.0.0.1:1/app?passwd=s3cret-Pw",
    ],
)
def test_db_url_keeps_the_password_out_of_pool_names(url):
    db = connect(url)
    assert SECRET not in db._pool_name()
    assert db.connect_params.get("password") == SECRET  # still used to connect


@pytest.mark.backends("postgres")
@pytest.mark.parametrize(
    "form", ["query", "userinfo"], ids=["dsn-query-password", "dsn-userinfo-password"]
)
async def test_pool_timeouts_and_logs_never_show_the_password(
    backend, form, postgres_server, caplog
):
    # The test cluster trusts every local user: any password is accepted.
    host = f"127.0.0.1:{postgres_server.port}/{postgres_server.database}"
    dsn = {
        "query": f"postgresql://{postgres_server.user}@{host}?password={SECRET}",
        "userinfo": f"postgresql://{postgres_server.user}:{SECRET}@{host}",
    }[form]
    db = AsyncPostgresqlDatabase(dsn, pool_size=1, acquire_timeout=0.2)
    caplog.set_level(logging.DEBUG)
    errors: list[Any] = []
    try:
        errors.append(await _time_out_async(db))
        errors.append(await asyncio.to_thread(_time_out_sync, db))
    finally:
        await db.close_pool()
        await asyncio.to_thread(db.close_all)
    assert [type(e) for e in errors] == [PoolTimeout, PoolTimeout]
    for error in errors:
        assert "after 0.20 s" in str(error)
        assert SECRET not in str(error) and SECRET not in repr(error.args)
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def _time_out_async(db: AsyncPostgresqlDatabase) -> BaseException:
    held, done = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db:
            await db.aexecute_sql("SELECT 1")
            held.set()
            await done.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    try:
        await db.aexecute_sql("SELECT 1")
    except PoolTimeout as exc:
        return exc
    finally:
        done.set()
        await task
    raise AssertionError("no PoolTimeout")


def _time_out_sync(db: AsyncPostgresqlDatabase) -> BaseException:
    import threading

    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with db.connection_context():
            db.execute_sql("SELECT 1")
            held.set()
            done.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        db.execute_sql("SELECT 1")
    except PoolTimeout as exc:
        return exc
    finally:
        done.set()
        thread.join()
    raise AssertionError("no PoolTimeout")


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://ann@127.0.0.1:1/app?password=12345678", "12345678"),
        ("postgresql://ann@127.0.0.1:1/app?password=true", "true"),
        ("postgresql://ann@127.0.0.1:1/app?password=1.5", "1.5"),
        ("mysql://ann@127.0.0.1:1/app?passwd=none", "none"),
        ("postgresql://ann@127.0.0.1:1/app?password=p%26w%3D", "p&w="),
    ],
)
def test_a_password_in_the_query_string_stays_text(url, password):
    # playhouse's parse() turns query values that look like numbers, booleans or
    # None into them; a password is text, whatever it looks like.
    db = connect(url)
    assert db.connect_params["password"] == password
