"""afetch/fetch by the parents' keys (a LIMIT): plain selects, rows as peewee's Load leaves them.

The list relations of a query with a LIMIT are loaded by the parents' keys as
separate selects (``db.list``'s native path) rather than through peewee's
``with_related``. These tests hold the result to peewee's own: the same SQL
and parameters for the key list, the same rows hung on the same parents, the
same number of queries, on every backend.
"""

from __future__ import annotations

import asyncio
from typing import Any

from peewee import query_to_string  # type: ignore[attr-defined]

from fastpeewee import afetch, afetch_one, fetch, to_pydantic
from fastpeewee.schema._load import _Keys, aload, plan_loading, prepare, validate

from ..schema_models import Category, Item, Person, Tag
from .test_schema_loading import (
    CategoryFamily,
    ItemWithOwnerItems,
    PersonDeep,
    PersonRead,
    PersonWithItems,
    TagWithItemOwner,
    counting,
    seed,
    shop,  # noqa: F401 - the fixture
)

ItemRead = to_pydantic(Item, variant="read")
PersonReviews = to_pydantic(
    Person, variant="read", relationships={Person.reviews: list[ItemRead]}, model_name="PR"
)
ItemWithReviewerItems = to_pydantic(
    Item, variant="read", relationships={Item.reviewer: PersonWithItems}, model_name="IRI"
)


def test_key_list_renders_as_peewee_renders_a_list(shop: Any) -> None:  # noqa: F811
    keys = [3, 1, 2]
    for column in (Item.owner, Item.id, Person.id):
        model = column.model
        ours = model.select().where(column << _Keys(keys)).order_by(model.id)
        peewees = model.select().where(column << keys).order_by(model.id)
        assert ours.sql() == peewees.sql()
        assert query_to_string(ours) == query_to_string(peewees)
    # A key of another type goes through the column's db_value, as in peewee.
    ours = Item.select().where(Item.owner << _Keys(["7"])).sql()
    assert ours == Item.select().where(Item.owner << ["7"]).sql() and ours[1] == [7]


async def _old_way(db: Any, query: Any, schema: Any) -> list[Any]:
    """afetch before the key loads: peewee's with_related through the bridge."""
    return validate(await db.list(prepare(query, schema)), schema)


async def test_same_rows_as_peewees_with_related(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=12, items_each=3, tags_each=2)
    root = await Category.acreate(name="root")
    for name in ("a", "b"):
        await Category.acreate(name=name, parent=root)
    cases = [
        (Person.select().order_by(Person.id).limit(10), PersonDeep),
        (Person.select().order_by(Person.id.desc()).limit(5).offset(2), PersonWithItems),
        (Item.select().order_by(Item.id).limit(20), ItemWithOwnerItems),
        (Item.select().order_by(Item.id).limit(20), ItemWithReviewerItems),
        (Tag.select().order_by(Tag.id).limit(30), TagWithItemOwner),
        (Person.select().order_by(Person.id).limit(12), PersonReviews),
        (Category.select().order_by(Category.id).limit(3), CategoryFamily),
    ]
    for query, schema in cases:
        with counting(shop) as new_sql:
            new = await afetch(query, schema)
        with counting(shop) as old_sql:
            old = await _old_way(shop, query, schema)
        assert new and [r.model_dump() for r in new] == [r.model_dump() for r in old], schema
        assert len(new_sql) <= len(old_sql), (schema, new_sql, old_sql)
        assert not any("IN (SELECT" in sql for sql in new_sql), new_sql  # keys, as before


async def test_query_counts_and_no_query_without_keys(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=30, items_each=2, tags_each=1)
    await Item.update(reviewer=None).aexecute()
    with counting(shop) as sql:
        rows = await afetch(Person.select().order_by(Person.id).limit(25), PersonDeep)
    assert len(sql) == 3 and len(rows) == 25 and all(len(p.items) == 2 for p in rows)
    # No reviewer anywhere: there is no key to look up, so no query for them.
    with counting(shop) as sql:
        items = await afetch(Item.select().limit(10), ItemWithReviewerItems)
    assert len(sql) == 1 and [i.reviewer for i in items] == [None] * 10
    # No parent row: no further query at all.
    with counting(shop) as sql:
        assert await afetch(Person.select().where(Person.id < 0).limit(5), PersonDeep) == []
    assert len(sql) == 1


async def test_children_point_back_at_their_parent_objects(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=4, items_each=2, tags_each=2)
    loading = plan_loading(Person.select().order_by(Person.id).limit(4), PersonDeep)
    assert loading.node is not None and "JOIN" not in loading.query.sql()[0]
    people = await shop.list(loading.query)
    with counting(shop) as sql:
        await aload(people, loading.node, shop.list)
        for person in people:
            assert [item.owner for item in person.items] == [person, person]
            assert all(tag.item is item for item in person.items for tag in item.tags)
    assert len(sql) == 2  # items, tags; reading item.owner and tag.item ran none


async def test_sync_fetch_takes_the_same_way(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=6, items_each=2, tags_each=1)
    query = Person.select().order_by(Person.id).limit(6)

    def work() -> tuple[list[Any], int]:
        with counting(shop) as sql:
            return fetch(query, PersonDeep), len(sql)

    rows, queries = await asyncio.to_thread(work)
    assert queries == 3
    assert [r.model_dump() for r in rows] == [
        r.model_dump() for r in await _old_way(shop, query, PersonDeep)
    ]
    one = await afetch_one(Person.select().where(Person.email == "p002@example.com"), PersonDeep)
    assert one.email == "p002@example.com" and len(one.items) == 2


async def test_a_query_with_its_own_loads_keeps_peewees_way(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=3, items_each=2, tags_each=1)
    query = Person.select().order_by(Person.id).limit(3).with_related(Person.reviews)
    loading = plan_loading(query, PersonWithItems)
    assert loading.node is None  # every relation loads through with_related
    rows = await afetch(query, PersonWithItems)
    assert [len(p.items) for p in rows] == [2, 2, 2]


async def test_a_query_object_fetched_twice_runs_twice(shop: Any) -> None:  # noqa: F811
    await seed(shop, people=2, items_each=1, tags_each=0)
    page = Person.select().order_by(Person.id).limit(10)  # e.g. kept at module level
    assert len(await afetch(page, PersonWithItems)) == 2
    assert len(await afetch(page, PersonRead)) == 2  # no relation to load
    await Person.acreate(email="late@example.com")
    assert len(await afetch(page, PersonWithItems)) == 3
    assert len(await afetch(page, PersonRead)) == 3
    everyone = Person.select().order_by(Person.id)  # no LIMIT: the subquery way
    assert len(await afetch(everyone, PersonRead)) == 3
    await Person.acreate(email="later@example.com")
    assert len(await afetch(everyone, PersonRead)) == 4
    assert len(await afetch(page, PersonWithItems)) == 4
    assert [vars(q)["_cursor_wrapper"] for q in (page, everyone)] == [None, None]  # never ran
