"""The SELECT shape cache: peewee's SQL and parameters for every value, shape,
schema and dialect; anything unusual is left to peewee."""

from __future__ import annotations

import random

import peewee
import pytest

from fastpeewee import AsyncPostgresqlDatabase, AsyncSqliteDatabase
from fastpeewee.fast.shapes import select_sql, shape_of


@pytest.fixture
def two_dbs(tmp_path):
    # Only SQL is built: no connection is opened on either.
    return AsyncSqliteDatabase(str(tmp_path / "s.db")), AsyncPostgresqlDatabase("unused")


def make_item(db):
    class Item(peewee.Model):
        name = peewee.CharField()
        price = peewee.IntegerField()

        class Meta:
            database = db

    return Item


SHAPES = [
    lambda m, v: m.select().where(m.id == v[0]),
    lambda m, v: m.select().where(m.id == v[0]).paginate(1, 1),
    lambda m, v: m.select().order_by(m.id).limit(v[0] % 50 + 1).offset(v[1] % 100),
    lambda m, v: m.select(m.name).where((m.price > v[0]) & (m.name != str(v[1]))),
    lambda m, v: m.select().where((m.price < v[0]) | (m.name.contains(str(v[1])))),
    lambda m, v: m.select().where(m.price >= v[0]).order_by(m.price.desc(), m.name),
    lambda m, v: m.select().offset(v[0] % 7),
]


@pytest.mark.parametrize("make_query", SHAPES)
def test_every_value_gives_peewee_sql(two_dbs, make_query):
    rng = random.Random(5)
    for db in two_dbs:
        Item = make_item(db)
        for _ in range(6):
            query = make_query(Item, (rng.randint(0, 10**6), rng.randint(0, 10**6)))
            assert shape_of(query) is not None
            assert select_sql(db, query) == query.sql()


UNUSUAL = [
    lambda m: m.select().where(m.id.in_([1, 2, 3])),
    lambda m: m.select().where(m.name == None),  # noqa: E711 (renders IS NULL)
    lambda m: m.select().where(m.name == peewee.fn.lower("X")),
    lambda m: m.select(peewee.fn.COUNT(m.id)),
    lambda m: m.select().group_by(m.name),
    lambda m: m.select().where(m.id == 1).for_update(),
    lambda m: m.select(m.name.alias("n")),
    lambda m: m.select().distinct(),
    lambda m: m.select().limit(True),
]


@pytest.mark.parametrize("make_query", UNUSUAL)
def test_unusual_queries_are_left_to_peewee(two_dbs, make_query):
    db = two_dbs[1]
    Item = make_item(db)
    query = make_query(Item)
    assert shape_of(query) is None
    assert select_sql(db, query) == query.sql()


def test_shapes_with_equal_values_differ(two_dbs):
    db = two_dbs[0]
    Item = make_item(db)
    by_id = Item.select().where(Item.id == 3)
    by_price = Item.select().where(Item.price == 3)
    assert shape_of(by_id)[0] != shape_of(by_price)[0]  # type: ignore[index]
    assert select_sql(db, by_id) == by_id.sql()
    assert select_sql(db, by_price) == by_price.sql()


def test_schema_changes_recompile(two_dbs):
    db = two_dbs[1]
    Item = make_item(db)
    query = lambda: Item.select().where(Item.price == 1)  # noqa: E731
    assert select_sql(db, query()) == query().sql()
    Item._meta.add_field("extra", peewee.TextField(null=True))
    assert "extra" in select_sql(db, query())[0]
    assert select_sql(db, query()) == query().sql()
    Item._meta.remove_field("name")
    Item._meta.add_field("name", peewee.CharField(column_name="title"))
    assert select_sql(db, query()) == query().sql()
    Item._meta.set_table_name("renamed")
    assert select_sql(db, query()) == query().sql()
    assert '"renamed"' in select_sql(db, query())[0]


def test_same_model_on_two_dialects(two_dbs):
    sqlite, postgres = two_dbs
    Item = make_item(sqlite)
    first = select_sql(sqlite, Item.select().where(Item.id == 1))
    assert "?" in first[0]
    Item.bind(postgres)
    second = select_sql(postgres, Item.select().where(Item.id == 1))
    assert "%s" in second[0] and second == Item.select().where(Item.id == 1).sql()


@pytest.mark.parametrize("make_query", SHAPES)
def test_first_row_sql_is_that_of_paginate(two_dbs, make_query):
    from fastpeewee.fast.shapes import first_row_sql

    rng = random.Random(9)
    for db in two_dbs:
        Item = make_item(db)
        for _ in range(4):
            query = make_query(Item, (rng.randint(0, 10**6), rng.randint(0, 10**6)))
            assert first_row_sql(db, query) == query.paginate(1, 1).sql()
