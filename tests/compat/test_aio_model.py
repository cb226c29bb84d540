"""AioModel (peewee-async 0.12): model and query methods on real databases."""

from __future__ import annotations

from typing import Any

import peewee
import pytest

import fastpeewee.compat.peewee_async as peewee_async

from .support import Item, Shelf


async def test_model_methods(compat_db: Any) -> None:
    shelf = await Shelf.aio_create(name="top")
    assert (await Shelf.aio_get(shelf.id)).name == "top"  # an int is the primary key
    assert (await Shelf.aio_get(Shelf.name == "top")).id == shelf.id
    assert (await Shelf.aio_get(name="top")).id == shelf.id
    assert await Shelf.aio_get_or_none(Shelf.name == "none") is None
    with pytest.raises(Shelf.DoesNotExist):
        await Shelf.aio_get(name="none")
    same, created = await Shelf.aio_get_or_create(name="top")
    assert (same.id, created) == (shelf.id, False)
    other, created = await Shelf.aio_get_or_create(name="low")
    assert created and other.id != shelf.id
    shelf.name = "upper"
    assert await shelf.aio_save() == 1
    assert (await Shelf.aio_get(shelf.id)).name == "upper"
    item = Item(shelf=shelf, label="cup")
    assert await item.aio_save() == 1 and item.id is not None
    assert await shelf.aio_delete_instance(recursive=True) == 1
    assert await Item.select().aio_count() == 0


async def test_aio_save_calls_an_overridden_save(compat_db: Any) -> None:
    class Stamped(Shelf):
        def save(self, *args: Any, **kwargs: Any) -> Any:
            self.name = self.name.upper()
            return super().save(*args, **kwargs)

        class Meta:
            table_name = "compat_shelf"

    obj = await Stamped.aio_create(name="loud")
    assert (await Shelf.aio_get(obj.id)).name == "LOUD"


async def test_query_methods(compat_db: Any) -> None:
    shelf = await Shelf.aio_create(name="s")
    rows = [{"shelf": shelf.id, "label": f"i{n}", "qty": n} for n in range(5)]
    await Item.insert_many(rows).aio_execute()
    query = Item.select().where(Item.qty >= 2).order_by(Item.qty)
    assert [i.label for i in await query.aio_execute()] == ["i2", "i3", "i4"]
    assert (await query.aio_get()).label == "i2"
    assert await query.aio_count() == 3
    assert await query.limit(1).aio_count() == 1
    assert await query.limit(1).aio_count(clear_limit=True) == 3
    assert await query.aio_exists()
    assert not await Item.select().where(Item.qty > 99).aio_exists()
    totals = Item.select(peewee.fn.SUM(Item.qty), peewee.fn.COUNT(Item.id))
    assert await totals.aio_scalar() == 10
    assert await totals.aio_scalar(as_tuple=True) == (10, 5)
    # (a new value: MySQL counts changed rows, not matched ones)
    assert await Item.update(qty=-1).where(Item.qty < 2).aio_execute() == 2
    assert await Item.delete().where(Item.qty == -1).aio_execute() == 2  # type: ignore[arg-type]
    new_id = await Item.insert(shelf=shelf, label="x").aio_execute()
    raw = Item.raw(f"SELECT * FROM compat_item WHERE id = {compat_db.param}", new_id)
    assert [i.label for i in await raw.aio_execute()] == ["x"]
    union = Item.select().where(Item.qty == 4) | Item.select().where(Item.label == "x")
    assert sorted(i.label for i in await union.aio_execute()) == ["i4", "x"]
    with pytest.raises(Item.DoesNotExist):
        await Item.select().where(Item.qty > 99).aio_get()


async def test_aio_prefetch(compat_db: Any) -> None:
    for name, labels in (("a", ["x", "y"]), ("b", [])):
        shelf = await Shelf.aio_create(name=name)
        for label in labels:
            await Item.aio_create(shelf=shelf, label=label)
    shelves = await Shelf.select().order_by(Shelf.name).aio_prefetch(Item.select())
    assert [[i.label for i in s.items] for s in shelves] == [["x", "y"], []]
    again = await peewee_async.aio_prefetch(
        Shelf.select().order_by(Shelf.name), Item, prefetch_type=peewee.PREFETCH_TYPE.JOIN
    )
    assert [len(s.items) for s in again] == [2, 0]


async def test_aio_model_in_transactions(compat_db: Any) -> None:
    with pytest.raises(RuntimeError):
        async with compat_db.aio_atomic():
            await Shelf.aio_create(name="gone")
            raise RuntimeError
    assert await Shelf.select().aio_count() == 0


async def test_aio_model_also_has_the_pwasyncio_names(compat_db: Any) -> None:
    shelf = await Shelf.acreate(name="pw")
    assert (await Shelf.aget(Shelf.id == shelf.id)).name == "pw"
    assert await Shelf.select().aexecute() is not None


async def test_query_methods_take_an_explicit_database(compat_db: Any) -> None:
    await Shelf.aio_create(name="e")
    assert await Shelf.select().aio_count(compat_db) == 1
    assert (await Shelf.select().aio_get(compat_db)).name == "e"
