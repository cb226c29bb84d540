"""Read replicas against a real replica: a PostgreSQL streaming standby
(``pg_basebackup -R`` of a throwaway primary) and a MariaDB replica (GTID
replication, ``read_only``), the tests that hold on both run on each (``pair``).

Where a statement ran is read from the server that ran it: its port and
whether it is a replica (``inet_server_port()``, ``pg_is_in_recovery()``;
``@@port``, ``@@read_only``) in the statement itself; rows are counted with
psql or PyMySQL from outside the library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncModel, is_read

from ..conftest import assert_no_leaks, settle
from .cluster import MariaDBPair, Pair, ReplicaPair

Db = Any  # an AsyncPostgresqlDatabase or an AsyncMySQLDatabase

# A function that writes, called from a SELECT (the SQL cannot tell it writes).
WRITING_FUNCTION = {
    "postgres": "CREATE OR REPLACE FUNCTION add_note() RETURNS int LANGUAGE sql "
    "AS $$ INSERT INTO note (body) VALUES ('by a function') RETURNING 1 $$",
    "mysql": "CREATE OR REPLACE FUNCTION add_note() RETURNS int MODIFIES SQL DATA "
    "BEGIN INSERT INTO note (body) VALUES ('by a function'); RETURN 1; END",
}


def make_db(pair: ReplicaPair, **options: Any) -> Db:
    options = {"pool_size": 4, "acquire_timeout": 2.0, "replica_check_interval": 0.1, **options}
    if pair.kind == "mysql":
        options.setdefault("ssl_disabled", True)  # no TLS on the test servers
    options.setdefault("replicas", [pair.url(pair.standby)])
    return pair.database_class(pair.primary.database, **pair.primary.connect_params, **options)


class Note(AsyncModel):
    body = peewee.TextField()


@pytest.fixture
async def rdb(pair: ReplicaPair) -> AsyncIterator[Db]:
    db = make_db(pair)
    Note.bind(db)
    await db.run(db.drop_tables, [Note])
    await db.acreate_tables([Note])
    await asyncio.to_thread(pair.wait_replayed)
    yield db
    await settle(db)
    for database in (db, *db.replicas):
        await settle(database)
        assert_no_leaks(database)
    await db.close_pool()


async def where(db: Db) -> tuple[int, bool]:
    """(port, is a replica) of the server a plain read of ``db`` ran on."""
    row: Any = (await db.aexecute_sql(_where_sql(db))).fetchone()
    return row[0], bool(row[1])


def where_sync(db: Db) -> tuple[int, bool]:
    row: Any = db.execute_sql(_where_sql(db)).fetchone()
    return row[0], bool(row[1])


def _where_sql(db: Db) -> str:
    return MariaDBPair.where_sql if isinstance(db, MariaDBPair.database_class) else Pair.where_sql


async def one(db: Db, sql: str) -> Any:
    row: Any = (await db.aexecute_sql(sql)).fetchone()
    return row[0]


async def test_reads_go_to_the_replica_writes_and_transactions_to_the_primary(
    rdb: Db, pair: ReplicaPair
) -> None:
    primary, standby = pair.primary.port, pair.standby.port
    assert await where(rdb) == (standby, True)
    note = await Note.acreate(body="written")  # an INSERT: the primary
    assert pair.query(pair.primary, "SELECT count(*) FROM note") == "1"
    await asyncio.to_thread(pair.wait_replayed)
    # ORM reads, the fast path and peewee's own (db.run), on the replica
    port = Note.select(Note, pair.port.alias("port"))
    assert (await rdb.get(port.where(Note.id == note.id))).port == standby
    assert [n.port for n in await rdb.list(port)] == [standby]
    assert await rdb.scalar(Note.select(pair.port)) == standby
    assert [n.port async for n in rdb.iterate(port)] == [standby]
    async with rdb.atomic():
        assert await where(rdb) == (primary, False)
        await Note.acreate(body="in a transaction")
    async with rdb:  # a held connection keeps its session: the primary
        assert await where(rdb) == (primary, False)
    # sync code in a thread: the same rules
    assert await asyncio.to_thread(where_sync, rdb) == (standby, True)

    def in_transaction() -> tuple[int, bool]:
        with rdb.atomic():
            return where_sync(rdb)

    assert await asyncio.to_thread(in_transaction) == (primary, False)
    assert pair.query(pair.primary, "SELECT count(*) FROM note") == "2"


async def test_a_scope_reads_the_primary_after_it_wrote(rdb: Db, pair: ReplicaPair) -> None:
    primary, standby = pair.primary.port, pair.standby.port
    async with rdb.scope():
        assert await where(rdb) == (standby, True)
        assert await asyncio.to_thread(where_sync, rdb) == (standby, True)
        note = await Note.acreate(body="mine")
        # read-your-writes: this block's task, its threads and its tasks read the primary
        assert await where(rdb) == (primary, False)
        assert await asyncio.to_thread(where_sync, rdb) == (primary, False)
        assert await asyncio.create_task(where(rdb)) == (primary, False)
        assert (await Note.aget_by_id(note.id)).body == "mine"
    async with rdb.scope():  # a new request starts on the replica again
        assert await where(rdb) == (standby, True)

    async def writes_in_a_sibling() -> None:
        await Note.acreate(body="sibling")

    async with rdb.scope():  # a write by any task of the block counts
        await asyncio.gather(writes_in_a_sibling())
        assert await where(rdb) == (primary, False)


async def test_primary_and_replica_pins(rdb: Db, pair: ReplicaPair) -> None:
    primary, standby = pair.primary.port, pair.standby.port
    with rdb.primary():
        assert await where(rdb) == (primary, False)
        assert await asyncio.to_thread(where_sync, rdb) == (primary, False)
    async with rdb.atomic():
        async with rdb.replica():
            assert await where(rdb) == (standby, True)
            await Note.acreate(body="a write under replica() still goes to the primary")
        assert await where(rdb) == (primary, False)
    assert pair.query(pair.primary, "SELECT count(*) FROM note") == "1"
    assert await where(rdb) == (standby, True)


def test_sync_code_alone_reads_the_replica_and_checks_it(pair: ReplicaPair) -> None:
    """No event loop anywhere: reads run through the thread-side driver (psycopg,
    PyMySQL) and the health check runs in a thread of its own."""
    db = make_db(pair)
    try:
        assert where_sync(db) == (pair.standby.port, True)
        deadline = time.monotonic() + 5
        while db.replica_status()[0].checked_at == 0.0:  # the first check, in a thread
            assert time.monotonic() < deadline, "no health check ran"
            time.sleep(0.02)
            where_sync(db)
        [status] = db.replica_status()
        assert status.up and status.healthy and status.lag is not None and status.lag < 5
        assert where_sync(db) == (pair.standby.port, True)
        assert db.replica_status()[0].served >= 2
    finally:
        db.close_all()


async def test_a_select_that_writes_runs_on_the_primary(rdb: Db, pair: ReplicaPair) -> None:
    await rdb.aexecute_sql(WRITING_FUNCTION[pair.kind])
    await asyncio.to_thread(pair.wait_replayed)
    # The replica refuses the write (a read-only transaction; MariaDB's read_only):
    # the read runs on the primary.
    assert await one(rdb, "SELECT add_note()") == 1
    assert pair.query(pair.primary, "SELECT count(*) FROM note") == "1"


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {predicate}")


async def test_a_stopped_replica_is_skipped(rdb: Db, pair: ReplicaPair) -> None:
    primary, standby = pair.primary.port, pair.standby.port
    assert await where(rdb) == (standby, True)
    await asyncio.to_thread(pair.stop_standby)
    try:
        # Every read keeps working: the first finds the replica gone and runs on the primary.
        for _ in range(20):
            assert await where(rdb) == (primary, False)
            assert await asyncio.to_thread(where_sync, rdb) == (primary, False)
            await Note.acreate(body="still writing")
        [status] = rdb.replica_status()
        assert not status.up and not status.healthy and status.error
        assert status.lag is None  # not the lag of its last check: it is down
    finally:
        await asyncio.to_thread(pair.start_standby)

    async def back() -> bool:
        return await where(rdb) == (standby, True)

    await _until(back)  # the next health check finds it again
    assert rdb.replica_status()[0].healthy


async def test_a_replica_lagging_past_the_bound_is_skipped(pair: ReplicaPair) -> None:
    primary, standby = pair.primary.port, pair.standby.port
    bounded = make_db(pair, max_replica_lag=1.0)
    unbounded = make_db(pair)
    Note.bind(bounded)
    try:
        await bounded.run(bounded.drop_tables, [Note])
        await bounded.acreate_tables([Note])
        await asyncio.to_thread(pair.wait_replayed)
        assert await where(bounded) == (standby, True)
        await asyncio.to_thread(pair.pause_replay)
        try:
            await asyncio.to_thread(
                pair.query, pair.primary, "INSERT INTO note (body) VALUES ('not replayed')"
            )

            async def skipped() -> bool:
                return await where(bounded) == (primary, False)

            await _until(skipped)
            [status] = bounded.replica_status()
            assert status.up and not status.healthy and status.lag is not None
            assert status.lag > 1.0
            # The lag is real: without a bound the replica still serves, and misses the row.
            assert await where(unbounded) == (standby, True)
            assert await one(unbounded, "SELECT count(*) FROM note") == 0
            assert await one(bounded, "SELECT count(*) FROM note") == 1
        finally:
            await asyncio.to_thread(pair.resume_replay)

        async def caught_up() -> bool:
            return await where(bounded) == (standby, True)

        await _until(caught_up)
        assert await one(bounded, "SELECT count(*) FROM note") == 1
    finally:
        for database in (bounded, unbounded):
            await settle(database)
            assert_no_leaks(database)
            await database.close_pool()


async def test_replica_fallback_false_raises_when_none_is_healthy(
    rdb: Db, pair: ReplicaPair
) -> None:
    await asyncio.to_thread(pair.stop_standby)
    try:
        await where(rdb)  # finds the replica down
        with pytest.raises(peewee.OperationalError, match="no healthy replica"):
            async with rdb.replica(fallback=False):
                await where(rdb)
        async with rdb.replica():
            assert await where(rdb) == (pair.primary.port, False)
    finally:
        await asyncio.to_thread(pair.start_standby)


async def test_a_mysql_replica_user_without_replication_privileges(
    mariadb_pair: MariaDBPair,
) -> None:
    """An application's replica user may read its tables and nothing more. Its
    health check cannot read SHOW SLAVE STATUS: the replica is up all the same,
    with its lag unknown, so it serves reads unless a lag bound asks for the lag."""
    pair = mariadb_pair
    reader = "'reader'@'127.0.0.1'"
    pair.primary.sql_as_root(  # replicated: the replica has the user too
        f"CREATE USER IF NOT EXISTS {reader} IDENTIFIED BY 'reader-pw'",
        f"GRANT SELECT ON {pair.primary.database}.* TO {reader}",
    )
    await asyncio.to_thread(pair.wait_replayed)
    url = pair.url(pair.standby).replace(
        f"{pair.standby.user}:{pair.standby.password}@", "reader:reader-pw@"
    )
    unbounded = make_db(pair, replicas=[url])
    bounded = make_db(pair, replicas=[url], max_replica_lag=5.0)
    try:
        await where(unbounded)  # starts the first check
        await _until(lambda: _checked(unbounded))
        assert await where(unbounded) == (pair.standby.port, True)
        [status] = unbounded.replica_status()
        assert status.up and status.healthy and status.lag is None
        assert status.error is not None and "SLAVE MONITOR" in status.error

        await where(bounded)
        await _until(lambda: _checked(bounded))
        assert await where(bounded) == (pair.primary.port, False)
        [status] = bounded.replica_status()
        assert status.up and not status.healthy and status.lag is None
        assert status.error is not None and "SLAVE MONITOR" in status.error
    finally:
        for database in (unbounded, bounded):
            await settle(database)
            assert_no_leaks(database)
            await database.close_pool()


@pytest.mark.parametrize("pair", ["mysql"], indirect=True)
async def test_a_mysql_lock_is_looked_up_where_it_is_held(rdb: Db, pair: ReplicaPair) -> None:
    """GET_LOCK locks live on the primary: asking whether one is free must not
    ask the replica, which holds none."""
    async with rdb:  # a session of its own on the primary, holding the lock
        assert await one(rdb, "SELECT GET_LOCK('m1-job', 0)") == 1
        holder = await one(rdb, "SELECT CONNECTION_ID()")
        assert pair.query(pair.primary, "SELECT IS_USED_LOCK('m1-job')") == str(holder)

        async def elsewhere() -> tuple[Any, Any, Any]:  # another task: no held connection
            used = await one(rdb, "SELECT IS_USED_LOCK('m1-job')")
            free = await one(rdb, "SELECT IS_FREE_LOCK('m1-job')")
            return used, free, await where(rdb)

        used, free, ran_on = await asyncio.create_task(elsewhere())
        assert ran_on == (pair.standby.port, True)  # plain reads still go to the replica
        assert (used, free) == (holder, 0)
        assert await one(rdb, "SELECT RELEASE_LOCK('m1-job')") == 1


@pytest.mark.parametrize("pair", ["mysql"], indirect=True)
async def test_a_mysql_replica_status_statement_fits_the_server(
    rdb: Db, pair: ReplicaPair
) -> None:
    """The health check asks SHOW REPLICA STATUS (MySQL 8.4 knows nothing else); a
    server that refuses it as a syntax error (MySQL before 8.0.22, MariaDB before
    10.5.1) gets SHOW SLAVE STATUS at once and from then on. Both give the lag here."""
    replicas = rdb._replicas
    [replica] = rdb.replicas
    assert replicas._lag_sql(replica) == "SHOW REPLICA STATUS"
    await replicas.acheck()
    [status] = rdb.replica_status()
    assert status.up and status.lag == 0.0, status
    # What an older server answers: a real syntax error from this one.
    with pytest.raises(peewee.DatabaseError) as refused:
        await replica.aexecute_sql("SHOW REPLICAS_OF_AN_OLD_SERVER STATUS")
    assert not replicas._older_server(replica, "SHOW SLAVE STATUS", refused.value)
    assert replicas._older_server(replica, "SHOW REPLICA STATUS", refused.value)
    assert replicas._lag_sql(replica) == "SHOW SLAVE STATUS"
    await asyncio.to_thread(replicas.check)  # the sync check reads it the same way
    [status] = rdb.replica_status()
    assert status.up and status.lag == 0.0, status


async def _checked(db: Db) -> bool:
    return all(s.checked_at > 0 for s in db.replica_status())


def test_replicas_are_refused_on_sqlite(tmp_path: Any) -> None:
    from fastpeewee import AsyncSqliteDatabase

    with pytest.raises(ValueError, match="no read replicas"):
        AsyncSqliteDatabase(str(tmp_path / "x.db"), replicas=["sqlite:///y.db"])


@pytest.mark.parametrize(
    ("sql", "read"),
    [
        ('SELECT "t1"."id" FROM "note" AS "t1" WHERE ("t1"."id" = %s)', True),
        ("(SELECT 1) UNION (SELECT 2)", True),
        ("/* a comment first */ SELECT 1", False),  # unrecognised: the primary
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("select count(*) from note", True),
        ("SELECT * FROM note FOR UPDATE", False),
        ("SELECT * FROM note FOR NO KEY UPDATE SKIP LOCKED", False),
        ("SELECT * FROM note LOCK IN SHARE MODE", False),
        ("WITH x AS (DELETE FROM note RETURNING id) SELECT * FROM x", False),
        ("SELECT nextval('note_id_seq')", False),
        ("SELECT pg_advisory_lock(1)", False),
        ("SELECT LAST_INSERT_ID()", False),
        ("SELECT IS_USED_LOCK('job')", False),
        ("SELECT IS_FREE_LOCK('job')", False),
        ("SELECT RELEASE_ALL_LOCKS()", False),
        ("SELECT PREVIOUS VALUE FOR note_seq", False),
        ("SELECT * INTO copy FROM note", False),
        ("SELECT set_config('a.b', '1', false)", False),
        ("INSERT INTO note (body) VALUES (%s)", False),
        ("BEGIN", False),
        ("SHOW TABLES", False),
    ],
)
def test_which_statements_are_reads(sql: str, read: bool) -> None:
    assert is_read(sql) is read
