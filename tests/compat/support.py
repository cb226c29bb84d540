"""Models and a database fixture for the peewee-async compatibility tests.

The models are plain ``peewee.Model`` classes bound to a ``peewee.DatabaseProxy``
(as peewee-async-era code often was), plus one unbound model used only through
``Manager``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import peewee
import pytest

import fastpeewee.compat.peewee_async as peewee_async

from ..conftest import assert_no_leaks, settle

proxy = peewee.DatabaseProxy()


class Base(peewee.Model):
    class Meta:
        database = proxy


class Author(Base):
    name = peewee.CharField(unique=True, max_length=100)
    bio = peewee.TextField(default="")

    class Meta:
        table_name = "compat_author"


class Book(Base):
    author = peewee.ForeignKeyField(Author, backref="books", null=True)
    title = peewee.CharField(max_length=100)
    pages = peewee.IntegerField(default=0)

    class Meta:
        table_name = "compat_book"


class Review(Base):
    book = peewee.ForeignKeyField(Book, backref="reviews")
    stars = peewee.IntegerField()

    class Meta:
        table_name = "compat_review"


class Note(peewee.Model):
    """Bound to no database: reachable through a Manager only."""

    text = peewee.CharField(max_length=100)

    class Meta:
        table_name = "compat_note"


class AioBase(peewee_async.AioModel):
    class Meta:
        database = proxy


class Shelf(AioBase):
    name = peewee.CharField(unique=True, max_length=100)

    class Meta:
        table_name = "compat_shelf"


class Item(AioBase):
    shelf = peewee.ForeignKeyField(Shelf, backref="items")
    label = peewee.CharField(max_length=100)
    qty = peewee.IntegerField(default=0)

    class Meta:
        table_name = "compat_item"


BOUND = [Author, Book, Review, Shelf, Item]


def make_compat_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> Any:
    """A compat database class for ``backend`` with small, fast-failing pools."""
    options = {"max_connections": 4, "acquire_timeout": 2.0, **options}
    if backend == "sqlite":
        options.setdefault("pragmas", {"foreign_keys": 1, "synchronous": 0})
        return peewee_async.SqliteDatabase(str(tmp_path / "compat.db"), **options)
    if backend == "mysql":
        maria = request.getfixturevalue("mariadb_server")
        return peewee_async.PooledMySQLDatabase(maria.database, **maria.connect_params, **options)
    server = request.getfixturevalue("postgres_server")
    return peewee_async.PooledPostgresqlDatabase(
        server.database, **server.connect_params, **options
    )


# Server databases whose tables exist: later tests only empty them (DDL is slow on MariaDB).
_created: set[tuple[str, str]] = set()


def reset_tables(db: Any, backend: str) -> None:
    """Empty tables for the models (run in a thread: sync code needs no permission there)."""
    models = [*BOUND, Note]
    key = (backend, repr(sorted(db.connect_params.items())))
    with db.bind_ctx([Note]):
        if backend != "sqlite" and key in _created:
            for model in reversed(peewee.sort_models(models)):  # type: ignore[attr-defined]
                model.delete().execute()
            return
        db.drop_tables(models, safe=True)
        db.create_tables(models)
        _created.add(key)


async def finish(db: Any) -> None:
    """Check every connection went back, then close the pools."""
    await settle(db)
    try:
        assert_no_leaks(db)
    finally:
        await db.close_pool()
        db.close_all()


async def open_compat_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> AsyncIterator[Any]:
    """Yield a compat database with fresh tables, bound to the proxy."""
    db = make_compat_database(backend, request, tmp_path, **options)
    proxy.initialize(db)
    await asyncio.to_thread(reset_tables, db, backend)
    try:
        yield db
    finally:
        await finish(db)
        proxy.initialize(None)
