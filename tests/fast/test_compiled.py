"""Compiled queries: the same SQL and parameters as peewee builds, for any values."""

from __future__ import annotations

import datetime
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncSqliteDatabase, Param, compile_query

# compile_query is called by the application itself: the switch leaves it on.
pytestmark = pytest.mark.without_fast_paths


def _models(db: peewee.Database) -> tuple[Any, Any]:
    class Author(peewee.Model):
        name = peewee.CharField()

        class Meta:
            database = db

    class Book(peewee.Model):
        author = peewee.ForeignKeyField(Author)
        title = peewee.CharField()
        published = peewee.DateTimeField(null=True)

        class Meta:
            database = db

    return Author, Book


@pytest.fixture(params=["sqlite", "postgres-dialect"])
def dialect_db(request, tmp_path):
    if request.param == "sqlite":
        return AsyncSqliteDatabase(str(tmp_path / "c.db"))
    # Only SQL generation is exercised: no connection is ever opened.
    from fastpeewee import AsyncPostgresqlDatabase

    return AsyncPostgresqlDatabase("never_connected")


@pytest.mark.parametrize("pk", [1, 7, 10**9])
def test_select_matches_peewee_for_every_value(dialect_db, pk):
    _, Book = _models(dialect_db)
    template = compile_query(
        dialect_db, Book.select().where(Book.id == Param("pk")).paginate(1, 1)
    )
    expected = Book.select().where(Book.id == pk).paginate(1, 1).sql()
    assert (template.sql, template.bind({"pk": pk})) == expected
    assert template.names == ["pk"]


def test_converters_are_recorded_and_applied(dialect_db):
    Author, Book = _models(dialect_db)
    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    author = Author(id=3, name="x")
    template = compile_query(
        dialect_db,
        Book.select().where((Book.author == Param("a")) & (Book.published > Param("t"))),
    )
    expected = Book.select().where((Book.author == author) & (Book.published > when)).sql()
    # A model instance converts to its key, a datetime as the field converts it.
    assert (template.sql, template.bind({"a": author, "t": when})) == expected


def test_insert_and_update_templates(dialect_db):
    _, Book = _models(dialect_db)
    template = compile_query(
        dialect_db, Book.insert(title=Param("t", Book.title.db_value), author=Param("a"))
    )
    assert template.sql == Book.insert(title="x", author=1).sql()[0]
    update = compile_query(
        dialect_db, Book.update(title=Param("t", Book.title.db_value)).where(Book.id == Param("i"))
    )
    expected = Book.update(title="new").where(Book.id == 5).sql()
    assert (update.sql, update.bind({"t": "new", "i": 5})) == expected


def test_shapes_differ_so_do_templates(dialect_db):
    _, Book = _models(dialect_db)
    by_id = compile_query(dialect_db, Book.select().where(Book.id == Param("v")))
    by_title = compile_query(dialect_db, Book.select().where(Book.title == Param("v")))
    assert by_id.sql != by_title.sql
    assert by_title.sql == Book.select().where(Book.title == "z").sql()[0]


def test_a_value_that_peewee_renders_as_sql_is_refused(dialect_db):
    _, Book = _models(dialect_db)
    template = compile_query(dialect_db, Book.select().where(Book.title == Param("v")))
    # A node would become SQL text, not a parameter: bind() says so.
    assert template.bind({"v": peewee.fn.lower("X")}) is None
    assert template.bind({"v": Book}) is None


def test_constants_stay_constants(dialect_db):
    _, Book = _models(dialect_db)
    template = compile_query(dialect_db, Book.select().where(Book.id == Param("v")).limit(10))
    assert template.has_constants
    assert template.bind({"v": 2}) == Book.select().where(Book.id == 2).limit(10).sql()[1]
