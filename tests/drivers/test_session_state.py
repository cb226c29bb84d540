"""Session state never leaks from one owner of a pooled connection to the next (R7).

A connection whose session was changed (SET, temp tables, LISTEN, session
locks, user variables, PRAGMA x = y, ATTACH) is closed when it goes back to
the pool; a connection that only ran ordinary statements is reused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import pytest

from fastpeewee.drivers.session import changes_session

from ..conftest import make_database, settle


async def one(db: Any, sql: str) -> Any:
    row = (await db.aexecute_sql(sql)).fetchone()
    return None if row is None else row[0]


SESSION_ID = {
    "sqlite": None,  # no server session: pool counters tell reuse apart
    "postgres": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
}

DIRTY = {
    "sqlite": [
        "PRAGMA cache_size = 123",
        "CREATE TEMP TABLE scratch (x)",
        "ATTACH DATABASE ':memory:' AS side",
    ],
    "postgres": [
        "SET application_name = 'dirty'",
        "SET TIME ZONE 'Asia/Tokyo'",
        "SELECT pg_advisory_lock(4242)",
        "CREATE TEMP TABLE scratch (x int)",
        "LISTEN fastpeewee_channel",
    ],
    "mysql": [
        "SET @fastpeewee_x = 42",
        "SET time_zone = '+05:00'",
        "SELECT GET_LOCK('fastpeewee_lock', 0)",
        "CREATE TEMPORARY TABLE scratch (x int)",
    ],
}


async def clean_session(db: Any, backend: str) -> None:
    """Assert the current task's connection shows none of DIRTY's effects."""
    if backend == "sqlite":
        assert await one(db, "PRAGMA cache_size") != 123
        assert await one(db, "SELECT count(*) FROM temp.sqlite_master") == 0
        names = [r[1] for r in (await db.aexecute_sql("PRAGMA database_list")).fetchall()]
        assert "side" not in names
    elif backend == "postgres":
        assert await one(db, "SHOW application_name") != "dirty"
        assert await one(db, "SHOW TimeZone") != "Asia/Tokyo"
        assert await one(db, "SELECT to_regclass('pg_temp.scratch')") is None
        assert await one(db, "SELECT count(*) FROM pg_listening_channels()") == 0
        # The old session's lock goes once the server has seen it close.
        for _ in range(200):
            if await one(db, "SELECT pg_try_advisory_lock(4242)"):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the advisory lock of the closed session is still held")
        await one(db, "SELECT pg_advisory_unlock(4242)")
    else:
        assert await one(db, "SELECT @fastpeewee_x") is None
        assert await one(db, "SELECT @@session.time_zone") != "+05:00"
        with pytest.raises(peewee.DatabaseError):
            await db.aexecute_sql("SELECT x FROM scratch")
        for _ in range(200):
            if await one(db, "SELECT IS_FREE_LOCK('fastpeewee_lock')") == 1:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the GET_LOCK lock of the closed session is still held")


@pytest.fixture
async def one_connection(backend, request, tmp_path):
    """A database whose pool holds one connection, so every owner gets the same slot."""
    db = make_database(backend, request, tmp_path, pool_size=1)
    yield db
    await settle(db)
    assert all(s.in_use == 0 for s in db.pool_stats())
    await db.close_pool()
    db.close_all()


async def session_id(db: Any, backend: str) -> Any:
    query = SESSION_ID[backend]
    return await one(db, query) if query else None


async def test_session_state_does_not_reach_the_next_owner(one_connection, backend):
    db = one_connection

    async def request_a() -> Any:
        async with db:  # one connection for the whole "request"
            for sql in DIRTY[backend]:
                await db.aexecute_sql(sql)
            return await session_id(db, backend)

    async def request_b() -> Any:
        async with db:
            await clean_session(db, backend)
            return await session_id(db, backend)

    opened = sum(s.opened for s in db.pool_stats())
    first = await asyncio.create_task(request_a())
    second = await asyncio.create_task(request_b())
    assert sum(s.opened for s in db.pool_stats()) == opened + 2  # A's was closed, not reused
    if first is not None:
        assert first != second


async def test_ordinary_statements_keep_the_connection(one_connection, backend):
    db = one_connection
    await db.aexecute_sql("CREATE TABLE IF NOT EXISTS plain_t (x int)")
    opened = sum(s.opened for s in db.pool_stats())
    seen = set()
    for i in range(5):
        async with db.atomic():
            await db.aexecute_sql(f"INSERT INTO plain_t VALUES ({i})")
            await db.aexecute_sql("SELECT count(*) FROM plain_t")
        seen.add(await session_id(db, backend))
    assert sum(s.opened for s in db.pool_stats()) == opened
    assert len(seen) == 1
    await db.aexecute_sql("DROP TABLE plain_t")


async def test_a_lone_dirty_statement_is_not_seen_by_the_next_one(one_connection, backend):
    db = one_connection
    sql = {"sqlite": "PRAGMA cache_size = 123", "postgres": "SET application_name = 'dirty'",
           "mysql": "SET @fastpeewee_x = 42"}[backend]  # fmt: skip
    await db.aexecute_sql(sql)  # autocommit: borrowed and given back at once
    query = {"sqlite": "PRAGMA cache_size", "postgres": "SHOW application_name",
             "mysql": "SELECT @fastpeewee_x"}[backend]  # fmt: skip
    assert await one(db, query) not in (123, "dirty", 42)


async def test_sync_code_in_a_thread_is_covered_too(one_connection, backend):
    db = one_connection
    query = SESSION_ID[backend] or "SELECT 1"

    def dirty_then_id() -> Any:
        with db.connection_context():
            db.execute_sql(DIRTY[backend][0])
            return db.execute_sql(query).fetchone()[0]

    opened = sum(s.opened for s in db.pool_stats())
    first = await asyncio.to_thread(dirty_then_id)
    second = await asyncio.to_thread(lambda: db.execute_sql(query).fetchone()[0])
    assert sum(s.opened for s in db.pool_stats()) == opened + 2  # the dirty one was closed
    if SESSION_ID[backend]:
        assert first != second
    await asyncio.to_thread(db.close)


@pytest.mark.parametrize(
    ("sql", "changes"),
    [
        ("SELECT * FROM t WHERE id = %s", False),
        ("  (SELECT 1) UNION (SELECT 2)", False),
        ("WITH a AS (SELECT 1) SELECT * FROM a", False),
        ("INSERT INTO t (temp) VALUES (1)", False),
        ("CREATE TABLE t (temp int)", False),
        ("BEGIN", False),
        ("SET LOCAL statement_timeout = 5", False),
        ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", False),
        ("SELECT pg_advisory_xact_lock(1)", False),
        ("NOTIFY chan", False),
        ("PRAGMA foreign_keys", False),
        ('PRAGMA table_info("t")', False),
        ("SET TIME ZONE 'UTC'", True),
        ("set search_path to other", True),
        ("CREATE TEMPORARY TABLE t (x int)", True),
        ("CREATE LOCAL TEMP TABLE t (x int)", True),
        ("SELECT * INTO TEMP t2 FROM t", True),
        ("SELECT pg_advisory_lock(1)", True),
        ("SELECT set_config('a.b', 'c', false)", True),
        ("LISTEN chan", True),
        ("PREPARE p AS SELECT 1", True),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", True),
        ("SELECT @x := 1", True),
        ("SELECT GET_LOCK('a', 1)", True),
        ("USE other", True),
        ("PRAGMA foreign_keys = OFF", True),
        ("PRAGMA cache_size(10)", True),
        ("ATTACH DATABASE 'x.db' AS x", True),
        ("-- a comment first\nSELECT 1", True),  # unknown: assume the worst
        # Scripts: each statement counts (asyncpg, psycopg and asyncmy run them all).
        ("SELECT 1;", False),
        ("SELECT 1;  \n", False),
        ("SELECT 1; SELECT 2", False),
        ("INSERT INTO t VALUES (1); UPDATE t SET x = 2", False),
        ("SELECT 1; SET search_path TO x", True),
        ("SELECT 1;SET @x = 1", True),
        ("INSERT INTO t VALUES (1); CREATE TEMP TABLE t2 (x int)", True),
        ("SELECT 1; LISTEN chan", True),
        ("SELECT 1; PRAGMA cache_size = 5", True),
        ("SET LOCAL a = 1; SET b = 2", True),
        ("SELECT 'a;b'", True),  # a ';' in a literal splits too: conservative, never a leak
        ("SELECT 1; -- trailing comment", True),
        # Temporary schemas named explicitly.
        ("CREATE TABLE pg_temp.t (x int)", True),
        ('CREATE TABLE "pg_temp".t (x int)', True),
        ("CREATE TABLE PG_TEMP.t (x int)", True),
        ("CREATE VIEW pg_temp.v AS SELECT 1", True),
        ("CREATE FUNCTION pg_temp.f() RETURNS int AS 'SELECT 1' LANGUAGE sql", True),
        ("SELECT * INTO pg_temp.t2 FROM t", True),
        ("CREATE TABLE temp.t (x)", True),
        ('CREATE TABLE "temp".t (x)', True),
        ("CREATE TABLE `temp`.t (x)", True),
        ("CREATE INDEX temp.i ON t (x)", True),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", True),
        ("CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1", True),
        # Tables whose names start with "temp" are ordinary tables.
        ("INSERT INTO temperature (x) VALUES (1)", False),
        ("INSERT INTO temp_readings (x) VALUES (1)", False),
        ("CREATE TABLE temperature (x int)", False),
    ],
)
def test_which_statements_change_the_session(sql, changes):
    assert changes_session(sql) is changes


def test_long_statements_are_classified_but_never_cached():
    from fastpeewee.drivers import session

    values = ", ".join(["(%s, %s)"] * 2000)
    insert = f"INSERT INTO t (a, b) VALUES {values}"
    temp = "CREATE TEMP TABLE t AS SELECT " + ", ".join(["1"] * 3000)
    assert len(insert) > session.CACHED_LENGTH and len(temp) > session.CACHED_LENGTH
    before = session._cached.cache_info().currsize
    assert changes_session(insert) is False
    assert changes_session(temp) is True
    assert session._cached.cache_info().currsize == before


# Scripts and explicitly temporary schemas that leave session state behind, per
# backend: (script, probe, the probe's value on a fresh session). SQLite runs one
# statement at a time and PyMySQL (threads) refuses scripts; asyncpg, psycopg and
# asyncmy run every statement of a script.
SCRIPTS: dict[str, list[tuple[str, str, Any]]] = {
    "sqlite": [
        ("CREATE TABLE temp.scratch (x)", "SELECT count(*) FROM temp.sqlite_master", 0),
        ('CREATE TABLE "temp".scratch (x)', "SELECT count(*) FROM temp.sqlite_master", 0),
        ("CREATE TABLE [temp].scratch (x)", "SELECT count(*) FROM temp.sqlite_master", 0),
    ],
    "postgres": [
        ("SELECT 1; SET search_path TO fastpeewee_x", "SHOW search_path", '"$user", public'),
        ("SELECT 1; CREATE TEMP TABLE scratch (x int)",
         "SELECT to_regclass('pg_temp.scratch') IS NULL", True),
        ("CREATE TABLE pg_temp.scratch (x int)",
         "SELECT to_regclass('pg_temp.scratch') IS NULL", True),
        ('CREATE TABLE "pg_temp".scratch (x int)',
         "SELECT to_regclass('pg_temp.scratch') IS NULL", True),
        ("SELECT 1; SELECT set_config('application_name', 'dirty', false)",
         "SHOW application_name", ""),
    ],
    "mysql": [
        ("SELECT 1; SET @fastpeewee_x = 42", "SELECT @fastpeewee_x", None),
        ("SELECT 1; CREATE TEMPORARY TABLE scratch (x int)", "SELECT count(*) FROM scratch",
         "no such table"),
    ],
}  # fmt: skip


async def test_a_script_or_temp_schema_does_not_reach_the_next_owner(one_connection, backend):
    db = one_connection

    async def request(script: str | None, probe: str) -> tuple[Any, Any]:
        async with db:  # one connection for the whole "request"
            if script is not None:
                await db.aexecute_sql(script)
            try:
                seen = await one(db, probe)
            except peewee.DatabaseError:
                seen = "no such table"
            return seen, await session_id(db, backend)

    for script, probe, fresh in SCRIPTS[backend]:
        dirty, first = await asyncio.create_task(request(script, probe))
        opened = sum(s.opened for s in db.pool_stats())
        clean, second = await asyncio.create_task(request(None, probe))
        assert dirty != fresh, script  # the script did change A's session...
        assert clean == fresh, script  # ...and B, on the same slot, starts from a fresh one
        assert sum(s.opened for s in db.pool_stats()) == opened + 1, script  # A's was closed
        if first is not None:
            assert first != second, script


async def test_a_thread_running_a_script_is_covered_too(one_connection, backend):
    if backend == "mysql":
        pytest.skip("PyMySQL (the thread driver) refuses multi-statement scripts")
    db = one_connection
    script, probe, fresh = SCRIPTS[backend][0]

    def dirty() -> Any:
        with db.connection_context():
            db.execute_sql(script)
            return db.execute_sql(probe).fetchone()[0]

    def clean() -> Any:
        with db.connection_context():
            return db.execute_sql(probe).fetchone()[0]

    assert await asyncio.to_thread(dirty) != fresh
    assert await asyncio.to_thread(clean) == fresh
    await asyncio.to_thread(db.close)


def test_the_statement_cache_is_bounded():
    from fastpeewee.drivers import session

    info = session._cached.cache_info()
    assert info.maxsize is not None and info.maxsize <= 4096
    for n in range(info.maxsize + 500):
        changes_session(f"SELECT {n}; SELECT {n + 1}")
    assert session._cached.cache_info().currsize <= info.maxsize
