"""MySQL/MariaDB specifics: utf8mb4, drivers, types, DDL, deadlocks, isolation levels."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import peewee
import pytest
from peewee import fn

from fastpeewee import AsyncMySQLDatabase, TransactionLost
from fastpeewee.drivers.mysql import error_code

from ..conftest import assert_no_leaks, make_database, model_database, settle
from ..models import MODELS, User, bind_models

pytestmark = pytest.mark.backends("mysql")

EMOJI = (
    "grinning \U0001f600 family \U0001f468\u200d\U0001f469\u200d\U0001f467 "
    "flag \U0001f1fa\U0001f1e6"
)
CHARSET = "SELECT @@character_set_client, @@character_set_connection, @@character_set_results"


async def test_connections_speak_utf8mb4_on_both_drivers(db, backend):
    from_async = (await db.aexecute_sql(CHARSET)).fetchone()
    from_sync = await asyncio.to_thread(lambda: db.execute_sql(CHARSET).fetchone())
    assert tuple(from_async) == tuple(from_sync) == ("utf8mb4",) * 3


async def test_test_tables_are_utf8mb4(db, backend):
    sql = (
        "SELECT table_collation FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = %s"
    )
    collation = (await db.aexecute_sql(sql, ("user",))).fetchone()[0]
    assert collation.startswith("utf8mb4_")


async def test_four_byte_emoji_round_trips_through_both_drivers(db, backend):
    made_async = await User.acreate(username="a " + EMOJI)
    made_sync = await asyncio.to_thread(User.create, username="s " + EMOJI)
    for made in (made_async, made_sync):
        from_async = await User.aget_by_id(made.id)
        from_sync = await asyncio.to_thread(User.get_by_id, made.id)
        assert from_async.username == from_sync.username == made.username
    # The server stored characters, not mangled bytes: 4-byte code points count as one.
    length = "SELECT CHAR_LENGTH(username) FROM user WHERE id = %s"
    assert (await db.aexecute_sql(length, (made_async.id,))).fetchone()[0] == len(
        made_async.username
    )
    found = await User.aget_or_none(User.username == "s " + EMOJI)
    assert found is not None and found.id == made_sync.id


async def test_driver_errors_become_peewee_errors_on_both_drivers(db, backend):
    await User.acreate(username="dup")

    async def both(fn):
        with pytest.raises(peewee.PeeweeException) as from_async:
            await db.run(fn)
        with pytest.raises(peewee.PeeweeException) as from_sync:
            await asyncio.to_thread(fn)
        return from_async.value, from_sync.value

    for exc in await both(lambda: User.create(username="dup")):
        assert type(exc) is peewee.IntegrityError and error_code(exc) == 1062
    for exc in await both(lambda: db.execute_sql("SELECT * FROM no_such_table")):
        assert type(exc) is peewee.ProgrammingError and error_code(exc) == 1146
    for exc in await both(lambda: db.execute_sql("SELEC 1")):
        assert type(exc) is peewee.ProgrammingError and error_code(exc) == 1064
    for exc in await both(lambda: db.execute_sql("SELECT CAST('x' AS JSON_NOPE)")):
        assert isinstance(exc, peewee.DatabaseError)
    assert await db.count(User.select()) == 1


async def test_types_round_trip_on_both_drivers(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)

    class Typed(db.Model):
        when = peewee.DateTimeField()
        day = peewee.DateField()
        price = peewee.DecimalField(max_digits=10, decimal_places=2)
        blob = peewee.BlobField()
        key = peewee.UUIDField()
        flag = peewee.BooleanField()
        ratio = peewee.FloatField()
        big = peewee.BigIntegerField()

    values = {
        "when": datetime.datetime(2026, 11, 22, 12, 30, 5),
        "day": datetime.date(2026, 11, 22),
        "price": decimal.Decimal("12.34"),
        "blob": b"\x00\xff'\\bytes",
        "key": uuid.uuid4(),
        "flag": True,
        "ratio": 0.25,
        "big": 2**62,
    }
    try:
        await db.adrop_tables([Typed], safe=True)
        await db.acreate_tables([Typed])
        created = await Typed.acreate(**values)
        made_sync = await asyncio.to_thread(Typed.create, **values)
        for row_id in (created.id, made_sync.id):
            from_async = await Typed.aget_by_id(row_id)
            from_sync = await asyncio.to_thread(Typed.get_by_id, row_id)
            for row in (from_async, from_sync):
                assert {k: getattr(row, k) for k in values} == values
        await db.adrop_tables([Typed])
    finally:
        await db.close_pool()
        db.close_all()


async def test_json_round_trips_on_both_drivers(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)

    class Doc(db.Model):
        data = peewee.JSONField()

    try:
        await db.adrop_tables([Doc], safe=True)
        await db.acreate_tables([Doc])
        await Doc.acreate(data={"tags": ["a", EMOJI], "n": 1})
        await asyncio.to_thread(Doc.create, data={"tags": [], "n": 2})
        from_async = [d.data for d in await db.list(Doc.select().order_by(Doc.id))]
        from_sync = await asyncio.to_thread(
            lambda: [d.data for d in Doc.select().order_by(Doc.id)]
        )
        assert from_async == from_sync == [{"tags": ["a", EMOJI], "n": 1}, {"tags": [], "n": 2}]
        await db.adrop_tables([Doc])
    finally:
        await db.close_pool()
        db.close_all()


async def test_server_version_and_mariadb_dialect_are_known(db, backend):
    await db.aexecute_sql("SELECT 1")
    assert db.server_version >= (10, 4)
    # MariaDB 10.4+ takes parenthesised compound members: peewee was told.
    assert db.compound_select_parentheses == peewee.CSQ_PARENTHESES_GROUPED
    await User.abulk_create([User(username=n) for n in "abc"])
    a = User.select(User.username).where(User.username == "a")
    b = User.select(User.username).where(User.username == "b")
    c = User.select(User.username).where(User.username == "c")
    assert sorted(u.username for u in await db.list((a | b) | c)) == ["a", "b", "c"]


async def test_ddl_inside_a_transaction_commits_implicitly_as_in_peewee(db, backend):
    # MySQL commits before DDL: the row is kept although the block fails.
    with pytest.raises(RuntimeError):
        async with db.atomic():
            await User.acreate(username="kept")
            await db.aexecute_sql("CREATE TABLE IF NOT EXISTS ddl_probe (x int)")
            raise RuntimeError
    assert [u.username for u in await db.list(User.select())] == ["kept"]
    await db.aexecute_sql("DROP TABLE ddl_probe")
    await settle(db)
    assert_no_leaks(db)


async def _deadlock(db) -> list[BaseException | None]:
    """Two transactions lock rows 1 and 2 in opposite orders; InnoDB kills one."""
    first, second = await User.acreate(username="one"), await User.acreate(username="two")
    both_locked = asyncio.Barrier(2)

    async def worker(mine: User, theirs: User) -> None:
        async with db.atomic():
            await (
                User.update(username=User.username.concat("!"))
                .where(User.id == mine.id)
                .aexecute()
            )
            await both_locked.wait()
            try:
                await (
                    User.update(username=User.username.concat("?"))
                    .where(User.id == theirs.id)
                    .aexecute()
                )
            except peewee.OperationalError as exc:
                assert error_code(exc) == 1213  # ER_LOCK_DEADLOCK
                # The server rolled the whole transaction back: going on must fail.
                await User.acreate(username="after-deadlock")

    results = await asyncio.gather(
        worker(first, second), worker(second, first), return_exceptions=True
    )
    return list(results)


async def test_a_deadlock_victim_loses_its_transaction(db, backend):
    results = await _deadlock(db)
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, TransactionLost) for r in results) == 1
    await settle(db)
    assert_no_leaks(db)
    names = sorted(u.username for u in await db.list(User.select()))
    # The survivor committed both updates; nothing of the victim's remains.
    assert names in (["one!", "two?"], ["one?", "two!"])
    assert await db.count(User.select().where(User.username == "after-deadlock")) == 0


async def _sees_commits_midway(db, make_txn) -> bool:
    """Whether a transaction sees a row another connection commits while it runs.

    READ COMMITTED does, REPEATABLE READ (InnoDB's default) does not.
    """
    row = await User.acreate(username="before")
    try:
        async with make_txn():
            assert (await User.aget_by_id(row.id)).username == "before"
            # A child task runs outside this transaction, on another connection.
            await asyncio.create_task(
                User.update(username="after").where(User.id == row.id).aexecute()
            )
            return (await User.aget_by_id(row.id)).username == "after"
    finally:
        await User.delete().aexecute()


async def test_isolation_level_applies_to_its_own_transaction_only(db, backend):
    for _ in range(2):
        assert await _sees_commits_midway(
            db, lambda: db.transaction(isolation_level="READ COMMITTED")
        )
    # No pooled connection kept the level for somebody else's next transaction.
    for _ in range(db.pool_config.pool_size):
        assert not await _sees_commits_midway(db, db.atomic)


async def test_isolation_level_never_reaches_a_waiting_task(backend, request, tmp_path):
    # Pool of 2: `holder` keeps one connection; `waiter` queues for the other
    # while the isolated transaction sets its level. Were SET TRANSACTION and
    # BEGIN run on two borrows, the level would go to the waiter's transaction.
    async with model_database(backend, request, tmp_path, pool_size=2) as db:
        row = await User.acreate(username="before")
        read_once, updated = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with db:
                await db.aexecute_sql("SELECT 1")
                await read_once.wait()
                await User.update(username="after").where(User.id == row.id).aexecute()
                updated.set()

        async def isolated() -> None:
            async with db.transaction(isolation_level="READ COMMITTED"):
                await db.count(User.select())

        async def waiter() -> bool:
            async with db.atomic():
                assert (await User.aget_by_id(row.id)).username == "before"
                read_once.set()
                await updated.wait()
                return (await User.aget_by_id(row.id)).username == "after"

        hold = asyncio.create_task(holder())
        await asyncio.sleep(0.05)  # the holder has its connection
        results = await asyncio.gather(isolated(), waiter(), hold)
        assert results[1] is False  # the waiter ran at the default REPEATABLE READ


def test_isolation_level_in_a_thread(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    bind_models(db)
    db.drop_tables(MODELS, safe=True)
    db.create_tables(MODELS)
    row = User.create(username="before")

    def sees_commit(**level: str) -> bool:
        with db.transaction(**level):
            assert User.get_by_id(row.id).username == "before"
            with ThreadPoolExecutor(1) as other:
                other.submit(
                    lambda: User.update(username="after").where(User.id == row.id).execute()
                ).result()
            seen = User.get_by_id(row.id).username == "after"
        User.update(username="before").execute()
        return seen

    try:
        assert sees_commit(isolation_level="READ COMMITTED")
        assert not sees_commit()
        assert not sees_commit()
    finally:
        db.close_all()


async def test_a_bad_isolation_level_leaks_nothing(db, backend):
    with pytest.raises(peewee.ProgrammingError):
        async with db.transaction(isolation_level="NOT A LEVEL"):
            pass
    with pytest.raises(peewee.ProgrammingError):
        await asyncio.to_thread(lambda: db.transaction(isolation_level="NOPE").__enter__())
    await settle(db)
    assert_no_leaks(db)
    assert db.is_closed()


async def test_driver_keywords_reach_the_right_driver(backend, request, tmp_path):
    # stmt_cache_size is asyncmy's, write_timeout PyMySQL's; each is kept from the other.
    db = make_database(
        backend,
        request,
        tmp_path,
        stmt_cache_size=8,
        write_timeout=5,
        init_command="SET @origin = 'init'",
    )
    try:
        async with db:
            assert db.connection()._stmt_cache_size == 8
            assert (await db.aexecute_sql("SELECT @origin")).fetchone()[0] == "init"  # type: ignore[index]

        def sync() -> tuple[object, str]:
            with db.connection_context():
                return db.connection()._write_timeout, db.execute_sql(  # type: ignore[index]
                    "SELECT @origin"
                ).fetchone()[0]

        assert await asyncio.to_thread(sync) == (5, "init")
    finally:
        await db.close_pool()
        db.close_all()


def test_constructor_matches_pwasyncio():
    db = AsyncMySQLDatabase(
        "app",
        host="db",
        user="u",
        password="p",
        pool_size=3,
        acquire_timeout=1.5,
        pool_min_size=2,
        charset="utf8mb4",
    )
    assert db.pool_config.pool_size == 3
    assert db.pool_config.acquire_timeout == 1.5
    assert db.pool_config.pool_min_size == 2
    assert db.connect_params == {"host": "db", "user": "u", "password": "p", "charset": "utf8mb4"}
    assert AsyncMySQLDatabase("app").connect_params["charset"] == "utf8mb4"
    assert isinstance(db, peewee.MySQLDatabase)


def test_driver_parameters_are_split_and_normalised():
    db = AsyncMySQLDatabase(
        None,
        host="h",
        passwd="pw",
        db="app",
        stmt_cache_size=4,
        write_timeout=3,
        ssl_disabled=True,
        read_timeout=9,
    )
    for_asyncmy = db._asyncmy_params(2.0)
    for_pymysql = db._pymysql_params(2.0)
    common = {
        "host": "h",
        "password": "pw",
        "database": "app",
        "autocommit": True,
        "charset": "utf8mb4",
        "read_timeout": 9,
    }
    assert for_asyncmy == {**common, "stmt_cache_size": 4, "connect_timeout": 2.0}
    assert for_pymysql == {
        **common,
        "write_timeout": 3,
        "ssl_disabled": True,
        "connect_timeout": 2,
    }


async def test_the_connect_bound_does_not_limit_later_queries(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, acquire_timeout=0.5)
    try:

        def slow() -> object:
            with db.connection_context():
                assert db.connection()._read_timeout is None
                return db.execute_sql("SELECT SLEEP(0.8)").fetchone()[0]  # type: ignore[index]

        assert await asyncio.to_thread(slow) == 0
        assert (await db.aexecute_sql("SELECT SLEEP(0.8)")).fetchone()[0] == 0  # type: ignore[index]
    finally:
        await db.close_pool()
        db.close_all()


async def test_a_server_that_never_answers_times_out_within_the_bound():
    # A socket that accepts connections (backlog) but never sends the greeting.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        db = AsyncMySQLDatabase(
            "app", host="127.0.0.1", port=port, user="u", acquire_timeout=0.3, ssl_disabled=True
        )
        begun = time.monotonic()
        with pytest.raises(peewee.OperationalError):
            await db.aexecute_sql("SELECT 1")
        assert time.monotonic() - begun < 2.0
        begun = time.monotonic()
        with pytest.raises(peewee.OperationalError):
            await asyncio.to_thread(db.execute_sql, "SELECT 1")
        assert time.monotonic() - begun < 3.0  # PyMySQL counts whole seconds
        assert_no_leaks(db)
        await db.close_pool()
        db.close_all()


async def test_a_missing_driver_names_the_extra(monkeypatch):
    db = AsyncMySQLDatabase("app", host="127.0.0.1", port=1)
    monkeypatch.setitem(sys.modules, "asyncmy", None)
    with pytest.raises(peewee.ImproperlyConfigured, match=r"fastpeewee\[mysql\]"):
        await db.aexecute_sql("SELECT 1")
    await db.close_pool()


RUNNING_SLOW_STREAM = (
    "SELECT count(*) FROM information_schema.processlist "
    "WHERE info LIKE '%SLEEP(0.02)%' AND id <> CONNECTION_ID()"
)
# 20 ms a row, and rows big enough (2 kB) that the server sends them as it goes
# rather than when its 16 kB network buffer would fill at the end.
SLOW_ROWS = User.select(User.id, fn.SLEEP(0.02).alias("z"), fn.REPEAT("x", 2000).alias("pad"))


async def _stream_stopped(db) -> bool:
    for _ in range(50):
        if (await db.aexecute_sql(RUNNING_SLOW_STREAM)).fetchone()[0] == 0:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_iterate_left_early_stops_the_statement(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(100)])
    # Reading off the rest would take 2 s.
    rows = db.iterate(SLOW_ROWS.order_by(User.id), buffer_size=5)
    first = await rows.__anext__()
    assert first.id is not None
    begun = time.monotonic()
    await rows.aclose()
    assert time.monotonic() - begun < 1.0
    assert await _stream_stopped(db)
    await settle(db)
    assert_no_leaks(db)
    assert await db.count(User.select()) == 100


async def test_iterate_cancelled_mid_stream_stops_the_statement(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(100)])
    seen: list[int] = []

    async def consume() -> None:
        async for user in db.iterate(SLOW_ROWS.order_by(User.id), buffer_size=5):
            seen.append(user.id)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(seen) < 100
    assert await _stream_stopped(db)
    await settle(db)
    assert_no_leaks(db)


async def test_iterate_read_to_the_end_keeps_the_connection(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(23)])
    opened = sum(s.opened for s in db.pool_stats())
    names = [u.username async for u in db.iterate(User.select().order_by(User.id), 5)]
    assert names == [f"u{i}" for i in range(23)]
    assert await db.count(User.select()) == 23
    assert sum(s.opened for s in db.pool_stats()) == opened  # no reconnect was needed


async def test_iterate_left_early_inside_a_transaction_keeps_it(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(30)])
    async with db.atomic():
        await User.acreate(username="inside")
        async for user in db.iterate(User.select().order_by(User.id), buffer_size=5):
            assert user.username == "u0"
            break
        await User.acreate(username="after the loop")
    assert await db.count(User.select()) == 32


async def _time_out_first_row(db) -> None:
    rows = db.iterate(SLOW_ROWS.order_by(User.id), buffer_size=5)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await rows.__anext__()
    await rows.aclose()


async def test_stream_cancelled_on_a_held_connection_then_a_fresh_one(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(100)])
    async with db:
        first = (await db.aexecute_sql("SELECT CONNECTION_ID()")).fetchone()[0]
        await _time_out_first_row(db)
        # The held connection was dropped with its statement; no error, a new one.
        second = (await db.aexecute_sql("SELECT CONNECTION_ID()")).fetchone()[0]
        assert second != first
    assert await _stream_stopped(db)
    await settle(db)
    assert_no_leaks(db)


async def test_stream_cancelled_inside_a_transaction_loses_it(db, backend):
    await User.abulk_create([User(username=f"u{i}") for i in range(100)])
    with pytest.raises(TransactionLost):
        async with db.atomic():
            await User.acreate(username="doomed")
            await _time_out_first_row(db)
            await User.acreate(username="never")
    assert await _stream_stopped(db)
    assert await db.count(User.select().where(User.username.in_(["doomed", "never"]))) == 0
    await settle(db)
    assert_no_leaks(db)


async def test_table_settings_give_utf8mb4_in_a_latin1_database(backend, request, tmp_path):
    maria = request.getfixturevalue("mariadb_server")
    maria.sql_as_root(
        "DROP DATABASE IF EXISTS fastpeewee_latin1",
        "CREATE DATABASE fastpeewee_latin1 CHARACTER SET latin1",
    )
    db = make_database(backend, request, tmp_path)
    db.init("fastpeewee_latin1", **db.connect_params)

    class Plain(db.Model):
        text = peewee.CharField()

    class Wide(db.Model):
        text = peewee.CharField()

        class Meta:
            table_settings = ["DEFAULT CHARSET=utf8mb4"]

    try:
        await db.acreate_tables([Plain, Wide])
        with pytest.raises(peewee.DataError):  # latin1 cannot hold an emoji
            await Plain.acreate(text=EMOJI)
        made = await Wide.acreate(text=EMOJI)
        assert (await Wide.aget_by_id(made.id)).text == EMOJI
    finally:
        await db.close_pool()
        db.close_all()
        maria.sql_as_root("DROP DATABASE fastpeewee_latin1")
