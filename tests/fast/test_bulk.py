"""insert_many / bulk_create of any size: batches under the parameter cap, COPY on
PostgreSQL, and the same result values as peewee's single INSERT."""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncModel

WIDE_ROWS = 10_000  # x 4 columns: 40,000 parameters, over both drivers' caps


async def make_wide(db: Any) -> type[Any]:
    class Wide(AsyncModel):
        a = peewee.CharField()
        b = peewee.IntegerField()
        c = peewee.IntegerField(default=7)
        d = peewee.CharField(null=True)

        class Meta:
            database = db
            table_name = "wide"

    await db.adrop_tables([Wide], safe=True)
    await db.acreate_tables([Wide])
    return Wide


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"a": f"r{i}", "b": i, "d": None if i % 2 else "x"} for i in range(start, start + n)]


class Statements:
    """Records the statements a database runs (its query hooks)."""

    def __init__(self, db: Any) -> None:
        self.sql: list[str] = []
        db.query_hooks.append(lambda event: self.sql.append(event.sql))

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.sql if s.startswith(prefix))


async def test_ten_thousand_wide_rows_in_one_call(db, backend):
    Wide = await make_wide(db)
    seen = Statements(db)
    result = await Wide.insert_many(rows(WIDE_ROWS)).aexecute()
    assert await db.count(Wide.select()) == WIDE_ROWS
    assert await db.scalar(Wide.select(peewee.fn.SUM(Wide.c))) == 7 * WIDE_ROWS
    stored = await db.list(Wide.select().order_by(Wide.id).limit(2))
    assert [(w.a, w.b, w.c, w.d) for w in stored] == [("r0", 0, 7, "x"), ("r1", 1, 7, None)]
    if backend == "postgres":
        ids = [row[0] for row in result]
        assert ids == [w.id for w in await db.list(Wide.select().order_by(Wide.id))]
        assert seen.count("COPY") == 1 and seen.count("INSERT") == 0
    elif backend == "mysql":
        # As one multi-row INSERT on MySQL: the first row's id (LAST_INSERT_ID()).
        assert result == await db.scalar(Wide.select(peewee.fn.MIN(Wide.id)))
        assert seen.count("INSERT") == 1  # one executemany: the driver's multi-row INSERTs
    else:
        assert result == await db.scalar(Wide.select(peewee.fn.MAX(Wide.id)))
        assert seen.count("INSERT") == 1  # one executemany of the single-row INSERT


async def test_result_matches_a_plain_insert(db, backend):
    Wide = await make_wide(db)
    # One row: peewee's own INSERT; three rows: COPY on PostgreSQL.
    single = await Wide.insert_many(rows(1)).aexecute()
    several = await Wide.insert_many(rows(3, start=10)).aexecute()
    if backend == "postgres":
        single, several = list(single), list(several)
        assert type(several[0]) is type(single[0])
        assert [r[0] for r in several] == [single[0][0] + i for i in (1, 2, 3)]
    elif backend == "mysql":
        assert (single, several) == (1, 2)  # LAST_INSERT_ID(): the statement's first row
    else:
        assert (single, several) == (1, 4)


async def test_bulk_create_sets_ids(db, backend):
    Wide = await make_wide(db)
    objs = [Wide(a=f"o{i}", b=i) for i in range(500)]
    await Wide.abulk_create(objs)
    stored = {w.a: w.id for w in await db.list(Wide.select())}
    if backend == "postgres":
        assert all(o.id == stored[o.a] for o in objs)
    assert len(stored) == 500


async def test_batches_are_all_or_nothing(db, backend):
    Wide = await make_wide(db)
    await db.aexecute_sql("CREATE UNIQUE INDEX wide_b ON wide (b)")
    data = rows(WIDE_ROWS)
    data[-1]["b"] = 0  # a duplicate in the last batch
    with pytest.raises(peewee.IntegrityError):
        # An explicit returning() keeps COPY out: the batched INSERT path is tested
        await Wide.insert_many(data).returning(Wide.id).aexecute()
    assert await db.count(Wide.select()) == 0
    with pytest.raises(peewee.IntegrityError):
        await Wide.insert_many(data).aexecute()  # COPY on PostgreSQL
    assert await db.count(Wide.select()) == 0


async def test_sync_code_in_a_thread(db):
    Wide = await make_wide(db)

    def insert() -> Any:
        return Wide.insert_many(rows(WIDE_ROWS)).execute()

    await asyncio.to_thread(insert)
    assert await db.count(Wide.select()) == WIDE_ROWS


async def test_unusual_inserts_take_peewee_path(db, backend):
    Wide = await make_wide(db)
    seen = Statements(db)
    await Wide.insert_many(rows(5)).on_conflict_ignore().aexecute()
    got = await Wide.insert_many(rows(2, start=5)).returning(Wide.a).aexecute()
    if backend == "postgres":
        assert [w.a for w in got] == ["r5", "r6"]
    await Wide.insert_many([{"a": peewee.fn.upper("low"), "b": 1}, {"a": "z", "b": 2}]).aexecute()
    assert seen.count("COPY") == 0
    assert await db.count(Wide.select().where(Wide.a == "LOW")) == 1
    assert await db.count(Wide.select()) == 9


@pytest.mark.backends("postgres")
async def test_copy_inside_a_transaction_rolls_back(db):
    Wide = await make_wide(db)
    with pytest.raises(RuntimeError):
        async with db.atomic():
            await Wide.insert_many(rows(100)).aexecute()
            assert await db.count(Wide.select()) == 100
            raise RuntimeError
    assert await db.count(Wide.select()) == 0


async def test_values_convert_as_peewee_converts_them(db, backend):
    import datetime
    import decimal
    import uuid

    class Owner(AsyncModel):
        username = peewee.CharField()

        class Meta:
            database = db
            table_name = "owner"

    class Mixed(AsyncModel):
        label = peewee.CharField(column_name="label_col")
        when = peewee.DateTimeField()
        price = peewee.DecimalField(max_digits=10, decimal_places=2)
        flag = peewee.BooleanField()
        owner = peewee.ForeignKeyField(Owner, null=True)
        token = peewee.UUIDField(null=True)
        n = peewee.IntegerField(default=lambda: 5)

        class Meta:
            database = db
            table_name = "mixed"

    await db.adrop_tables([Mixed, Owner], safe=True)
    await db.acreate_tables([Owner, Mixed])
    ann = await Owner.acreate(username="ann")
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    data: list[dict[Any, Any]] = [
        {
            "label": "a",
            "when": when,
            "price": decimal.Decimal("1.50"),
            "flag": True,
            "owner": ann,
            "token": uuid.UUID(int=1),
        },
        {"label_col": "b", "when": when, "price": 2, "flag": 0, "owner": ann.id},
        {Mixed.label: "c", "when": when, "price": "3.25", "flag": False, "n": 9},
        {"label": 4, "when": when, "price": 4.5, "flag": 1, "token": str(uuid.UUID(int=2))},
    ]
    seen = Statements(db)
    await Mixed.insert_many(data).aexecute()
    assert seen.count("COPY") == (1 if backend == "postgres" else 0)
    for row in data:  # peewee's own single-row INSERTs, for comparison
        await db.run(lambda row=row: Mixed.insert(row).execute())
    got = [
        (m.label, m.when, m.price, m.flag, m.owner_id, m.token, m.n)
        for m in await db.list(Mixed.select().order_by(Mixed.id))
    ]
    assert got[:4] == got[4:]
    assert got[0] == ("a", when, decimal.Decimal("1.50"), True, ann.id, uuid.UUID(int=1), 5)
    assert got[2][-1] == 9 and got[3][0] == "4"
    await db.adrop_tables([Mixed, Owner])


@pytest.mark.backends("sqlite")
async def test_failed_executemany_leaves_the_transaction_usable(db):
    Wide = await make_wide(db)
    await db.aexecute_sql("CREATE UNIQUE INDEX wide_b ON wide (b)")
    data = rows(50)
    data[-1]["b"] = 0
    async with db.atomic():
        await Wide.acreate(a="kept", b=-1)
        with pytest.raises(peewee.IntegrityError):
            await Wide.insert_many(data).aexecute()
        assert await db.count(Wide.select()) == 1  # none of the 49 good rows stayed
    assert [w.a for w in await db.list(Wide.select())] == ["kept"]
    result = await Wide.insert_many(rows(3, start=100)).aexecute()
    assert result == await db.scalar(Wide.select(peewee.fn.MAX(Wide.id)))
    assert await Wide.insert_many(rows(2, start=200)).as_rowcount().aexecute() == 2


class _Label(str):
    """A str subclass: peewee's CharField converts it to a plain str."""


def _uniform_model() -> type[Any]:
    class Uniform(peewee.Model):
        name = peewee.CharField(column_name="name_col")
        qty = peewee.IntegerField(null=True)
        ratio = peewee.FloatField()

    return Uniform


def _full_rows(n: int) -> list[dict[str, Any]]:
    return [{"name": f"n{i}", "qty": i if i % 3 else None, "ratio": i / 2} for i in range(n)]


def _odd_row_sets(model: type[Any]) -> list[list[dict[Any, Any]]]:
    """Row sets the C-speed path must hand back to the row-by-row conversion."""
    sets: list[list[dict[Any, Any]]] = []
    for odd in (
        {"name": "x", "qty": True, "ratio": 1.0},  # bool into an IntegerField: int(True)
        {"name": _Label("x"), "qty": 1, "ratio": 1.0},  # str subclass
        {"name": "x", "qty": 1, "ratio": 1},  # int into a FloatField: float(1)
        {"name": "x", "ratio": 1.0},  # a missing key: NULL
        {"name_col": "x", "qty": 1, "ratio": 1.0},  # keyed by column name
        {model.name: "x", "qty": 1, "ratio": 1.0},  # keyed by the field itself
    ):
        data = _full_rows(6)
        data.insert(3, odd)
        sets.append(data)
    return sets


@pytest.mark.parametrize("case", range(7))
def test_fast_record_extraction_is_the_row_by_row_conversion(case):
    from fastpeewee.fast import bulk

    model = _uniform_model()
    data = _full_rows(6) if case == 0 else _odd_row_sets(model)[case - 1]
    query = model.insert_many(data)
    columns = bulk._columns_of(query, data[0])
    assert columns is not None
    specs = [
        (i, c, c.column_name if c.name != c.column_name else None, c.db_value,
         bulk._passthrough(c), False)
        for i, c in enumerate(columns)
    ]  # fmt: skip
    fast = bulk._extract_uniform(data, specs)
    assert (fast is not None) == (case == 0)  # only the uniform set takes the fast path
    slow = [bulk._convert(row, specs, {}, False) for row in data]
    if fast is not None:  # read again (a retry) and in parts, as drivers read them
        assert list(fast) == list(fast) == slow and len(fast) == len(slow)
        assert fast[0] == slow[0] and fast[-1] == slow[-1] and fast[2:4] == slow[2:4]
        with_ids = [(i, *r) for i, r in enumerate(fast)]
        assert list(bulk._WithIds(list(range(len(slow))), fast)) == with_ids
    extracted = bulk._extract(query, data)
    if case == 2:  # the str subclass is not a plain value: the whole insert is peewee's
        assert None in slow and extracted is None
        return
    assert extracted is not None and list(extracted[1]) == slow
    assert all(type(v) in (str, int, float, type(None)) for r in slow for v in r)  # type: ignore[union-attr]


async def test_uniform_and_odd_rows_store_what_peewee_stores(db, backend):
    model = _uniform_model()
    model._meta.set_database(db)
    model._meta.set_table_name("uniform")
    await db.adrop_tables([model], safe=True)
    await db.acreate_tables([model])
    sets = [_full_rows(6), *_odd_row_sets(model)]
    for data in sets:
        await db.run(lambda data=data: model.insert_many(data).execute())
    expected = [(m.name, m.qty, m.ratio) for m in await db.list(model.select().order_by(model.id))]
    await db.aexecute_sql("DELETE FROM uniform")
    for data in sets:
        await model.insert_many(data).aexecute()
    got = [(m.name, m.qty, m.ratio) for m in await db.list(model.select().order_by(model.id))]
    assert got == expected and len(got) == sum(map(len, sets))
    assert all(type(name) is str for name, _, _ in got)
    await db.adrop_tables([model])
