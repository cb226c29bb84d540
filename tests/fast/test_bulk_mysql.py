"""MySQL/MariaDB multi-row inserts through the driver's executemany.

Every result is compared with peewee's own path (the same insert on a second
database object made with ``fast_paths=False``, the table truncated between
the two so auto-increment ids start alike): the value ``execute()`` returns,
and the rows stored, read back from outside the library.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import peewee
import pytest

from fastpeewee.drivers import mysql as mysql_driver

from ..conftest import assert_no_leaks, make_database, settle
from ..harness import Outside, StepResult, cancel_at_every_step

pytestmark = pytest.mark.backends("mysql")

WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000)


def define(db: Any) -> tuple[type[Any], type[Any]]:
    """An owner table and one with a column of (nearly) every core field type."""

    class Base(peewee.Model):
        class Meta:
            database = db

    class Owner(Base):
        name = peewee.CharField(unique=True)

    class Every(Base):
        char = peewee.CharField(column_name="char_col", unique=True)
        fixed = peewee.FixedCharField(3, null=True)
        text = peewee.TextField(default="")
        small = peewee.SmallIntegerField(null=True)
        big = peewee.BigIntegerField(null=True)
        num = peewee.IntegerField(default=lambda: 5)
        ratio = peewee.FloatField(null=True)
        double = peewee.DoubleField(null=True)
        price = peewee.DecimalField(max_digits=10, decimal_places=2, null=True)
        flag = peewee.BooleanField(default=False)
        day = peewee.DateField(null=True)
        moment = peewee.DateTimeField(null=True)
        clock = peewee.TimeField(null=True)
        stamp = peewee.TimestampField(null=True, default=None)
        blob = peewee.BlobField(null=True)
        token = peewee.UUIDField(null=True)
        btoken = peewee.BinaryUUIDField(null=True)
        ip = peewee.IPField(null=True)
        owner = peewee.ForeignKeyField(Owner, null=True)

    return Owner, Every


def define_plain(db: Any) -> type[Any]:
    """Columns of ints and strings only: what MariaDB's binary bulk insert carries."""

    class Plain(peewee.Model):
        char = peewee.CharField(unique=True)
        text = peewee.TextField(default="")
        small = peewee.SmallIntegerField(null=True)
        big = peewee.BigIntegerField(null=True)
        num = peewee.IntegerField(default=lambda: 5)

        class Meta:
            database = db

    return Plain


def plain_row(i: int) -> dict[str, Any]:
    return {
        "char": f"b{i}",
        "text": "ü'\\%s?" * (i % 4) if i % 5 else "",
        "small": None if i % 3 else i % 100,
        "big": -(2**40) - i,
    }


def full_row(i: int, owner: Any) -> dict[str, Any]:
    return {
        "char": f"c{i}",
        "fixed": "abc" if i % 2 else None,
        "text": 'it\'s \\ "quoted"\n' * (i % 3),
        "small": i % 100,
        "big": 2**40 + i,
        "num": i,
        "ratio": i / 3,
        "double": -i * 1.5,
        "price": decimal.Decimal(f"{i}.25"),
        "flag": bool(i % 2),
        "day": WHEN.date(),
        "moment": WHEN,
        "clock": WHEN.time(),
        "stamp": WHEN.replace(microsecond=0),
        "blob": bytes(range(i % 256)),
        "token": uuid.UUID(int=i),
        "btoken": uuid.UUID(int=i + 1),
        "ip": f"10.0.{i % 256}.1",
        "owner": owner,
    }


def uniform_row(i: int) -> dict[str, Any]:
    """Only fields whose values pass peewee's db_value unchanged: the C-speed path."""
    return {"char": f"u{i}", "small": None if i % 4 else i, "ratio": i / 7, "text": "é" * i}


class Pair:
    """The library's database and one running peewee's own paths, on the same server."""

    def __init__(self, fast: Any, slow: Any, binary: Any) -> None:
        self.fast, self.slow, self.binary = fast, slow, binary
        self.binary_plain = define_plain(binary)
        self.outside = Outside(fast)
        self.fast_models = define(fast)
        self.slow_models = define(slow)
        self.fast_plain = define_plain(fast)
        self.slow_plain = define_plain(slow)

    async def reset(self) -> None:
        def reset() -> None:
            self.outside.query("SET FOREIGN_KEY_CHECKS = 0")
            for table in ("every", "owner", "plain"):
                self.outside.query(f"TRUNCATE TABLE {table}")
            self.outside.query("SET FOREIGN_KEY_CHECKS = 1")
            self.outside.query("INSERT INTO owner (name) VALUES ('ann'), ('bob')")

        await asyncio.to_thread(reset)

    def stored(self, table: str = "every") -> list[tuple[Any, ...]]:
        return self.outside.query(f"SELECT * FROM {table} ORDER BY id")

    async def compare(
        self,
        make: Callable[..., Any],
        sync: bool = False,
        plain: bool = False,
        binary: bool = False,
        ids: bool = True,
    ) -> tuple[Any, list[tuple[Any, ...]]]:
        """Build ``make(Owner, Every)``'s query (``make(Plain)`` with ``plain``; sync
        code: it may query) and run it on both; the same result and rows
        (``ids=False``: but for the ids). ``binary``: the library's database is
        the one made with ``bulk_binary=True``. Returns the result and rows.
        """
        outcomes = []
        mine = (self.binary, (self.binary_plain,)) if binary else (self.fast, self.fast_models)
        if plain and not binary:
            mine = (self.fast, (self.fast_plain,))
        for db, models in (mine, (self.slow, (self.slow_plain,) if plain else self.slow_models)):
            await self.reset()
            query = await db.run(make, *models)
            if sync:
                result = await asyncio.to_thread(query.execute)
            else:
                result = await db.aexecute(query)
            if isinstance(result, peewee.CursorWrapper) or hasattr(result, "fetchall"):
                result = [sorted(r.__data__.items()) for r in result]  # returning(): models
            table = "plain" if plain else "every"
            stored = await asyncio.to_thread(self.stored, table)
            if not ids:
                stored = [row[1:] for row in stored]
            outcomes.append((result, stored))
        assert outcomes[0][0] == outcomes[1][0]
        diff = [(a, b) for a, b in zip(outcomes[0][1], outcomes[1][1], strict=False) if a != b]
        assert diff[:3] == []
        assert outcomes[0] == outcomes[1]
        return outcomes[0]


@pytest.fixture
async def pair(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Pair]:
    fast = make_database(backend, request, tmp_path)
    slow = make_database(backend, request, tmp_path, fast_paths=False)
    binary = make_database(backend, request, tmp_path, bulk_binary=True)
    both = Pair(fast, slow, binary)
    tables = [*both.fast_models, both.fast_plain]
    await fast.adrop_tables(list(reversed(tables)), safe=True)
    await fast.acreate_tables(tables)
    try:
        yield both
    finally:
        both.outside.close()
        await fast.adrop_tables(list(reversed(tables)), safe=True)
        for db in (fast, slow, binary):
            await settle(db)
            assert_no_leaks(db)
            await db.close_pool()


@pytest.fixture
def small_statements(monkeypatch: pytest.MonkeyPatch) -> int:
    """Statements of at most 2 kB: a few dozen rows make several of them."""
    monkeypatch.setattr(mysql_driver, "MANY_STATEMENT_BYTES", 2000)
    return 2000


class Statements:
    """The statements the library runs (its query hooks)."""

    def __init__(self, db: Any) -> None:
        self.sql: list[str] = []
        db.query_hooks.append(lambda event: self.sql.append(event.sql))


def owners(Owner: type[Any]) -> list[Any]:
    return list(Owner.select().order_by(Owner.id))


async def test_every_field_type_stores_what_peewee_stores(pair: Pair) -> None:
    seen = Statements(pair.fast)

    def make(Owner: type[Any], Every: type[Any]) -> Any:
        ann = Owner.get(Owner.name == "ann")
        data = [full_row(i, ann if i % 2 else ann.id) for i in range(40)]
        data[3].update(dict.fromkeys(["small", "big", "ratio", "double", "price", "day"]))
        data[4].update(dict.fromkeys(["moment", "clock", "blob", "token", "btoken", "ip"]))
        return Every.insert_many(data)

    result, stored = await pair.compare(make)
    assert result == 1 and len(stored) == 40  # the first row's id, as MySQL reports it
    assert any(s.startswith("INSERT") for s in seen.sql)


async def test_uniform_rows_and_rows_by_position(pair: Pair) -> None:
    result, stored = await pair.compare(
        lambda _o, e: e.insert_many([uniform_row(i) for i in range(300)])
    )
    assert result == 1 and len(stored) == 300
    fields = ["char", "num", "flag", "moment"]

    def by_position(Owner: type[Any], Every: type[Any]) -> Any:
        data = [(f"p{i}", i, i % 2 == 0, WHEN) for i in range(50)]
        return Every.insert_many(data, fields=[getattr(Every, f) for f in fields])

    result, stored = await pair.compare(by_position)
    assert result == 1 and [r[1] for r in stored[:2]] == ["p0", "p1"]


async def test_defaults_and_missing_keys(pair: Pair) -> None:
    def make(Owner: type[Any], Every: type[Any]) -> Any:
        return Every.insert_many([{"char": f"d{i}"} if i % 2 else {"char": f"d{i}", "num": 1}
                                  for i in range(20)])  # fmt: skip

    _, stored = await pair.compare(make)
    assert {r[6] for r in stored} == {1, 5}  # given, else the callable default


async def test_row_count_and_as_rowcount(pair: Pair) -> None:
    result, _ = await pair.compare(
        lambda _o, e: e.insert_many([uniform_row(i) for i in range(30)]).as_rowcount()
    )
    assert result == 30


async def test_explicit_ids_take_peewee_path(pair: Pair, small_statements: int) -> None:
    seen = Statements(pair.fast)
    rows = [{"id": 100 + i, **uniform_row(i)} for i in range(200)]
    result, stored = await pair.compare(lambda _o, e: e.insert_many(rows))
    assert [r[0] for r in stored] == list(range(100, 300))
    assert result == 299  # MySQL: explicit ids report the last row's
    inserts = [s for s in seen.sql if s.startswith("INSERT")]
    assert [s.count("(%s") for s in inserts] == [200]  # peewee's one statement


@pytest.mark.parametrize("variant", ["ignore", "replace", "update", "returning", "subquery"])
async def test_other_inserts_take_peewee_path(pair: Pair, variant: str) -> None:
    def make(Owner: type[Any], Every: type[Any]) -> Any:
        Every.insert(char="u1", num=42).execute()  # a row the insert collides with
        query = Every.insert_many([uniform_row(i) for i in range(5)])
        if variant == "ignore":
            return query.on_conflict_ignore()
        if variant == "replace":
            return query.on_conflict_replace()
        if variant == "update":
            return query.on_conflict(update={Every.num: Every.num + 1})
        if variant == "returning":
            return Every.insert_many([uniform_row(i) for i in range(10, 15)]).returning(
                Every.id, Every.char
            )
        return Every.insert_many(
            [{"char": f"s{i}", "num": Owner.select(peewee.fn.COUNT(Owner.id))} for i in range(3)]
        )

    _, stored = await pair.compare(make)
    assert len(stored) >= 3


async def test_several_statements_give_one_statements_result(
    pair: Pair, small_statements: int
) -> None:
    seen = Statements(pair.fast)
    data = [uniform_row(i) for i in range(400)]  # ~100 statements of 2 kB
    result, stored = await pair.compare(lambda _o, e: e.insert_many(data))
    assert result == 1 and len(stored) == 400  # the first statement's first id
    assert [s.split()[0] for s in seen.sql] == ["INSERT"]  # one executemany
    count, _ = await pair.compare(lambda _o, e: e.insert_many(data).as_rowcount())
    assert count == 400
    # The server saw the statements: several INSERTs under the size bound.
    await pair.reset()
    before = await asyncio.to_thread(com_insert, pair.outside)
    await pair.fast.aexecute(pair.fast_models[1].insert_many(data))
    sent = await asyncio.to_thread(com_insert, pair.outside) - before
    assert 10 <= sent < 200  # not one per row either


def com_insert(outside: Outside, what: str = "Com_insert") -> int:
    """INSERT statements (or ``what``) the server ran since it started."""
    return int(outside.query(f"SHOW GLOBAL STATUS LIKE '{what}'")[0][1])


async def test_several_statements_from_a_thread(pair: Pair, small_statements: int) -> None:
    data = [uniform_row(i) for i in range(400)]
    result, stored = await pair.compare(lambda _o, e: e.insert_many(data), sync=True)
    assert result == 1 and len(stored) == 400

    def make(Owner: type[Any], Every: type[Any]) -> Any:
        ann = Owner.get(Owner.name == "ann")
        return Every.insert_many([full_row(i, ann) for i in range(60)])

    models = pair.fast_models
    await pair.reset()
    await asyncio.to_thread(lambda: make(*models).execute())
    assert len(await asyncio.to_thread(pair.stored)) == 60


@pytest.mark.parametrize("sync", [False, True], ids=["task", "thread"])
async def test_a_failing_statement_leaves_nothing(
    pair: Pair, small_statements: int, sync: bool
) -> None:
    db = pair.fast
    _, Every = pair.fast_models
    data = [uniform_row(i) for i in range(400)]
    data[-1]["char"] = "u0"  # a duplicate in the last statement

    def insert() -> Any:
        return Every.insert_many(data).execute()

    async def run(fn: Callable[[], Any]) -> Any:
        return await (asyncio.to_thread(fn) if sync else db.run(fn))

    await pair.reset()
    with pytest.raises(peewee.IntegrityError):
        await run(insert)
    assert pair.stored() == []  # autocommit: the earlier statements rolled back too

    def in_transaction() -> None:
        with db.atomic():
            Every.create(char="kept")
            with pytest.raises(peewee.IntegrityError):
                insert()
            assert Every.select().count() == 1  # none of the good rows stayed
            Every.create(char="after")

    await run(in_transaction)
    assert [r[1] for r in pair.stored()] == ["kept", "after"]
    await pair.outside.wait_quiet()  # no transaction left open


async def test_bulk_create(pair: Pair, small_statements: int) -> None:
    def make(Owner: type[Any], Every: type[Any]) -> Any:
        ann = Owner.get(Owner.name == "ann")
        objs = [Every(**full_row(i, ann)) for i in range(100)]
        Every.bulk_create(objs, batch_size=60)
        return [o.id for o in objs]

    outcomes = []
    for db, models in ((pair.fast, pair.fast_models), (pair.slow, pair.slow_models)):
        await pair.reset()
        ids = await db.run(lambda m=models: make(*m))
        outcomes.append((ids, await asyncio.to_thread(pair.stored)))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][1]) == 100


async def test_cancelled_mid_bulk_leaves_nothing(pair: Pair, small_statements: int) -> None:
    db = pair.fast
    _, Every = pair.fast_models
    await pair.reset()
    data = [uniform_row(i) for i in range(120)]  # several statements

    async def op(marks: dict[str, bool]) -> None:
        await db.aexecute(Every.insert_many(data))

    async def check(result: StepResult) -> None:
        await settle(db)
        count = (await asyncio.to_thread(pair.outside.query, "SELECT COUNT(*) FROM every"))[0][0]
        if result.completed:
            assert count == 120
        assert count in (0, 120), f"step {result.k}: {count} rows, a part of the insert"
        await pair.outside.wait_quiet()
        await asyncio.to_thread(pair.outside.query, "DELETE FROM every")
        assert_no_leaks(db)

    runs = await cancel_at_every_step(op, check)
    assert runs > 3  # the insert took several steps, each cancelled on the way


# -- MariaDB's binary bulk insert (COM_STMT_BULK_EXECUTE) -----------------------


async def prepared_during(pair: Pair, db: Any, data: list[dict[str, Any]]) -> int:
    """Statements prepared on the server while ``db`` inserts ``data``."""
    await pair.reset()
    before = await asyncio.to_thread(com_insert, pair.outside, "Com_stmt_prepare")
    await db.aexecute(define_plain(db).insert_many(data))
    return await asyncio.to_thread(com_insert, pair.outside, "Com_stmt_prepare") - before


async def test_binary_bulk_stores_what_peewee_stores(pair: Pair) -> None:
    data = [plain_row(i) for i in range(mysql_driver.BULK_MIN_ROWS + 100)]
    result, stored = await pair.compare(lambda p: p.insert_many(data), plain=True, binary=True)
    assert result == 1 and len(stored) == len(data)  # ids included: one statement
    count, _ = await pair.compare(
        lambda p: p.insert_many(data).as_rowcount(), plain=True, binary=True
    )
    assert count == len(data)
    assert await prepared_during(pair, pair.binary, data) == 1  # it went the binary way
    assert await prepared_during(pair, pair.binary, data[: mysql_driver.BULK_MIN_ROWS - 1]) == 0
    assert await prepared_during(pair, pair.fast, data) == 0  # only when asked for
    # What the option's documentation warns of: MariaDB reserved ids as for
    # INSERT ... SELECT, so the next one skips past the insert's last.
    await pair.reset()
    await pair.binary.aexecute(pair.binary_plain.insert_many(data))
    after = await pair.binary.aexecute(pair.binary_plain.insert(char="next"))
    assert after > len(data) + 1


SQL = "INSERT INTO `t` (`a`, `b`) VALUES (%s, %s)"


@pytest.mark.parametrize(
    ("rows", "sql"),
    [
        ([(1, 1.5), (2, 2.5)], SQL),  # a float: the text protocol's literal decides
        ([(1, True), (2, False)], SQL),  # a bool
        ([(1, b"x"), (2, b"y")], SQL),  # bytes
        ([(1, "x"), (2, 3)], SQL),  # mixed in one column
        ([(1, None), (2, None)], SQL),  # NULL throughout
        ([(1, "x"), (2,)], SQL),  # rows of different widths
        ([(1, "x"), (2, "y")], "INSERT INTO `t?` (`a`, `b`) VALUES (%s, %s)"),
        ([(1, "x"), (2, "y")], "UPDATE t SET a = %s WHERE b = %s"),
    ],
)
def test_binary_bulk_refuses(rows: list[tuple[Any, ...]], sql: str) -> None:
    assert mysql_driver._bulk_groups(sql, rows, 10_000) is None


def test_binary_bulk_groups_fit_the_bound() -> None:
    rows = [(i, "é" * (i % 50) if i % 2 else None, "x" * (i % 30)) for i in range(1000)]
    groups = mysql_driver._bulk_groups(SQL, rows, 2000)
    assert groups is not None and len(groups) > 10
    assert [r for g in groups for r in g] == rows
    for group in groups:  # worst case: 4 bytes a non-ASCII character, 9 a value
        size = sum(27 + 4 * len(r[1] or "") + len(r[2]) for r in group)
        assert size <= 2000 or len(group) == 1
    assert mysql_driver._bulk_groups(SQL, rows[:10], 10_000) == [rows[:10]]
    ints = [(i, i) for i in range(1000)]
    assert [len(g) for g in mysql_driver._bulk_groups(SQL, ints, 1800) or []] == [100] * 10


async def test_binary_bulk_in_groups(pair: Pair, small_statements: int) -> None:
    data = [plain_row(i) for i in range(600)]
    result, stored = await pair.compare(lambda p: p.insert_many(data), plain=True)
    assert result == 1 and len(stored) == 600
    # NULL throughout a column of the first group, or of a later one: the text
    # protocol carries the insert, nothing of the binary attempt left behind.
    for nulls in (range(300), range(300, 600)):
        odd = [
            {**r, "small": None} if i in nulls else {**r, "small": 1} for i, r in enumerate(data)
        ]
        result, stored = await pair.compare(lambda p, odd=odd: p.insert_many(odd), plain=True)
        assert result == 1 and len(stored) == 600


@pytest.mark.parametrize("grouped", [False, True], ids=["one", "groups"])
async def test_binary_bulk_failing_leaves_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, grouped: bool
) -> None:
    if grouped:
        monkeypatch.setattr(mysql_driver, "MANY_STATEMENT_BYTES", 2000)
    db, Plain = pair.binary, pair.binary_plain
    data = [plain_row(i) for i in range(600)]
    data[-1]["char"] = "b0"
    await pair.reset()
    with pytest.raises(peewee.IntegrityError):
        await db.aexecute(Plain.insert_many(data))
    assert pair.stored("plain") == []
    async with db.atomic():
        await db.aexecute(Plain.insert(char="kept"))
        with pytest.raises(peewee.IntegrityError):
            await db.aexecute(Plain.insert_many(data))
        assert await db.count(Plain.select()) == 1
    assert [r[1] for r in pair.stored("plain")] == ["kept"]
    await pair.outside.wait_quiet()  # no transaction left open


async def test_cancelled_mid_binary_bulk_leaves_nothing(pair: Pair, small_statements: int) -> None:
    db, Plain = pair.binary, pair.binary_plain
    await pair.reset()
    data = [plain_row(i) for i in range(600)]  # several groups

    async def op(marks: dict[str, bool]) -> None:
        await db.aexecute(Plain.insert_many(data))

    async def check(result: StepResult) -> None:
        await settle(db)
        count = (await asyncio.to_thread(pair.outside.query, "SELECT COUNT(*) FROM plain"))[0][0]
        if result.completed:
            assert count == 600
        assert count in (0, 600), f"step {result.k}: {count} rows, a part of the insert"
        await pair.outside.wait_quiet()
        await asyncio.to_thread(pair.outside.query, "DELETE FROM plain")
        assert_no_leaks(db)

    assert await cancel_at_every_step(op, check) > 3
