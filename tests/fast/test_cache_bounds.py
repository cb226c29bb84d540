"""Bounded memory: every cache is bounded, and none keeps a database object, a model
class made at runtime or a query alive (RELIABILITY R22)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import itertools
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import peewee
import pytest
from peewee import fn

import fastpeewee
from fastpeewee import AsyncModel
from fastpeewee.fast import fastpath, rows

from ..conftest import make_database
from ..models import MODELS, Tweet, User, bind_models

# What 4,000 more queries may add once the caches are warm. Before the fix the
# hydration layout cache alone kept ~2 KB a query (8 MB here).
GROWTH_BOUND = 256 * 1024


def _distinct_value_selects(i: int) -> list[Any]:
    """Selects of one shape each, with a value that differs on every call."""
    return [
        User.select(User.id, (User.id + i).alias("x")),
        User.select(User.id, fn.LOWER(f"Name {i}").alias("lowered")),
        User.select(User.username, peewee.Value(f"v{i}").alias("v")).where(User.id == i % 3 + 1),
        User.select(User.username.alias("name"), User.id).where(User.id > -i),
    ]


async def _run_distinct_selects(db: Any, start: int, stop: int) -> None:
    for i in range(start, stop):
        for query in _distinct_value_selects(i):
            if i % 2:
                await db.list(query)
            else:
                await db.get(query)


def _traced_after_gc() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_selects_with_distinct_values_keep_memory_bounded(db):
    for name in ("ann", "bob", "cy"):
        await User.acreate(username=name)
    await _run_distinct_selects(db, 0, 250)  # 1,000 selects: connections, caches, imports
    tracemalloc.start()  # traces what is allocated from here on
    try:
        warm = _traced_after_gc()
        await _run_distinct_selects(db, 250, 1250)  # 4,000 more
        grown = _traced_after_gc() - warm
    finally:
        tracemalloc.stop()
    assert grown < GROWTH_BOUND, f"{grown:,} bytes kept by 4,000 selects"


async def _exercise_fast_paths(database: Any) -> None:
    """Every fast path and cache a model's queries go through, on ``database``."""
    ann = await User.acreate(username="ann")
    await Tweet.acreate(user=ann, content="hello")
    ann.username = "anne"
    await ann.asave()
    assert (await User.aget_by_id(ann.id)).username == "anne"
    assert (await database.get(User.select().where(User.id == ann.id))).id == ann.id
    assert len(await database.list(User.select().order_by(User.id).limit(5))) == 1
    await database.list(User.select(User.id, (User.id + 1).alias("x")))
    await database.get(Tweet.select(Tweet.content.alias("text")).where(Tweet.likes >= 0))
    await Tweet.insert_many([{"user": ann, "content": f"t{i}"} for i in range(30)]).aexecute()
    await Tweet.abulk_create([Tweet(user=ann, content=f"b{i}") for i in range(5)])
    tweets = fastpeewee.to_pydantic(Tweet)
    schema = fastpeewee.to_pydantic(User, relationships={User.tweets: list[tweets]})
    assert len((await fastpeewee.afetch(User.select(), schema))[0].tweets) == 36


async def _use_and_close(make: Any, main: Any) -> weakref.ref[Any]:
    database = make()
    bind_models(database)
    try:
        await database.adrop_tables(MODELS, safe=True)
        await database.acreate_tables(MODELS)
        await _exercise_fast_paths(database)
        await database.adrop_tables(MODELS)
    finally:
        await database.close_pool()
        database.close_all()
        bind_models(main)
    return weakref.ref(database)


async def test_a_database_object_is_collected_once_unreferenced(
    db, backend, request, tmp_path_factory
):
    other_dir: Path = tmp_path_factory.mktemp("other")
    # Made and used in a task of its own, as a request handler would: a task's
    # scope holds the databases it used until the task ends.
    gone = await asyncio.create_task(
        _use_and_close(lambda: make_database(backend, request, other_dir), db)
    )
    await db.acreate_tables(MODELS, safe=True)  # the fixture's tables, on a shared server
    gc.collect()
    assert gone() is None, _referrers(gone())


async def test_a_model_class_made_at_runtime_is_collected(db):
    class Note(AsyncModel):
        title = peewee.CharField()
        stars = peewee.IntegerField(default=0)

        class Meta:
            database = db
            table_name = "runtime_note"

    await db.adrop_tables([Note], safe=True)
    await db.acreate_tables([Note])
    note = await Note.acreate(title="a")
    note.stars = 3
    await note.asave()
    await Note.aget_by_id(note.id)
    await db.get(Note.select().where(Note.title == "a"))
    await db.list(Note.select(Note.id, (Note.stars * 2).alias("double")).order_by(Note.id))
    await db.list(Note.select(fn.UPPER(Note.title).alias("loud")))
    await Note.insert_many([{"title": f"n{i}"} for i in range(20)]).aexecute()
    await Note.abulk_create([Note(title=f"b{i}") for i in range(3)])
    await fastpeewee.afetch(Note.select(), fastpeewee.to_pydantic(Note))
    await db.adrop_tables([Note])
    gone = weakref.ref(Note)
    del Note, note
    gc.collect()
    assert gone() is None, _referrers(gone())


def _referrers(obj: Any) -> str:
    """What still holds ``obj``, for the failure message."""
    return "still referenced by: " + "; ".join(
        repr(r)[:160] for r in gc.get_referrers(obj) if not isinstance(r, type(_referrers))
    )


def _make_wide(db: Any) -> type[Any]:
    class Wide(AsyncModel):
        f0 = peewee.IntegerField(default=0)
        f1 = peewee.IntegerField(default=1)
        f2 = peewee.CharField(default="two")
        f3 = peewee.CharField(default="three")
        f4 = peewee.IntegerField(default=4)
        f5 = peewee.IntegerField(default=5)
        f6 = peewee.CharField(default="six")
        f7 = peewee.IntegerField(default=7)

        class Meta:
            database = db
            table_name = "wide"

    return Wide


@pytest.fixture
async def wide(db: Any) -> Any:
    Wide = _make_wide(db)
    await db.adrop_tables([Wide], safe=True)
    await db.acreate_tables([Wide])
    await Wide.acreate()
    yield Wide
    await db.adrop_tables([Wide])


async def test_queries_differing_in_values_share_one_layout_and_one_plan(db, wide):
    plans = len(fastpath.plans_of(wide))  # the fixture's insert
    for i in range(200):
        await db.list(wide.select(wide.id, (wide.f0 + i).alias("x")).where(wide.f1 == i))
        await db.get(wide.select(wide.f2.alias("name"), fn.LOWER(f"V{i}").alias("low")))
        await db.get(wide.select().where((wide.f4 > -i) | (wide.f5 < i)).limit(i + 1))
    assert len(rows.layouts_of(wide)) == 3
    # The first two are not simple selects (an expression, a function): peewee builds
    # their SQL; the third has one plan.
    assert len(fastpath.plans_of(wide)) == plans + 1


@pytest.mark.backends("sqlite")
async def test_every_cache_of_a_model_is_bounded(db, wide):
    fields = wide._meta.sorted_fields[1:]
    subsets = [c for n in range(1, 9) for c in itertools.combinations(fields, n)]
    # A select shape and an update plan per subset: more than either bound.
    assert len(subsets) > rows.LAYOUTS_MAX and 2 * len(subsets) > fastpath.PLANS_MAX
    row = await db.get(wide.select())
    for columns in subsets:
        assert len(await db.list(wide.select(*columns).where(wide.id == row.id))) == 1
        await row.asave(only=columns)  # an UPDATE plan per set of fields
    assert len(rows.layouts_of(wide)) == rows.LAYOUTS_MAX
    assert len(fastpath.plans_of(wide)) == fastpath.PLANS_MAX


def _snapshot(obj: Any) -> Any:
    return type(obj), dict(obj.__data__), set(obj._dirty), obj.__rel__


SAME_NAME_OTHER_SHAPE = [
    lambda m: m.select(m.id, m.f2.alias("v")),
    lambda m: m.select(m.id, m.f2.alias("v").coerce(False)),
    lambda m: m.select(m.id, m.f0.alias("v")),
    lambda m: m.select(m.id, (m.f0 + 1).alias("v")),
    lambda m: m.select(m.id, (m.f0 + 1).alias("v").converter(str)),
    lambda m: m.select(m.id, fn.MAX(m.f2).alias("v")),
    lambda m: m.select(m.id, fn.MAX(m.f0).alias("v")),
    lambda m: m.select(m.id, fn.MAX(m.f0).coerce(False).alias("v")),
    lambda m: m.select(m.id, fn.MAX(m.f0).python_value(str).alias("v")),
    lambda m: m.select(m.id, fn.MAX(peewee.SQL('"f3"')).alias("v")),
    lambda m: m.select(m.id, peewee.Value("7").alias("v")),
    lambda m: m.select(m.id, peewee.Value("7").alias("f2")),
    lambda m: m.select(m.id, peewee.Value("7").alias("f0")),
]


async def test_layouts_are_shared_only_by_selects_peewee_reads_alike(db, wide):
    for _ in range(2):  # the second round from the caches
        for make in SAME_NAME_OTHER_SHAPE:
            fast = [_snapshot(o) for o in await db.list(make(wide).group_by(wide.id))]
            slow = [_snapshot(o) for o in await db.run(list, make(wide).group_by(wide.id))]
            assert fast == slow, make(wide).sql()


def test_layout_keys_mirror_peewees_column_resolution():
    # rows._column_key reads what this function reads of each selected node; a
    # peewee release that changes it must be reviewed there before this is updated.
    source = inspect.getsource(vars(peewee)["_resolve_model_columns"])
    assert hashlib.sha256(source.encode()).hexdigest() == (
        "d14b213164d001f40c7ac9e88fd7d8f5e55a7355c854d12a4bf6753352980c1c"
    ), f"peewee {peewee.__version__} changed _resolve_model_columns: review rows._column_key"  # type: ignore[attr-defined]
