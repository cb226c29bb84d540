"""Server connections killed at every step of the ORM write paths (RELIABILITY R8, R9, R19).

Like :mod:`tests.faults.test_kill_every_step`, for the model calls that skip
peewee's own code (``acreate``, ``asave`` on compiled SQL), the big multi-row
inserts (PostgreSQL's ``COPY``, MySQL's several-statement ``executemany``) and a
thread's ``with db.atomic(): Model.create(...)`` on psycopg / PyMySQL: what was
acknowledged is committed, what failed is not committed at all (a kill during
COMMIT may go either way, never halfway), the caller gets a peewee error, and
the pool heals.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

from ..harness import Outside, check_invariants
from .ops import kill_all, sessions_match_pools
from .test_cancel_writes import (
    BULK_ROWS,
    Entry,
    bulk_rows,
    entry_database,
    statement_bound,  # noqa: F401 (a fixture)
)
from .test_kill_every_step import kill_at_every_step

pytestmark = pytest.mark.backends("postgres", "mysql")


@pytest.fixture
async def writes(backend, request, tmp_path) -> AsyncIterator[tuple[Any, Outside]]:
    options = {"pool_size": 3, "acquire_timeout": 5.0, "check_idle_after": 0.0}
    async with entry_database(backend, request, tmp_path, **options) as env:
        yield env


async def test_kill_during_model_writes_in_a_transaction(writes):
    db, outside = writes

    async def body(tag: str, marks: dict[str, bool]) -> None:
        async with db.atomic():
            await Entry.acreate(tag=tag)
            await Entry(tag=tag).asave()
            marks["body"] = True

    assert await kill_at_every_step(db, outside, body, 2) >= 2
    await sessions_match_pools(db, outside, killed=True)


async def test_kill_during_a_bulk_insert(writes, backend, statement_bound):  # noqa: F811
    """COPY on PostgreSQL, three INSERTs in BEGIN/COMMIT on MySQL: all or none."""
    db, outside = writes

    async def body(tag: str, marks: dict[str, bool]) -> None:
        marks["body"] = True  # one operation: a failure may or may not have committed
        await Entry.insert_many(bulk_rows(backend, tag)).aexecute()

    assert await kill_at_every_step(db, outside, body, BULK_ROWS[backend]) >= 2
    await sessions_match_pools(db, outside, killed=True)


async def test_kill_a_thread_transaction_after_every_statement(writes):
    """A thread's ``with db.atomic()`` with two ``Model.create``: every session
    killed right after its i-th statement, for every i until it commits first."""
    db, outside = writes
    worker: dict[str, Any] = {}

    def hook(event: Any) -> None:
        if worker.get("ident") == threading.get_ident():
            worker["seen"] += 1
            if worker["seen"] == worker["kill_after"]:
                kill_all(outside)  # the observer's own session spared: idle meanwhile

    def work(tag: str, marks: dict[str, bool]) -> None:
        worker.update(ident=threading.get_ident(), seen=0)
        try:
            with db.atomic():
                Entry.create(tag=tag)
                Entry.create(tag=tag)
                marks["body"] = True
        finally:
            worker["ident"] = None

    db.query_hooks.append(hook)
    failed = 0
    try:
        for i in itertools.count(1):
            tag = f"thread-{i}"
            marks: dict[str, bool] = {}
            worker["kill_after"] = i
            error: BaseException | None = None
            try:
                await asyncio.wait_for(asyncio.to_thread(work, tag, marks), 10)
            except peewee.PeeweeException as exc:  # a driver's own error would fail here
                error = exc
            found = (await asyncio.to_thread(outside.tags)).get(tag, 0)
            if error is None:
                assert found == 2, f"i={i}: acknowledged, but {found} of 2 rows committed"
            else:
                assert isinstance(error, (peewee.OperationalError, peewee.InterfaceError))
                failed += 1
                allowed = {0, 2} if marks.get("body") else {0}
                assert found in allowed, f"i={i}: {found} rows after {error!r}"
            await check_invariants(db, outside, probe=f"probe-{tag}")
            await sessions_match_pools(db, outside, killed=True)
            if worker["seen"] < i:  # ran to its end before the kill: every step done
                break
        assert i >= 3 and failed >= 2, f"{i} statements, {failed} failed: the kills missed"
    finally:
        db.query_hooks.remove(hook)
