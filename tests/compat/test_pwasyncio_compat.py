"""A program written for playhouse.pwasyncio runs after changing only its import."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import playhouse.pwasyncio
import pytest

import fastpeewee

from ..conftest import selected_backends

PROGRAM = textwrap.dedent(
    """
    import asyncio
    import peewee
    from playhouse.pwasyncio import AsyncSqliteDatabase, AsyncModel, MissingGreenletBridge

    db = AsyncSqliteDatabase(DB_PATH, pool_size=4, acquire_timeout=5)

    class Base(AsyncModel):
        class Meta:
            database = db

    class Author(Base):
        name = peewee.TextField(unique=True)

    class Book(Base):
        author = peewee.ForeignKeyField(Author, backref="books")
        title = peewee.TextField()

    async def main():
        async with db:
            await db.acreate_tables([Author, Book])
            ann = await Author.acreate(name="ann")
            async with db.atomic() as txn:
                await Book.acreate(author=ann, title="one")
                async with db.atomic() as sp:
                    await Book.acreate(author=ann, title="draft")
                    await sp.arollback()
            author, created = await Author.aget_or_create(name="ann")
            assert not created
            titles = [b.title for b in await db.list(ann.books)]
            count = await db.count(Book.select())
            first = await db.first(Book.select().order_by(Book.title))
            streamed = [b.title async for b in db.iterate(Book.select())]
            book = await Book.aget(Book.title == "one")
            owner = await book.afetch(Book.author)
            rows = await Book.update(title="ONE").where(Book.id == book.id).aexecute()
            try:
                Author.get(Author.name == "ann")
            except MissingGreenletBridge:
                refused = True
        await db.close_pool()
        return titles, count, first.title, streamed, owner.name, rows, refused

    RESULT = asyncio.run(main())
    """
)


def test_pwasyncio_program_runs_with_only_its_import_changed(tmp_path: Path):
    source = PROGRAM.replace("from playhouse.pwasyncio import", "from fastpeewee import")
    namespace: dict[str, Any] = {"DB_PATH": str(tmp_path / "books.db")}
    # asyncio.run needs a thread without a running loop; this test is sync.
    exec(compile(source, "pwasyncio_program.py", "exec"), namespace)
    assert namespace["RESULT"] == (["one"], 1, "one", ["one"], "ann", 1, True)


def test_the_same_program_runs_on_mariadb(request: pytest.FixtureRequest):
    if "mysql" not in selected_backends():
        pytest.skip("mysql is not in FASTPEEWEE_BACKENDS")
    server = request.getfixturevalue("mariadb_server")
    source = PROGRAM.replace(
        "from playhouse.pwasyncio import AsyncSqliteDatabase,",
        "from fastpeewee import AsyncMySQLDatabase,",
    ).replace(
        "db = AsyncSqliteDatabase(DB_PATH, pool_size=4, acquire_timeout=5)",
        "db = AsyncMySQLDatabase(DB_NAME, **PARAMS, pool_size=4, acquire_timeout=5)",
    )
    assert "AsyncMySQLDatabase(DB_NAME" in source
    server.sql_as_root(f"DROP TABLE IF EXISTS {server.database}.book, {server.database}.author")
    namespace = {"DB_NAME": server.database, "PARAMS": server.connect_params}
    exec(compile(source, "pwasyncio_program.py", "exec"), namespace)
    assert namespace["RESULT"] == (["one"], 1, "one", ["one"], "ann", 1, True)


def test_the_public_names_of_pwasyncio_exist():
    shared = [
        "AsyncDatabaseMixin",
        "AsyncModel",
        "AsyncModelMixin",
        "AsyncMySQLDatabase",
        "AsyncPostgresqlDatabase",
        "AsyncSqliteDatabase",
        "MissingGreenletBridge",
        "async_atomic",
        "async_savepoint",
        "async_transaction",
        "await_",
        "greenlet_spawn",
    ]
    for name in shared:
        assert hasattr(playhouse.pwasyncio, name), name
        assert hasattr(fastpeewee, name), name
