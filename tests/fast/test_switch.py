"""The one switch of the speed layer: ``fast_paths=False`` / ``FASTPEEWEE_FAST_PATHS=0``.

Off, no call enters the fast modules (each of their functions is replaced by a
tripwire) and the results are those of the same calls with the fast paths on.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import peewee
import pytest

import fastpeewee
from fastpeewee import (
    AsyncDatabase,
    AsyncMySQLDatabase,
    AsyncPostgresqlDatabase,
    AsyncSqliteDatabase,
    Param,
    afetch,
    afetch_one,
    compile_query,
    fast,
    to_pydantic,
)
from fastpeewee import database as database_module
from fastpeewee import model as model_module
from fastpeewee.compat import peewee_async, peewee_asyncext
from fastpeewee.db_url import connect
from fastpeewee.fast import bulk, fastpath, rows, selects, shapes

from ..conftest import model_database
from ..models import Tweet, User
from . import fast_paths_only

pytestmark = pytest.mark.without_fast_paths

# The modules of the automatic fast paths (compiled.py is the explicit API).
FAST_MODULES = (selects, fastpath, shapes, rows, bulk)
# Where their functions are looked up: themselves, and the modules calling in.
CALLERS = (*FAST_MODULES, database_module, model_module)

UserRead = to_pydantic(User, variant="read")
TweetRead = to_pydantic(
    Tweet, variant="read", relationships={Tweet.user: UserRead}, model_name="TweetWithUser"
)


def _fast_functions() -> dict[int, str]:
    """The functions defined in the fast modules, by id, with their names."""
    found = {}
    for module in FAST_MODULES:
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                found[id(value)] = f"{module.__name__}.{name}"
    return found


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every fast-module function, wherever it is looked up, raises and is recorded."""
    taken: list[str] = []
    functions = _fast_functions()

    def tripwire(name: str) -> Any:
        def trip(*args: Any, **kwargs: Any) -> Any:
            taken.append(name)
            raise AssertionError(f"fast path taken with the switch off: {name}")

        return trip

    for module in CALLERS:
        for attr, value in list(vars(module).items()):
            name = functions.get(id(value))
            if name is not None:
                monkeypatch.setattr(module, attr, tripwire(name))
    monkeypatch.setattr(database_module, "selects", _Tripped(selects, taken))
    yield taken
    assert taken == [], f"fast paths taken: {taken}"


class _Tripped(ModuleType):
    """A fast module whose every attribute read is a path taken."""

    def __init__(self, module: ModuleType, taken: list[str]) -> None:
        super().__init__(module.__name__)
        self._taken = taken

    def __getattr__(self, name: str) -> Any:
        self._taken.append(f"{self.__name__}.{name}")
        raise AssertionError(f"fast path looked up with the switch off: {name}")


def state(obj: Any) -> tuple[Any, ...]:
    """A model object as a user sees it."""
    return type(obj).__name__, dict(obj.__data__), sorted(obj._dirty), sorted(obj.__rel__)


def result_of(value: Any) -> Any:
    """What an insert returned: a number, or the rows of its cursor."""
    if isinstance(value, (int, type(None))):
        return value
    return [tuple(row) for row in value]


async def error_of(call: Awaitable[Any]) -> tuple[str, str]:
    with pytest.raises(peewee.DoesNotExist) as caught:
        await call
    return type(caught.value).__name__, str(caught.value)


async def workload(db: Any) -> list[Any]:
    """One call through every entry into the speed layer, and what each gave."""
    out: list[Any] = []
    ann = await User.acreate(username="ann")
    bob = User(username="bob")
    out.append(await bob.asave())
    bob.username = "bobby"
    out.append(await bob.asave())
    out.append(await bob.asave(only=[User.username]))
    tweet = await Tweet.acreate(user=ann, content="hi", likes=2)
    out += [state(ann), state(bob), state(tweet)]
    out.append(state(await User.aget_by_id(ann.id)))
    out.append(await error_of(User.aget_by_id(10**6)))
    out.append(state(await db.get(User.select().where(User.username == "bobby"))))
    out.append(await error_of(db.get(User.select().where(User.username == "nobody"))))
    out.append([state(t) for t in await db.list(Tweet.select().order_by(Tweet.id))])
    out.append([state(u) for u in await db.aexecute(User.select().order_by(User.id))])
    out.append(await db.list(User.select(User.id, User.username).order_by(User.id).dicts()))
    names = [{"username": f"m{i}"} for i in range(30)]
    out.append(result_of(await db.aexecute(User.insert_many(names))))
    many = [Tweet(user=ann, content=f"c{i}") for i in range(20)]
    await Tweet.abulk_create(many)
    out.append([t.id for t in many])
    plain = [{"user": ann.id, "content": "t"}] * 10
    sync_insert = Tweet.insert_many(plain)
    out.append(result_of(await asyncio.to_thread(sync_insert.execute)))
    loaded = await afetch(Tweet.select().order_by(Tweet.id), TweetRead)
    out.append([r.model_dump() for r in loaded])
    one = await afetch_one(Tweet.select().where(Tweet.content == "hi"), TweetRead)
    out.append(one.model_dump())
    out.append(await db.count(Tweet.select()))
    return out


async def test_off_takes_peewee_paths_with_the_same_results(backend, request, tmp_path):
    async with model_database(backend, request, tmp_path) as db:
        expected = await workload(db)
    async with model_database(backend, request, tmp_path, fast_paths=False) as db:
        assert db.fast_paths is False and not fast.enabled(db)
        wires = request.getfixturevalue("tripwires")
        got = await workload(db)
        assert wires == []
    assert got == expected


@fast_paths_only
async def test_on_the_tripwires_do_trip(db, tripwires):
    """The check above would notice a fast path: with the switch on, one trips."""
    assert db.fast_paths is True and fast.enabled(db)
    with pytest.raises(AssertionError, match="fast path"):
        await User.acreate(username="ann")
    assert tripwires
    tripwires.clear()


async def test_switched_off_after_construction(db, tripwires):
    """``db.fast_paths`` is a plain attribute, read on every call."""
    db.fast_paths = False
    ann = await User.acreate(username="ann")
    assert (await User.aget_by_id(ann.id)).username == "ann"
    assert [u.id for u in await db.list(User.select())] == [ann.id]


async def test_compile_query_stays_usable(backend, request, tmp_path, tripwires):
    async with model_database(backend, request, tmp_path, fast_paths=False) as db:
        ann = await User.acreate(username="ann")
        template = compile_query(db, User.select(User.username).where(User.id == Param("id")))
        cursor = await db.aexecute_sql(template.sql, template.bind({"id": ann.id}))
        assert cursor.fetchall() == [("ann",)]


def test_every_database_class_takes_the_switch(tmp_path):
    classes: list[type[AsyncDatabase]] = [
        AsyncSqliteDatabase,
        AsyncPostgresqlDatabase,
        AsyncMySQLDatabase,
        peewee_async.PooledPostgresqlDatabase,
        peewee_async.PooledMySQLDatabase,
        peewee_asyncext.PooledPostgresqlExtDatabase,
    ]
    for cls in classes:
        assert cls(None, fast_paths=False).fast_paths is False, cls
        assert cls(None).fast_paths is fast.ENABLED, cls
    assert connect(f"sqlite:///{tmp_path}/x.db", fast_paths=False).fast_paths is False


def run_python(code: str, value: str | None, *args: str) -> str:
    """Run ``code`` in a new interpreter with ``FASTPEEWEE_FAST_PATHS`` set to ``value``."""
    env = {k: v for k, v in os.environ.items() if k != fast.ENV_VAR}
    if value is not None:
        env[fast.ENV_VAR] = value
    src = Path(fastpeewee.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


READ_SWITCH = """
    import fastpeewee
    from fastpeewee import fast
    db = fastpeewee.AsyncSqliteDatabase(":memory:", fast_paths=True)
    print(fast.ENABLED, db.fast_paths)
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "True True"),
        ("1", "True True"),
        ("0", "False False"),
        ("off", "False False"),
        (" False ", "False False"),
        ("no", "False False"),
    ],
    ids=["unset", "1", "0", "off", "False", "no"],
)
def test_environment_variable(value, expected):
    assert run_python(READ_SWITCH, value) == expected


RUN_OFF = """
    import asyncio, sys
    import peewee
    import fastpeewee
    from fastpeewee.fast import fastpath, selects

    def trip(*args, **kwargs):
        sys.exit("fast path taken")

    selects.native = fastpath.get_by_id = fastpath.save = trip
    db = fastpeewee.AsyncSqliteDatabase(sys.argv[1])

    class Item(db.Model):
        name = peewee.CharField()

    async def main():
        await db.acreate_tables([Item])
        item = await Item.acreate(name="a")
        same = await Item.aget_by_id(item.id)
        listed = await db.list(Item.select())
        got = await db.get(Item.select().where(Item.name == "a"))
        print(same.name, len(listed), got.id == item.id)
        await db.close_pool()

    asyncio.run(main())
"""


def test_environment_variable_keeps_queries_off_the_fast_paths(tmp_path):
    assert run_python(RUN_OFF, "0", str(tmp_path / "off.db")) == "a 1 True"
