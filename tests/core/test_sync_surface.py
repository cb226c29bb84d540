"""The sync surface peewee's own tools use: db.cursor(), commit() and rollback()."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import peewee
import pytest

from ..conftest import assert_no_leaks
from ..models import User


def _closed_commit_and_rollback(db: Any) -> list[str]:
    messages = []
    for method in (db.commit, db.rollback):
        with pytest.raises(peewee.InterfaceError) as info:
            method()
        messages.append(str(info.value))
    return messages


async def test_commit_and_rollback_on_a_closed_database_raise_as_in_peewee(
    db: Any, tmp_path: Path
) -> None:
    reference = peewee.SqliteDatabase(str(tmp_path / "peewee.db"))
    expected = _closed_commit_and_rollback(reference)
    assert await asyncio.to_thread(_closed_commit_and_rollback, db) == expected
    assert _closed_commit_and_rollback(db) == expected  # on the loop: refused before any I/O
    assert_no_leaks(db)


def _manual_transaction(db: Any, commit: bool) -> None:
    db.connect()
    try:
        db.begin()
        User.create(username="manual")
        db.commit() if commit else db.rollback()
    finally:
        db.close()


@pytest.mark.parametrize("commit", [True, False])
async def test_commit_and_rollback_work_once_open(db: Any, commit: bool) -> None:
    await asyncio.to_thread(_manual_transaction, db, commit)
    assert await db.count(User.select()) == (1 if commit else 0)
    assert_no_leaks(db)


def _script(db: Any) -> list[str]:
    table = db.quote[0] + User._meta.table_name + db.quote[1]
    db.cursor().executescript(
        f"INSERT INTO {table} (username) VALUES ('a;b');\n"
        f"INSERT INTO {table} (username) VALUES ('c');;\n"
        f"UPDATE {table} SET username = 'c!' WHERE username = 'c'"
    )
    return [u.username for u in User.select().order_by(User.username)]


async def test_cursor_executescript_runs_each_statement(db: Any) -> None:
    # sqlite3's cursor has executescript, which schema tools call on peewee's cursor.
    assert await asyncio.to_thread(_script, db) == ["a;b", "c!"]
    assert_no_leaks(db)


async def test_executescript_reports_a_bad_statement(db: Any) -> None:
    def bad() -> None:
        db.cursor().executescript("SELECT 1; SELEC nonsense")

    with pytest.raises(peewee.DatabaseError):
        await asyncio.to_thread(bad)
    assert_no_leaks(db)
