"""The pytest plugin, run on the three backends through pytester.

Each test writes a small project (a database module, an ini file, tests),
runs pytest on it in process with the plugin loaded as its entry point would,
and checks the outcome and, from outside, the rows left in the table.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from ..conftest import make_database
from ..harness import Outside

pytest_plugins = ["pytester"]

TABLE = "plugin_note"


@pytest.fixture
def project(backend, request, tmp_path, pytester):
    """A project whose ``dbmod.DB`` is the backend's database, with an empty note table."""
    db = make_database(backend, request, tmp_path)
    cls = type(db).__name__
    params = {
        k: v
        for k, v in db.connect_params.items()
        if k in ("host", "port", "user", "password", "ssl_disabled")
    }
    pytester.makepyfile(
        dbmod=f"""
        import peewee
        from fastpeewee import {cls}

        DB = {cls}({db.database!r}, pool_size=4, acquire_timeout=2.0, **{params!r})

        class Note(DB.Model):
            body = peewee.CharField(unique=True)

            class Meta:
                table_name = {TABLE!r}
        """,
        conftest="""
        import pytest
        import dbmod

        @pytest.fixture(scope="session", autouse=True)
        def _tables():
            dbmod.DB.create_tables([dbmod.Note])
            yield
            dbmod.DB.close_all()
        """,
    )
    pytester.makeini(
        """
        [pytest]
        fastpeewee_database = dbmod:DB
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        """
    )
    pytester.syspathinsert()
    outside = Outside(db)
    yield outside
    try:
        outside.query(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        outside.close()
        db.close_all()


def _installed() -> bool:
    """True when fastpeewee's pytest11 entry point is installed (pytest loads it itself)."""
    return any(e.name == "fastpeewee" for e in entry_points(group="pytest11"))


def run(pytester, *args):
    plugin = () if _installed() else ("-p", "fastpeewee_pytest")
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def notes(outside):
    return outside.query(f"SELECT count(*) FROM {TABLE}")[0][0]


def test_each_test_runs_in_one_transaction_rolled_back_at_its_end(project, pytester):
    pytester.makepyfile(
        test_app="""
        import asyncio
        import httpx
        import peewee
        import pytest
        from fastapi import FastAPI
        from fastpeewee import DatabaseMiddleware
        from fastpeewee.integrations.fastapi import atomic_request
        from dbmod import DB, Note

        app = FastAPI()
        app.add_middleware(DatabaseMiddleware, database=DB)

        @app.post("/async/{body}")
        async def add_async(body: str):
            async with DB.atomic():
                await Note.acreate(body=body)
            return {"n": await DB.count(Note.select())}

        @app.post("/sync/{body}", dependencies=[atomic_request(DB)])
        def add_sync(body: str):
            Note.create(body=body)
            return {"n": Note.select().count()}

        @app.post("/fail/{body}")
        async def add_and_fail(body: str):
            async with DB.atomic():
                await Note.acreate(body=body)
                raise RuntimeError("rolled back")

        def test_untouched():
            pass  # requests no fixture: the plugin does nothing

        def test_sync_code(fastpeewee_transaction):
            Note.create(body="a")
            with DB.atomic():
                Note.create(body="b")
            with pytest.raises(peewee.IntegrityError):
                Note.create(body="a")          # a failed statement keeps the transaction
            with pytest.raises(ValueError):
                with DB.atomic():
                    Note.create(body="c")
                    raise ValueError
            assert [n.body for n in Note.select().order_by(Note.body)] == ["a", "b"]

        async def test_app_tasks_and_threads_share_it(fastpeewee_transaction):
            await Note.acreate(body="mine")
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.post("/async/x")).json() == {"n": 2}
                assert (await http.post("/sync/y")).json() == {"n": 3}
                assert (await http.post("/fail/z")).status_code == 500
            await asyncio.to_thread(lambda: Note.create(body="thread"))
            async def child():
                async with DB.atomic():
                    await Note.acreate(body="child")
            await asyncio.create_task(child())
            bodies = [n.body async for n in DB.iterate(Note.select().order_by(Note.body))]
            assert bodies == ["child", "mine", "thread", "x", "y"]

        @pytest.mark.parametrize("round", range(3))
        def test_nothing_reached_this_test(fastpeewee_transaction, round):
            assert Note.select().count() == 0
            Note.create(body="a")   # the same unique value in every round
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    assert notes(project) == 0  # the server holds none of it


def test_a_leak_fails_the_test_and_names_it(project, pytester):
    pytester.makepyfile(
        test_leaks="""
        import pytest
        from dbmod import DB, Note

        def test_clean(fastpeewee_transaction, fastpeewee_leak_check):
            with DB.atomic():
                Note.create(body="fine")

        def test_connect_without_close(fastpeewee_transaction):
            DB.connect()

        def test_transaction_left_open(fastpeewee_transaction):
            DB.begin()
            Note.create(body="open")

        async def test_task_transaction_left_open(fastpeewee_transaction):
            await DB.aexecute_sql("BEGIN")

        @pytest.fixture(scope="module")
        def leaked():
            conns = []
            yield conns
            for conn in conns:  # given back at the end of the module, after the check
                conn.rollback()
                conn.pool.release(conn)

        def test_connection_checked_out(leaked, fastpeewee_leak_check):
            conn = DB._sync_pool_get().acquire()
            leaked.append(conn)
            conn.execute("BEGIN", ())
            conn.execute("SELECT count(*) FROM plugin_note", ())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=5, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "ERROR test_leaks.py::test_connect_without_close - fastpeewee.testing.Conn*",
            "*left a connection held (connect() or aconnect() without close())*",
            "*thread 'MainThread' left a transaction open*",
            "*task * left a transaction open*",
            "*has 1 connection(s) checked out*",
            "*inside a transaction*",
        ]
    )
    assert notes(project) == 0


def test_works_under_anyio_plugin(project, pytester):
    pytester.makepyfile(
        test_anyio="""
        import anyio
        import pytest
        from dbmod import DB, Note

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        async def add(body):
            async with DB.atomic():
                await Note.acreate(body=body)

        @pytest.mark.anyio
        async def test_one(fastpeewee_transaction):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(add, f"n{i}")
            assert await DB.count(Note.select()) == 3

        @pytest.mark.anyio
        async def test_two(fastpeewee_transaction):
            assert await DB.count(Note.select()) == 0
        """
    )
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(passed=2)
    assert notes(project) == 0


def test_autouse_ini_puts_every_test_in_a_transaction(project, pytester):
    pytester.makeini(
        """
        [pytest]
        fastpeewee_database = dbmod:DB
        fastpeewee_autouse = true
        asyncio_default_fixture_loop_scope = function
        """
    )
    pytester.makepyfile(
        test_auto="""
        from dbmod import Note

        def test_one():
            Note.create(body="a")

        def test_two():
            assert Note.select().count() == 0
        """
    )
    run(pytester).assert_outcomes(passed=2)
    assert notes(project) == 0
