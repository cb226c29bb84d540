"""afetch/fetch: relations loaded in a fixed number of queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from fastpeewee import (
    MissingGreenletBridge,
    UnloadedRelation,
    afetch,
    afetch_one,
    fetch,
    fetch_one,
    to_pydantic,
)

from ..schema_models import SCHEMA_MODELS, Category, Item, Person, Tag, bind_schema_models

TagRead = to_pydantic(Tag, variant="read")
ItemRead = to_pydantic(Item, variant="read")
ItemWithTags = to_pydantic(
    Item, variant="read", relationships={Item.tags: list[TagRead]}, model_name="ItemWithTags"
)
PersonRead = to_pydantic(Person, variant="read")
PersonWithItems = to_pydantic(
    Person,
    variant="read",
    relationships={Person.items: list[ItemRead]},
    model_name="PersonWithItems",
)
PersonDeep = to_pydantic(
    Person,
    variant="read",
    relationships={Person.items: list[ItemWithTags]},
    model_name="PersonDeep",
)
ItemWithPeople = to_pydantic(
    Item,
    variant="read",
    relationships={Item.owner: PersonRead, Item.reviewer: PersonRead},
    model_name="ItemWithPeople",
)
ItemWithOwnerItems = to_pydantic(
    Item, variant="read", relationships={Item.owner: PersonWithItems}, model_name="ItemOwnerItems"
)
TagWithItemOwner = to_pydantic(
    Tag, variant="read", relationships={Tag.item: ItemWithPeople}, model_name="TagDeep"
)


@pytest.fixture
async def shop(db: Any) -> AsyncIterator[Any]:
    bind_schema_models(db)
    await db.adrop_tables(SCHEMA_MODELS, safe=True)
    await db.acreate_tables(SCHEMA_MODELS)
    yield db
    await db.adrop_tables(SCHEMA_MODELS, safe=True)


@contextmanager
def counting(db: Any) -> Iterator[list[str]]:
    """The SQL of every statement the database runs inside the block."""
    seen: list[str] = []

    def hook(event: Any) -> None:
        seen.append(event.sql)

    db.query_hooks.append(hook)
    try:
        yield seen
    finally:
        db.query_hooks.remove(hook)


async def seed(db: Any, people: int, items_each: int = 2, tags_each: int = 1) -> None:
    async with db.atomic():
        rows = [{"email": f"p{i:03d}@example.com"} for i in range(people)]
        await Person.insert_many(rows).aexecute()
        ids = [p.id for p in await db.list(Person.select().order_by(Person.id))]
        items = [
            {"title": f"{pid}-{n}", "owner": pid, "reviewer": ids[0] if n else None}
            for pid in ids
            for n in range(items_each)
        ]
        if items:
            await Item.insert_many(items).aexecute()
        item_ids = [i.id for i in await db.list(Item.select(Item.id).order_by(Item.id))]
        tags = [{"item": iid, "label": f"t{n}"} for iid in item_ids for n in range(tags_each)]
        if tags:
            await Tag.insert_many(tags).aexecute()


async def test_a_person_with_items_and_their_tags(shop: Any) -> None:
    await seed(shop, people=3, items_each=2, tags_each=2)
    people = await afetch(Person.select().order_by(Person.id), PersonDeep)
    assert [p.email for p in people] == [f"p00{n}@example.com" for n in range(3)]
    first = people[0]
    assert isinstance(first, PersonDeep)
    assert [i.title for i in first.items] == [f"{first.id}-0", f"{first.id}-1"]
    assert [t.label for t in first.items[0].tags] == ["t0", "t1"]
    assert all(i.owner_id == p.id for p in people for i in p.items)


async def test_an_item_with_its_owner_and_a_null_reviewer(shop: Any) -> None:
    await seed(shop, people=2, items_each=2)
    with counting(shop) as sql:
        items = await afetch(Item.select().order_by(Item.id), ItemWithPeople)
    assert len(sql) == 1, sql  # both people come from joins in the same query
    assert items[0].reviewer is None
    assert items[1].reviewer.email == "p000@example.com"
    assert [i.owner.email for i in items] == ["p000@example.com"] * 2 + ["p001@example.com"] * 2


async def test_nested_to_one_relations_are_joined(shop: Any) -> None:
    await seed(shop, people=2, items_each=2, tags_each=1)
    with counting(shop) as sql:
        tags = await afetch(Tag.select().order_by(Tag.id), TagWithItemOwner)
    assert len(sql) == 1, sql
    assert tags[-1].item.owner.email == "p001@example.com"
    assert tags[-1].item.reviewer.email == "p000@example.com"


async def test_a_list_under_a_to_one_relation(shop: Any) -> None:
    await seed(shop, people=2, items_each=3)
    with counting(shop) as sql:
        items = await afetch(Item.select().order_by(Item.id), ItemWithOwnerItems)
    assert len(sql) == 3, sql  # items, their owners, the owners' items
    assert [i.title for i in items[0].owner.items] == [i.title for i in items[:3]]


async def test_people_without_items_get_an_empty_list(shop: Any) -> None:
    await seed(shop, people=2, items_each=0)
    people = await afetch(Person.select(), PersonWithItems)
    assert [p.items for p in people] == [[], []]


@pytest.mark.parametrize("limited", [True, False], ids=["with-limit", "no-limit"])
async def test_query_count_does_not_grow_with_the_rows(shop: Any, limited: bool) -> None:
    await seed(shop, people=100, items_each=2, tags_each=1)
    counts = {}
    for people in (10, 100):
        query = Person.select().order_by(Person.id)
        query = query.limit(people) if limited else query.where(Person.id <= people)
        with counting(shop) as sql:
            rows = await afetch(query, PersonDeep)
        assert len(rows) == people
        assert sum(len(p.items) for p in rows) == 2 * people
        counts[people] = len(sql)
        # With a LIMIT the parents' keys are sent; without, a subquery selects them.
        assert ("IN (SELECT" in sql[1]) is not limited, sql[1]
    assert counts == {10: 3, 100: 3}  # people, items, tags


async def test_prefetch_type_can_be_chosen(shop: Any) -> None:
    await seed(shop, people=3)
    for kind, subquery in [("WHERE", True), ("MATERIALIZE", False)]:
        with counting(shop) as sql:
            people = await afetch(
                Person.select().limit(3),
                PersonWithItems,
                prefetch_type=getattr(peewee.PREFETCH_TYPE, kind),
            )
        assert ("IN (SELECT" in sql[1]) is subquery and len(people) == 3, (kind, sql)


async def test_sync_fetch_in_a_thread(shop: Any) -> None:
    await seed(shop, people=20, items_each=2)

    def work() -> tuple[list[Any], Any, int]:
        with counting(shop) as sql:
            people = fetch(Person.select().order_by(Person.id), PersonWithItems)
            one = fetch_one(Person.select().where(Person.email == "p003@example.com"), PersonDeep)
        return people, one, len(sql)

    people, one, queries = await asyncio.to_thread(work)
    assert len(people) == 20 and all(len(p.items) == 2 for p in people)
    assert one.email == "p003@example.com" and len(one.items) == 2
    assert queries == 2 + 3


async def test_afetch_one_and_does_not_exist(shop: Any) -> None:
    await seed(shop, people=3)
    query = Person.select().where(Person.email == "p001@example.com")
    person = await afetch_one(query, PersonDeep)
    assert person.email == "p001@example.com" and len(person.items) == 2
    with pytest.raises(Person.DoesNotExist, match="Person instance matching query"):
        await afetch_one(Person.select().where(Person.id == -1), PersonWithItems)

    def missing() -> None:
        fetch_one(Person.select().where(Person.id == -1), PersonRead)

    with pytest.raises(Person.DoesNotExist):
        await asyncio.to_thread(missing)


async def test_a_model_class_is_a_query_of_all_rows(shop: Any) -> None:
    await seed(shop, people=2)
    assert len(await afetch(Person, PersonWithItems)) == 2
    with pytest.raises(TypeError, match="model select"):
        await afetch("SELECT 1", PersonRead)
    with pytest.raises(ValueError, match="model instances"):
        await afetch(Person.select().dicts(), PersonRead)


async def test_hand_written_schemas_are_read_the_same_way(shop: Any) -> None:
    class ItemOut(BaseModel):
        title: str

    class PersonOut(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        email: str
        items: list[ItemOut]

    await seed(shop, people=5, items_each=2)
    with counting(shop) as sql:
        people = await afetch(Person.select(), PersonOut)
    assert len(sql) == 2 and all(len(p.items) == 2 for p in people)


async def test_unloaded_list_in_async_code_names_afetch(shop: Any) -> None:
    await seed(shop, people=1)
    person = await Person.aget(Person.email == "p000@example.com")
    with counting(shop) as sql, pytest.raises(UnloadedRelation, match=r"afetch\(") as info:
        PersonWithItems.model_validate(person)
    assert not isinstance(info.value, ValidationError)
    assert isinstance(info.value, MissingGreenletBridge)  # what a blocking query raises
    assert "PersonWithItems.items" in str(info.value)
    assert sql == []


async def test_unloaded_foreign_key_in_async_code_names_afetch(shop: Any) -> None:
    await seed(shop, people=2, items_each=2)
    item = await Item.aget(Item.title.endswith("-1"))
    with counting(shop) as sql, pytest.raises(UnloadedRelation, match=r"ItemWithPeople\.owner"):
        ItemWithPeople.model_validate(item)
    assert sql == []
    # A NULL foreign key needs no query, so it is not "unloaded".
    unreviewed = await Item.aget(Item.title.endswith("-0"))
    unreviewed.__rel__["owner"] = await Person.aget_by_id(unreviewed.owner_id)
    assert ItemWithPeople.model_validate(unreviewed).reviewer is None


async def test_rows_prefetched_with_peewee_count_as_loaded(shop: Any) -> None:
    await seed(shop, people=2, items_each=2)
    people = await shop.aprefetch(Person.select(), Item.select())
    assert [len(PersonWithItems.model_validate(p).items) for p in people] == [2, 2]


async def test_sync_code_may_still_load_lazily(shop: Any) -> None:
    await seed(shop, people=1, items_each=2)

    def lazy() -> int:
        person = Person.get(Person.email == "p000@example.com")
        return len(PersonWithItems.model_validate(person).items)

    assert await asyncio.to_thread(lazy) == 2
    assert await shop.run(lazy) == 2  # db.run is sync code too


async def test_schema_round_trip_create_update_read(shop: Any) -> None:
    create, update = to_pydantic(Person, variant="create"), to_pydantic(Person, variant="update")
    data = create(email="ann@example.com", nickname="ann", karma=2**63 - 1, balance="12.34")
    person = await Person.acreate(**data.model_dump())
    patch = update(nickname=None, score=-(2**31))
    await (
        Person.update(**patch.model_dump(exclude_unset=True))
        .where(Person.id == person.id)
        .aexecute()
    )
    read = await afetch_one(Person.select().where(Person.id == person.id), PersonRead)
    assert (read.nickname, read.score, read.karma) == (None, -(2**31), 2**63 - 1)
    assert str(read.balance) == "12.34"
    assert read.email == "ann@example.com" and read.role == "member"


def test_a_schema_nesting_itself_is_refused() -> None:
    class CategoryTree(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        name: str
        children: list[CategoryTree]

    with pytest.raises(ValueError, match="nests itself"):
        fetch(Category.select(), CategoryTree)


def test_peewee_query_is_not_modified() -> None:
    query = Item.select().order_by(Item.id)
    before = query.sql()
    from fastpeewee.schema._load import prepare

    prepared = prepare(query, ItemWithPeople)
    assert query.sql() == before != prepared.sql()
    assert isinstance(prepared, peewee.ModelSelect)


async def test_hand_written_schema_on_an_unloaded_row_still_points_to_afetch(shop: Any) -> None:
    # Not made by to_pydantic, so no check before pydantic reads the attribute:
    # pydantic wraps the blocking-query error, whose hint names afetch.
    class PersonOut(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        items: list[Any]

    class ItemOut(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        owner: PersonOut

    await seed(shop, people=1, items_each=1)
    item = await Item.aget(Item.title.endswith("-0"))
    with pytest.raises(ValidationError, match=r"fastpeewee\.afetch\(query, Schema\)"):
        ItemOut.model_validate(item)


CategoryRead = to_pydantic(Category, variant="read")
CategoryFamily = to_pydantic(
    Category,
    variant="read",
    relationships={Category.parent: CategoryRead, Category.children: list[CategoryRead]},
    model_name="CategoryFamily",
)


async def test_self_referencing_relations_both_ways(shop: Any) -> None:
    root = await Category.acreate(name="root")
    for name in ("a", "b"):
        await Category.acreate(name=name, parent=root)
    with counting(shop) as sql:
        rows = await afetch(Category.select().order_by(Category.id), CategoryFamily)
    assert len(sql) == 2, sql  # the parent is joined (aliased), the children are one query
    assert rows[0].parent is None and [c.name for c in rows[0].children] == ["a", "b"]
    assert [r.parent.name for r in rows[1:]] == ["root", "root"]
    assert [r.children for r in rows[1:]] == [[], []]


async def test_afetch_inside_a_transaction_sees_its_own_rows(shop: Any) -> None:
    async with shop.atomic() as txn:
        person = await Person.acreate(email="new@example.com")
        await Item.acreate(title="fresh", owner=person)
        found = await afetch_one(Person.select().where(Person.id == person.id), PersonWithItems)
        assert [i.title for i in found.items] == ["fresh"]
        await txn.arollback()
    assert await afetch(Person.select(), PersonWithItems) == []
