"""Run by .ci/package-check inside a clean virtualenv holding only the wheel.

``base``: the package imports from site-packages (not a checkout), ships
py.typed and its pytest plugin entry point, imports no optional dependency,
and a tiny async-and-sync program runs on SQLite.
``extras``: each driver adapter and the FastAPI integration import.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import sys
from pathlib import Path

import peewee

import fastpeewee
from fastpeewee import AsyncSqliteDatabase

location = Path(fastpeewee.__file__).resolve()
assert "site-packages" in location.parts, f"fastpeewee imported from {location}, not the wheel"
assert (location.parent / "py.typed").exists(), "py.typed is missing from the wheel"
assert importlib.metadata.version("fastpeewee") == fastpeewee.__version__
plugins = importlib.metadata.entry_points(group="pytest11")
assert any(ep.value == "fastpeewee_pytest" for ep in plugins), "no pytest11 entry point"

if sys.argv[1] == "base":
    for optional in ("asyncpg", "psycopg", "asyncmy", "pymysql", "pydantic", "fastapi"):
        assert optional not in sys.modules, f"import fastpeewee imported {optional}"

    db = AsyncSqliteDatabase("smoke.db", pool_size=2)

    class Note(db.Model):  # type: ignore[name-defined,misc]
        text = peewee.TextField()

    async def main() -> int:
        await db.acreate_tables([Note])
        async with db.atomic():
            await Note.acreate(text="async")
        count = await db.count(Note.select())
        await db.close_pool()
        return count

    assert asyncio.run(main()) == 1
    with db.atomic():  # sync code, no loop in this thread
        Note.create(text="sync")
    assert Note.select().count() == 2
    db.close_all()
    print(f"fastpeewee {fastpeewee.__version__} from the wheel: SQLite async and sync ok")
else:
    for module in (
        "fastpeewee.drivers.postgres",
        "fastpeewee.drivers.mysql",
        "fastpeewee.integrations.fastapi",
        "fastpeewee.schema",
    ):
        importlib.import_module(module)
    import asyncpg
    import psycopg

    print(f"extras ok: asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__} "
          f"({psycopg.pq.__impl__}), drivers and FastAPI integration import")
