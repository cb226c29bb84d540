"""PostgreSQL specifics: statement cache, PgBouncer mode, placeholders, types."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid

import peewee
import pytest

from fastpeewee.drivers.postgres import _adapt, to_dollar_params

from ..conftest import make_database

pytestmark = pytest.mark.backends("postgres")


def test_placeholder_translation():
    assert to_dollar_params("SELECT 1") == "SELECT 1"
    assert to_dollar_params("a = %s AND b = %s") == "a = $1 AND b = $2"
    assert to_dollar_params("x LIKE '100%%' AND y = %s") == "x LIKE '100%' AND y = $1"


def test_psycopg_json_wrappers_become_json_text_for_asyncpg():
    from psycopg.types.json import Json, Jsonb

    plain = (1, "a", None)
    assert _adapt(plain) is plain  # the common case copies nothing
    assert _adapt([Jsonb({"a": 1}), Json(None), 2]) == ['{"a": 1}', "null", 2]


PREPARED = "SELECT count(*) FROM pg_prepared_statements"


async def test_statement_cache_makes_one_prepared_statement_per_query_shape(db, backend):
    async with db:  # one connection for the whole test
        for i in range(5):
            await db.aexecute_sql("SELECT %s::int + 1", (i,))
        cached = (await db.aexecute_sql(PREPARED)).fetchone()[0]
        assert 1 <= cached <= 3  # the SELECT above and this one, not five


async def test_pgbouncer_mode_uses_unnamed_statements(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, prepared_statements=False)
    try:
        async with db:
            for i in range(5):
                assert (await db.aexecute_sql("SELECT %s::int", (i,))).fetchone()[0] == i  # type: ignore[index]
            assert (await db.aexecute_sql(PREPARED)).fetchone()[0] == 0  # type: ignore[index]

        def sync() -> int:
            with db.connection_context():
                for i in range(10):
                    db.execute_sql("SELECT %s::int", (i,))
                return db.execute_sql(PREPARED).fetchone()[0]  # type: ignore[index]

        assert await asyncio.to_thread(sync) == 0
    finally:
        await db.close_pool()
        db.close_all()


async def test_isolation_level_applies_per_transaction(db, backend):
    async with db.transaction(isolation_level="SERIALIZABLE"):
        level = (await db.aexecute_sql("SHOW transaction_isolation")).fetchone()[0]
        assert level == "serializable"
    level = (await db.aexecute_sql("SHOW transaction_isolation")).fetchone()[0]
    assert level == "read committed"


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

    values = {
        "when": datetime.datetime(2026, 11, 22, 12, 30, 5),
        "day": datetime.date(2026, 11, 22),
        "price": decimal.Decimal("12.34"),
        "blob": b"\x00\xffbytes",
        "key": uuid.uuid4(),
        "flag": True,
        "ratio": 0.25,
    }
    try:
        await db.adrop_tables([Typed], safe=True)
        await db.acreate_tables([Typed])
        created = await Typed.acreate(**values)
        from_async = await Typed.aget_by_id(created.id)
        from_sync = await asyncio.to_thread(Typed.get_by_id, created.id)
        for row in (from_async, from_sync):
            assert {k: getattr(row, k) for k in values} == values
        await db.adrop_tables([Typed])
    finally:
        await db.close_pool()
        db.close_all()


async def test_server_version_is_known(db, backend):
    await db.aexecute_sql("SELECT 1")
    assert db.server_version >= 150000


async def test_json_round_trips_on_both_drivers(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)

    class Doc(db.Model):
        data = peewee.JSONField()

    try:
        await db.adrop_tables([Doc], safe=True)
        await db.acreate_tables([Doc])
        await Doc.acreate(data={"tags": ["a", "b"], "n": 1})
        await asyncio.to_thread(Doc.create, data={"tags": [], "n": 2})
        from_async = [d.data for d in await db.list(Doc.select().order_by(Doc.id))]
        from_sync = await asyncio.to_thread(
            lambda: [d.data for d in Doc.select().order_by(Doc.id)]
        )
        assert from_async == from_sync == [{"tags": ["a", "b"], "n": 1}, {"tags": [], "n": 2}]
        assert await db.count(Doc.select().where(Doc.data["n"] == 2)) == 1
        await db.adrop_tables([Doc])
    finally:
        await db.close_pool()
        db.close_all()


async def test_a_script_of_several_statements_runs(db, backend):
    # Temp tables live on one connection: the script ran in one go.
    async with db:
        await db.aexecute_sql("CREATE TEMP TABLE b (x int); INSERT INTO b VALUES (1)")
        assert (await db.aexecute_sql("SELECT count(*) FROM b")).fetchone()[0] == 1


def test_long_statements_are_rewritten_but_never_cached():
    from fastpeewee.drivers import postgres

    values = ", ".join(["(%s, %s)"] * 2000)
    before = postgres._cached_dollar_params.cache_info().currsize
    rewritten = to_dollar_params(f"INSERT INTO t VALUES {values}")
    assert rewritten.endswith("($3999, $4000)")
    assert postgres._cached_dollar_params.cache_info().currsize == before
