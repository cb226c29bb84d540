"""PostgreSQL behind a real PgBouncer 1.18 in transaction mode (``pooler="transaction"``).

PgBouncer here has 3 server sessions for many more client connections
(tests/pgbouncer.py), so every server session serves many clients in turn:
what one task leaves on a session, the next tasks see, unless it is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncPostgresqlDatabase, PoolerRefused
from fastpeewee.db_url import connect

from ..conftest import make_database
from ..harness import Outside
from ..models import User
from ..servers import wait_until

pytestmark = pytest.mark.backends("pgbouncer")

MARK = "SELECT current_setting('fastpeewee.mark', true)"
TEMP = "SELECT to_regclass('pg_temp.leaked_t') IS NOT NULL"


async def _database(backend: str, request: Any, tmp_path: Any, **options: Any) -> Any:
    return make_database(backend, request, tmp_path, pool_size=10, acquire_timeout=10.0, **options)


async def _seen_by_30_tasks(db: Any, sql: str, expected: object) -> int:
    """How many of 30 concurrent tasks' statements see ``expected`` from ``sql``."""

    async def one() -> bool:
        row = (await db.aexecute_sql(sql)).fetchone()
        return bool(row[0] == expected)

    return sum(await asyncio.gather(*(one() for _ in range(30))))


async def test_without_the_setting_a_session_set_reaches_other_tasks(backend, request, tmp_path):
    """The issue's leak, reproduced: prepared_statements=False alone refuses nothing."""
    db = await _database(backend, request, tmp_path, pooler=None, prepared_statements=False)
    try:
        await db.aexecute_sql("SET fastpeewee.mark = 'leaked'")
        await db.aexecute_sql("CREATE TEMP TABLE leaked_t (id int)")
        assert await _seen_by_30_tasks(db, MARK, "leaked") > 0
        assert await _seen_by_30_tasks(db, TEMP, True) > 0
    finally:
        await db.close_pool()
        db.close_all()
        # The leaked server session must not reach the other tests: PgBouncer
        # drops its server connections when PostgreSQL ends them.
        outside = Outside(db)
        outside.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ? "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (db.database,),
        )
        outside.close()


async def test_with_the_setting_nothing_reaches_other_tasks(
    backend, request, tmp_path, pgbouncer_server
):
    db = await _database(backend, request, tmp_path)
    assert db.pooler == "transaction" and not db.prepared_statements
    try:
        for sql in ("SET fastpeewee.mark = 'leaked'", "CREATE TEMP TABLE leaked_t (id int)"):
            with pytest.raises(PoolerRefused):
                await db.aexecute_sql(sql)
        # What the pooler can carry, used the way it allows: gone at COMMIT.
        async with db.atomic():
            await db.aexecute_sql("SET LOCAL fastpeewee.mark = 'leaked'")
            await db.aexecute_sql("CREATE TEMP TABLE leaked_t (id int) ON COMMIT DROP")
            await db.aexecute_sql("SELECT pg_advisory_xact_lock(4242)")
            assert (await db.aexecute_sql(MARK)).fetchone()[0] == "leaked"
        assert await _seen_by_30_tasks(db, MARK, "leaked") == 0
        assert await _seen_by_30_tasks(db, TEMP, True) == 0
        assert 1 <= pgbouncer_server.server_sessions() <= pgbouncer_server.pool_size
        outside = Outside(db)
        try:
            assert outside.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [
                (0,)
            ]
        finally:
            outside.close()
    finally:
        await db.close_pool()
        db.close_all()


# (statement, run inside a transaction, a trace it would leave if it had been
# sent: a query on the same server session counting it, the way out named)
REFUSED = {
    "session SET": (
        "SET fastpeewee.mark = 'x'",
        True,
        "SELECT count(*) FROM (SELECT current_setting('fastpeewee.mark', true) AS v) s "
        "WHERE v = 'x'",
        "SET LOCAL",
    ),
    "set_config, not local": (
        "SELECT set_config('fastpeewee.mark', 'x', false)",
        True,
        "SELECT count(*) FROM (SELECT current_setting('fastpeewee.mark', true) AS v) s "
        "WHERE v = 'x'",
        "SET LOCAL",
    ),
    "LISTEN": (
        "LISTEN fastpeewee_channel",
        True,
        "SELECT count(*) FROM pg_listening_channels()",
        "connect to PostgreSQL directly",
    ),
    "session advisory lock": (
        "SELECT pg_advisory_lock(4242)",
        True,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
        "pg_advisory_xact_lock",
    ),
    "temp table outside a transaction": (
        "CREATE TEMP TABLE refused_t (id int)",
        False,
        "SELECT count(*) FROM pg_class WHERE relname = 'refused_t'",
        "ON COMMIT DROP",
    ),
    "temp table without ON COMMIT DROP": (
        "CREATE TEMPORARY TABLE refused_t (id int)",
        True,
        "SELECT count(*) FROM pg_class WHERE relname = 'refused_t'",
        "ON COMMIT DROP",
    ),
    "PREPARE": (
        "PREPARE refused_p AS SELECT 1",
        True,
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'refused_p'",
        "unnamed statements",
    ),
    "DECLARE WITH HOLD": (
        "DECLARE refused_c CURSOR WITH HOLD FOR SELECT 1",
        True,
        "SELECT count(*) FROM pg_cursors WHERE name = 'refused_c'",
        "WITH HOLD",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_each_statement_a_pooler_cannot_carry_is_refused_before_sending(
    case, backend, request, tmp_path
):
    sql, in_transaction, trace, way_out = REFUSED[case]
    db = await _database(backend, request, tmp_path)

    def check(exc: pytest.ExceptionInfo[PoolerRefused]) -> None:
        message = str(exc.value)
        assert "pooler='transaction'" in message and "PgBouncer" in message
        assert way_out in message and "not sent" in message
        assert isinstance(exc.value, peewee.ProgrammingError)

    def sync_side() -> int:
        with db.atomic() if in_transaction else db.connection_context():
            with pytest.raises(PoolerRefused) as refused:
                db.execute_sql(sql)
            check(refused)
            # Nothing was sent: the transaction is not aborted and left no trace.
            return int(db.execute_sql(trace).fetchone()[0])

    try:
        if in_transaction:
            async with db.atomic():
                with pytest.raises(PoolerRefused) as refused:
                    await db.aexecute_sql(sql)
                check(refused)
                assert (await db.aexecute_sql(trace)).fetchone()[0] == 0
        else:
            with pytest.raises(PoolerRefused) as refused:
                await db.aexecute_sql(sql)
            check(refused)
            assert (await db.aexecute_sql(trace)).fetchone()[0] == 0
        assert await asyncio.to_thread(sync_side) == 0
    finally:
        await db.close_pool()
        db.close_all()


async def test_what_a_pooler_carries_still_runs(backend, request, tmp_path):
    db = await _database(backend, request, tmp_path)
    try:
        async with db.atomic():
            await db.aexecute_sql("SET LOCAL statement_timeout = 5000")
            await db.aexecute_sql("SET TRANSACTION READ WRITE")
            await db.aexecute_sql("SELECT set_config('fastpeewee.mark', 'x', true)")
            await db.aexecute_sql("SELECT pg_advisory_xact_lock(1)")
            await db.aexecute_sql("CREATE TEMP TABLE carried_t ON COMMIT DROP AS SELECT 1 AS id")
            await db.aexecute_sql("DECLARE carried_c CURSOR FOR SELECT 1")
            assert (await db.aexecute_sql("FETCH 1 FROM carried_c")).fetchone()[0] == 1
        script = "BEGIN; CREATE TEMP TABLE carried_s (id int) ON COMMIT DROP; COMMIT"
        await db.aexecute_sql(script)
        assert (await db.aexecute_sql("SELECT 1")).fetchone()[0] == 1
    finally:
        await db.close_pool()
        db.close_all()


async def test_iterate_streams_through_the_pooler(db, backend):
    """asyncpg's prepare() behind iterate() makes an unnamed statement, so ten
    concurrent streams over three server sessions each read their own rows."""
    assert db.pooler == "transaction"
    await User.abulk_create([User(username=f"u{i:04}") for i in range(300)])

    async def stream(offset: int) -> list[str]:
        query = User.select().where(User.id > offset).order_by(User.id)
        return [user.username async for user in db.iterate(query, 50)]

    first = (await db.list(User.select().order_by(User.id).limit(1)))[0].id
    results = await asyncio.gather(*(stream(first + 10 * i - 1) for i in range(10)))
    for i, names in enumerate(results):
        assert names == [f"u{n:04}" for n in range(10 * i, 300)]


def test_a_copy_made_from_connect_params_keeps_the_settings(postgres_server):
    params = dict(postgres_server.connect_params)
    pooled = AsyncPostgresqlDatabase(postgres_server.database, pooler="transaction", **params)
    unnamed = AsyncPostgresqlDatabase(
        postgres_server.database, prepared_statements=False, **params
    )
    plain = AsyncPostgresqlDatabase(postgres_server.database, **params)
    for db in (pooled, unnamed, plain):
        copy = type(db)(db.database, **db.connect_params)
        assert (copy.pooler, copy.prepared_statements) == (db.pooler, db.prepared_statements)
        assert copy.connect_params == db.connect_params
        # The drivers never see our settings.
        assert not {"pooler", "prepared_statements"} & set(copy._psycopg_params(1.0))
    assert (pooled.pooler, pooled.prepared_statements) == ("transaction", False)
    assert (unnamed.pooler, unnamed.prepared_statements) == (None, False)
    assert plain.connect_params == params
    copy = type(pooled)(pooled.database, **pooled.connect_params)
    with pytest.raises(PoolerRefused):
        copy.execute_sql("SET fastpeewee.mark = 'x'")
    copy.close_all()
    url = f"postgresql://{params['user']}@127.0.0.1:{params['port']}/db?pooler=transaction"
    assert connect(url).pooler == "transaction"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="pooler='transaction'"):
        AsyncPostgresqlDatabase("db", pooler="session")


async def test_copied_database_uses_unnamed_statements(backend, request, tmp_path):
    """The copy of a pooled database runs, through PgBouncer, as its original does."""
    db = await _database(backend, request, tmp_path)
    copy = type(db)(db.database, **db.connect_params, pool_size=10, acquire_timeout=10.0)
    try:

        async def query(i: int) -> int:
            return int((await copy.aexecute_sql("SELECT %s::int", (i,))).fetchone()[0])

        # Named statements would collide on the 3 shared server sessions.
        assert await asyncio.gather(*(query(i) for i in range(40))) == list(range(40))
    finally:
        for database in (db, copy):
            await database.close_pool()
            database.close_all()


async def test_r15_isolation_levels_and_statements_through_the_pooler(backend, request, tmp_path):
    """RELIABILITY R15: 40 tasks over PgBouncer's 3 server sessions, half of them in
    SERIALIZABLE transactions, the rest in default ones and autocommit reads of the
    same statement text: each transaction sees its own level (never a neighbour's
    left on the server session), and no "prepared statement ... does not exist /
    already exists" error reaches anyone."""
    db = await _database(backend, request, tmp_path, pooler="transaction")
    show = "SHOW transaction_isolation"
    try:

        async def one(i: int) -> tuple[str, str]:
            for _ in range(5):
                if i % 2:
                    async with db.transaction(isolation_level="SERIALIZABLE"):
                        inside = (await db.aexecute_sql(show)).fetchone()[0]
                    want = "serializable"
                else:
                    async with db.atomic():
                        inside = (await db.aexecute_sql(show)).fetchone()[0]
                    want = "read committed"
                if inside != want:
                    return inside, want
                after = (await db.aexecute_sql("SELECT %s::int + 1", (i,))).fetchone()[0]
                assert after == i + 1
            return want, want

        seen = await asyncio.gather(*(one(i) for i in range(40)))
        assert [pair for pair in seen if pair[0] != pair[1]] == []
    finally:
        await db.close_pool()
        db.close_all()


async def test_startup_settings_the_pooler_carries_reach_the_server(backend, request, tmp_path):
    """``application_name`` in ``server_settings`` connects through PgBouncer from
    tasks (asyncpg) and threads (psycopg, where it once went in ``options``,
    which PgBouncer refuses), and the server session carries it."""
    settings = {"application_name": "fp-startup", "client_encoding": "UTF8"}
    db = await _database(backend, request, tmp_path, server_settings=settings)
    try:
        sql = "SELECT current_setting('application_name')"
        assert (await db.aexecute_sql(sql)).fetchone()[0] == "fp-startup"
        in_thread = await asyncio.to_thread(lambda: db.execute_sql(sql).fetchone()[0])
        assert in_thread == "fp-startup"
    finally:
        await db.close_pool()
        db.close_all()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"server_settings": {"statement_timeout": "5s"}}, "statement_timeout"),
        ({"server_settings": {"TimeZone": "UTC", "search_path": "app"}}, "TimeZone, search_path"),
        ({"options": "-c statement_timeout=5s"}, "options"),
    ],
)
def test_startup_settings_the_pooler_refuses_are_refused_when_made(options, named):
    with pytest.raises(ValueError, match=f"{named} cannot reach .*ALTER ROLE .* SET LOCAL"):
        AsyncPostgresqlDatabase("db", pooler="transaction", **options)
    AsyncPostgresqlDatabase("db", **options).close_all()  # a direct connection takes them


def _pool_counts(bouncer: Any, database: str) -> dict[str, int]:
    """PgBouncer's SHOW POOLS counters for ``database`` (PgBouncer 1.18+ counts
    cancel requests: its clients' and the server connections forwarding them)."""
    rows = [row for row in bouncer.admin("SHOW POOLS") if row["database"] == database]
    columns = ("cl_active", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel")
    return {column: sum(int(row[column]) for row in rows) for column in columns}


@pytest.mark.own_server("it stops the server's postmaster (SIGSTOP) to hold a cancel in flight")
async def test_a_connection_closed_while_its_cancel_is_in_flight_leaves_pgbouncer_running(
    backend, request, tmp_path, pgbouncer_server, postgres_server
):
    """PgBouncer 1.18 exits (``FATAL ... disconnect_client(): bad client state: 0``,
    pgbouncer/pgbouncer#801, fixed in 1.19.1) when a client closes a
    CancelRequest's socket while PgBouncer still forwards that cancel to
    PostgreSQL. asyncpg's ``terminate()`` did that to its own in-flight cancel
    whenever fastpeewee closed the connection. Here a statement's task is
    cancelled while the postmaster is stopped (a loaded server: the cancel waits
    for it), then the pool is closed, which closes the connection. Its cancel
    must stay open until PostgreSQL answered it, ``close_pool`` must wait for
    it, and PgBouncer must still run and serve."""
    bouncer = pgbouncer_server
    postmaster = int((postgres_server.datadir / "postmaster.pid").read_text().split()[0])
    db = await _database(backend, request, tmp_path)
    outside = Outside(db)
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
        "AND state = 'active'"
    )

    def counts() -> dict[str, int]:
        return _pool_counts(bouncer, db.database)

    stopped = False
    try:
        job = asyncio.ensure_future(db.aexecute_sql("SELECT pg_sleep(30)"))
        assert await asyncio.to_thread(
            wait_until, lambda: outside.query(sleeping)[0][0] == 1, 10
        ), "the statement never ran"
        os.kill(postmaster, signal.SIGSTOP)  # the running backend goes on; cancels wait
        stopped = True
        job.cancel()  # asyncpg sends a CancelRequest; PgBouncer forwards it, unanswered
        await asyncio.gather(job, return_exceptions=True)
        # The settle's ROLLBACK waits behind the cancel (up to RELEASE_TIMEOUT, 5 s);
        # then the connection is closed, its cancel still in flight.
        closing = asyncio.ensure_future(db.close_pool())
        assert await asyncio.to_thread(wait_until, lambda: counts()["cl_active"] == 0, 15), (
            f"fastpeewee never closed its connection: {counts()}"
        )
        in_flight = await asyncio.to_thread(counts)
        os.kill(postmaster, signal.SIGCONT)
        stopped = False
        await asyncio.wait_for(closing, 15)  # it waited for the cancel to end
        await asyncio.sleep(0.3)  # PostgreSQL has answered PgBouncer's forwarded cancel
        assert bouncer.process.poll() is None, f"PgBouncer exited: {bouncer.log_tail()}"
        # The cancel's client was still there (not cut off) when PostgreSQL came back.
        assert in_flight["cl_active_cancel_req"] + in_flight["cl_waiting_cancel_req"] == 1, (
            in_flight
        )
        assert await asyncio.to_thread(wait_until, lambda: sum(counts().values()) == 0, 10), (
            counts()
        )
        assert await asyncio.to_thread(wait_until, lambda: outside.query(sleeping)[0][0] == 0, 10)
        assert (await db.aexecute_sql("SELECT 41 + 1")).fetchone()[0] == 42  # a fresh pool
    finally:
        if stopped:
            os.kill(postmaster, signal.SIGCONT)
        outside.close()
        await db.close_pool()
        db.close_all()
