"""The extension classes: JSONB and HStore fields round-trip on asyncpg and psycopg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import peewee
import psycopg
import pytest
from playhouse.postgres_ext import BinaryJSONField, HStoreField, JSONField
from playhouse.postgres_ext import PostgresqlExtDatabase as PlayhouseExt

import fastpeewee.compat.peewee_async as peewee_async
import fastpeewee.compat.peewee_asyncext as peewee_asyncext

from ..servers import PostgresServer
from .support import finish

pytestmark = pytest.mark.backends("postgres")

ext_proxy = peewee.DatabaseProxy()


class Document(peewee.Model):
    data = BinaryJSONField(null=True)
    plain = JSONField(null=True)
    tags = HStoreField(null=True)

    class Meta:
        database = ext_proxy
        table_name = "compat_document"


class JsonOnly(peewee.Model):
    data = BinaryJSONField()

    class Meta:
        database = ext_proxy
        table_name = "compat_json_only"


def _create_hstore(server: PostgresServer) -> None:
    params = {**server.connect_params, "dbname": server.database}
    with psycopg.connect(autocommit=True, **params) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS hstore")


@pytest.fixture
async def ext_db(backend: str, postgres_server: PostgresServer) -> AsyncIterator[Any]:
    await asyncio.to_thread(_create_hstore, postgres_server)
    db = peewee_asyncext.PooledPostgresqlExtDatabase(
        postgres_server.database,
        **postgres_server.connect_params,
        register_hstore=True,
        max_connections=3,
        acquire_timeout=2.0,
    )
    ext_proxy.initialize(db)
    await asyncio.to_thread(_reset, db, [Document])
    try:
        yield db
    finally:
        await finish(db)
        ext_proxy.initialize(None)


def _reset(db: Any, models: list[Any]) -> None:
    db.drop_tables(models, safe=True)
    db.create_tables(models)


DOC = {"name": "ann", "nested": {"list": [1, 2.5, None, True], "text": "ünï"}, "n": 0}
TAGS = {"colour": "red", "size": "L", "empty": ""}


async def test_jsonb_and_hstore_round_trip_async(ext_db: Any) -> None:
    objects = peewee_async.Manager(ext_db)
    doc = await objects.create(Document, data=DOC, plain=[1, "two"], tags=TAGS)
    back = await objects.get(Document, id=doc.id)
    assert (back.data, back.plain, back.tags) == (DOC, [1, "two"], TAGS)
    assert await objects.count(Document.select().where(Document.data.contains({"n": 0}))) == 1
    assert await objects.count(Document.select().where(Document.tags.contains("colour"))) == 1
    assert await objects.count(Document.select().where(Document.tags.contains({"size": "S"}))) == 0
    value = await objects.scalar(Document.select(Document.tags["colour"]))
    assert value == "red"
    back.tags = {**TAGS, "size": "XL"}
    await objects.update(back, only=["tags"])
    assert (await objects.get(Document, id=doc.id)).tags["size"] == "XL"


async def test_jsonb_and_hstore_round_trip_in_a_thread(ext_db: Any) -> None:
    def work() -> Any:
        doc = Document.create(data=DOC, tags=TAGS)
        found = Document.select().where(Document.tags.contains({"colour": "red"})).get()
        return doc.id, found.id, found.data, found.tags

    doc_id, found_id, data, tags = await asyncio.to_thread(work)
    assert (found_id, data, tags) == (doc_id, DOC, TAGS)
    # Written by psycopg in the thread, read by asyncpg in the task:
    back = await peewee_async.Manager(ext_db).get(Document, id=doc_id)
    assert back.tags == TAGS


async def test_register_hstore_false_still_has_json(postgres_server: PostgresServer) -> None:
    db = peewee_asyncext.PostgresqlExtDatabase(
        postgres_server.database,
        **postgres_server.connect_params,
        register_hstore=False,
        max_connections=2,
        acquire_timeout=2.0,
    )
    assert db._register_hstore is False
    ext_proxy.initialize(db)
    try:
        await asyncio.to_thread(_reset, db, [JsonOnly])
        objects = peewee_async.Manager(db)
        row = await objects.create(JsonOnly, data=DOC)
        assert (await objects.get(JsonOnly, id=row.id)).data == DOC
        await asyncio.to_thread(db.drop_tables, [JsonOnly])
    finally:
        await finish(db)
        ext_proxy.initialize(None)


def test_ext_classes_default_to_no_hstore_as_peewee_and_refuse_named_cursors() -> None:
    ext = peewee_asyncext
    for cls in (ext.PooledPostgresqlExtDatabase, ext.PostgresqlExtDatabase):
        assert cls("x")._register_hstore is False
    assert PlayhouseExt("x")._register_hstore is False  # the default matched
    assert peewee_asyncext.PostgresqlExtDatabase("x", register_hstore=True)._register_hstore
    with pytest.raises(ValueError, match="server_side_cursors"):
        peewee_asyncext.PostgresqlExtDatabase("x", server_side_cursors=True)


def _fresh_database(server: PostgresServer, name: str) -> None:
    """A database of its own, without the hstore extension."""
    params = {**server.connect_params, "dbname": server.database}
    with psycopg.connect(autocommit=True, **params) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")


async def test_no_hstore_extension_works_by_default_and_fails_clearly_when_asked(
    postgres_server: PostgresServer,
) -> None:
    await asyncio.to_thread(_fresh_database, postgres_server, "compat_no_hstore")
    options = {**postgres_server.connect_params, "max_connections": 2, "acquire_timeout": 2.0}
    plain = peewee_asyncext.PostgresqlExtDatabase("compat_no_hstore", **options)
    try:
        # The default opens connections on a database without the extension.
        assert await plain.aexecute_sql("SELECT 1") is not None
        assert await asyncio.to_thread(lambda: plain.execute_sql("SELECT 1").fetchone()) == (1,)
    finally:
        await finish(plain)
    asked = peewee_asyncext.PostgresqlExtDatabase(
        "compat_no_hstore", register_hstore=True, **options
    )
    try:
        with pytest.raises(peewee.ImproperlyConfigured, match="CREATE EXTENSION hstore"):
            await asked.aexecute_sql("SELECT 1")
        with pytest.raises(peewee.ImproperlyConfigured, match="register_hstore=False"):
            await asyncio.to_thread(asked.execute_sql, "SELECT 1")
        assert all(s.in_use == 0 and s.idle == 0 for s in asked.pool_stats())
    finally:
        await finish(asked)
