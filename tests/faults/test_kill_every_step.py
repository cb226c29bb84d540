"""Server connections killed at every step of an operation (RELIABILITY R8, R9, R19).

Like :mod:`tests.test_cancel_every_step`, but instead of cancelling the task
after k loop steps the server terminates every connection of the database
(``pg_terminate_backend`` / ``KILL``). The operation either completes, and
what it acknowledged is committed, or fails with a database error and
commits nothing (a kill during COMMIT may go either way, never halfway); the
pool heals, and the next callers succeed without seeing an error.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import peewee
import pytest

from ..harness import Outside, check_invariants, insert, ledger_database
from .ops import kill_all

pytestmark = pytest.mark.backends("postgres", "mysql")

_tags = itertools.count()


@pytest.fixture
async def env(backend, request, tmp_path):
    options: dict[str, Any] = {"pool_size": 3, "acquire_timeout": 5.0, "check_idle_after": 0.0}
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        yield db, outside


async def kill_at_every_step(db: Any, outside: Outside, body: Any, rows: int) -> int:
    """Run ``body(tag, marks)``, killing every connection after k loop steps."""
    for k in range(2000):
        tag = f"k{next(_tags)}"
        marks: dict[str, bool] = {}
        task = asyncio.ensure_future(body(tag, marks))
        for _ in range(k):
            if task.done():
                break
            await asyncio.sleep(0)
        completed = task.done()
        if not completed:
            await asyncio.to_thread(kill_all, outside)
        error: BaseException | None = None
        try:
            await asyncio.wait_for(task, 10)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            error = exc
        found = (await asyncio.to_thread(outside.tags)).get(tag, 0)
        if error is None:
            assert found == rows, f"k={k}: acknowledged, but {found} of {rows} rows committed"
        elif marks.get("body"):
            assert found in (0, rows), f"k={k}: {found} of {rows} rows after {error!r}"
        else:
            assert found == 0, f"k={k}: {found} rows committed by a failed operation {error!r}"
        await check_invariants(db, outside, probe=f"probe-{tag}")
        if completed:
            return k + 1
    raise AssertionError("the operation never completed")


async def test_kill_during_a_transaction(env):
    db, outside = env

    async def body(tag: str, marks: dict[str, bool]) -> None:
        async with db.atomic():
            await insert(db, tag)
            await insert(db, tag)
            marks["body"] = True

    assert await kill_at_every_step(db, outside, body, 2) >= 2


async def test_kill_during_an_autocommit_statement(env):
    db, outside = env

    async def body(tag: str, marks: dict[str, bool]) -> None:
        marks["body"] = True  # one statement: a failure may or may not have run
        await insert(db, tag)

    assert await kill_at_every_step(db, outside, body, 1) >= 2


async def test_kill_during_a_request_scope(env):
    db, outside = env

    async def body(tag: str, marks: dict[str, bool]) -> None:
        async with db.scope():
            await insert(db, tag + "-auto")
            async with db.atomic():
                await insert(db, tag)
                await insert(db, tag)
                marks["body"] = True

    assert await kill_at_every_step(db, outside, body, 2) >= 2
