"""The mypy plugin (``fastpeewee.mypy``): typed user code needs no ``# type: ignore``.

One mypy run (the API, in process) over a small package: a module that must
check clean under ``--strict`` and one whose every marked line must be reported,
so the plugin is shown not to silence errors.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import fastpeewee

api = pytest.importorskip("mypy.api")

DATABASE = """
from fastpeewee import AsyncSqliteDatabase

db = AsyncSqliteDatabase(":memory:")
"""

GOOD = """
from __future__ import annotations

import peewee
from pydantic import BaseModel

from fastpeewee import AsyncSqliteDatabase, schemas, to_pydantic

from .database import db

local = AsyncSqliteDatabase(":memory:")


class User(db.Model):
    email = peewee.CharField(unique=True)


class Item(local.Model):
    owner = peewee.ForeignKeyField(User, backref="items")
    title = peewee.CharField()


class _SignUp(BaseModel):
    password: str


UserRead = to_pydantic(User, variant="read", relationships={User.items: list[int]})
UserCreate = to_pydantic(User, variant="create", base_model=_SignUp)
ItemCreate, ItemUpdate, ItemRead = schemas(Item)


def describe(user: UserRead, new: UserCreate, item: ItemRead) -> str:
    password: str = new.password
    return f"{user.email} {password} {item.title}"


async def create(email: str) -> User:
    user: User = await User.acreate(email=email)
    first: int = user.id
    try:
        return await User.aget(User.id == first)
    except User.DoesNotExist:
        raise LookupError(email) from None


def read(user: User) -> UserRead:
    return UserRead(id=user.id, email=user.email, items=[])
"""

BAD = """
from __future__ import annotations

import peewee

from fastpeewee import to_pydantic

from .database import db
from .good import ItemRead, User, UserCreate, UserRead

thing = object()


class Stray(thing.Model):  # E: name-defined misc
    pass


class Tag(db.Model):
    name = peewee.CharField()


def wrong_schema(user: UserRead) -> None:
    accept(user)  # E: arg-type


def accept(new: UserCreate) -> None:
    count: int = new.password  # E: assignment


def wrong_return(item: ItemRead) -> int:
    return item  # E: return-value


async def wrong_model() -> Tag:
    return await User.acreate(email="a")  # E: return-value


TagRead = to_pydantic(Tag)


def not_a_tag(user: UserRead) -> TagRead:
    return user  # E: return-value
"""

MARK = re.compile(r"#\s*E:\s*([a-z -]+)$")


def write_package(root: Path) -> Path:
    """The sample package (database, good, bad) and a strict mypy.ini under ``root``."""
    package = root / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in {"database": DATABASE, "good": GOOD, "bad": BAD}.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    src = Path(fastpeewee.__file__).parents[1]
    (root / "mypy.ini").write_text(
        f"[mypy]\nstrict = true\nplugins = fastpeewee.mypy\nmypy_path = {src}\n"
        "[mypy-playhouse.*,asyncpg.*,asyncmy.*,pymysql.*,greenlet.*]\n"
        "ignore_missing_imports = true\n"
    )
    return package


def run_mypy(root: Path, package: Path) -> dict[str, list[str]]:
    """Errors by ``file:line`` of one mypy run (the cache in ``root``)."""
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(root / "mypy.ini"),
            "--cache-dir",
            str(root / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(package),
        ]
    )
    assert not stderr, stderr
    errors: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if ": note: " in line:
            continue
        found = re.match(r".*?app[/\\](\w+)\.py:(\d+): error: .*\[([a-z-]+)\]$", line)
        assert found, f"unexpected mypy output: {line}"
        file, number, code = found.groups()
        errors.setdefault(f"{file}:{number}", []).append(code)
    return errors


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Errors by ``file:line``, from one strict mypy run with the plugin."""
    root = tmp_path_factory.mktemp("typed")
    return run_mypy(root, write_package(root))


def test_models_and_schemas_check_clean(checked: dict[str, list[str]]) -> None:
    assert {where: codes for where, codes in checked.items() if where.startswith("good:")} == {}


def test_real_errors_are_still_reported(checked: dict[str, list[str]]) -> None:
    # A base that is no database is reported as mypy reports it: not defined, then Any.
    expected = {
        f"bad:{number}": found.group(1).split()
        for number, line in enumerate(textwrap.dedent(BAD).lstrip().splitlines(), start=1)
        if (found := MARK.search(line))
    }
    reported = {where: codes for where, codes in checked.items() if where.startswith("bad:")}
    assert reported == expected


def test_a_warm_cache_after_an_import_changed(tmp_path: Path) -> None:
    # mypy re-checks a module whose own cache is valid when what it imports
    # changed, without the step where the plugin prepares its tree: the plugin
    # keeps such modules out of the cache so they are never checked unprepared.
    package = write_package(tmp_path)
    first = run_mypy(tmp_path, package)
    with (package / "database.py").open("a") as database:
        # A new name: an interface change, so mypy re-checks good.py.
        database.write("\n\ndef added() -> int:\n    return 1\n")
    second = run_mypy(tmp_path, package)
    assert {w: c for w, c in second.items() if w.startswith("good:")} == {}
    assert second == first
