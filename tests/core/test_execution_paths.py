"""Every statement takes one execution path per direction (sync, async, streaming),
where it is logged on the ``peewee`` logger and reported to the query hooks once."""

from __future__ import annotations

import logging
from typing import Any

import peewee
import pytest

from ..models import User

ROWS = [{"username": f"u{i}"} for i in range(3)]


@pytest.fixture
def seen(db, caplog):
    """The SQL of every statement the hooks and the ``peewee`` logger saw."""
    caplog.set_level(logging.DEBUG, logger="peewee")
    hooked: list[Any] = []
    db.query_hooks.append(hooked.append)
    yield hooked, caplog
    db.query_hooks.remove(hooked.append)


def logged(caplog, sql: str) -> int:
    return sum(1 for r in caplog.records if r.name == "peewee" and r.msg[0] == sql)


async def test_a_streamed_query_is_seen_once(db, seen):
    hooked, caplog = seen
    await User.insert_many(ROWS).aexecute()
    hooked.clear()
    caplog.clear()
    query = User.select().order_by(User.id)
    names = [u.username async for u in db.iterate(query)]
    assert names == ["u0", "u1", "u2"]
    sql, params = query.sql()
    assert [(e.sql, list(e.params), e.exception) for e in hooked] == [(sql, list(params), None)]
    assert logged(caplog, sql) == 1


async def test_a_failing_streamed_query_is_reported_with_its_error(db, seen):
    hooked, _ = seen
    with pytest.raises(peewee.DatabaseError):
        async for _ in db.iterate(User.raw("SELECT * FROM no_such_table")):
            pass
    assert [e.sql for e in hooked] == ["SELECT * FROM no_such_table"]
    assert hooked[0].exception is not None


async def test_a_multi_row_insert_is_seen_once(db, backend, seen):
    hooked, caplog = seen
    await User.insert_many(ROWS).aexecute()
    inserts = [e for e in hooked if e.sql.startswith(("INSERT", "COPY"))]
    assert len(inserts) == 1, [e.sql for e in hooked]
    event = inserts[0]
    assert event.exception is None
    assert logged(caplog, event.sql) == 1
    if backend == "sqlite" and db.fast_paths:  # executemany: one single-row INSERT
        assert len(event.params) == len(ROWS)  # the rows as parameters
    if backend == "postgres" and db.fast_paths:  # COPY, from async code
        assert event.sql.startswith("COPY")
    assert await db.count(User.select()) == len(ROWS)


def test_a_sync_multi_row_insert_is_seen_once(db, seen):
    hooked, caplog = seen
    User.insert_many(ROWS).execute()
    inserts = [e for e in hooked if e.sql.startswith(("INSERT", "COPY"))]
    assert len(inserts) == 1, [e.sql for e in hooked]
    assert logged(caplog, inserts[0].sql) == 1
