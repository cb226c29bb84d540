"""Cancellation at every await point of the operational helpers, on every backend.

``db.warm_pool()``, ``db.aping()`` / ``readiness``, ``alock``, ``amigrate`` and
``arun_in_transaction`` are each started and cancelled after k event-loop
steps, for every k until they complete on their own. After each run, from
outside the library: the server has exactly the sessions the pools hold
(nothing half-open leaked), no session is left in a transaction, a named lock
is free for another connection (``pg_try_advisory_xact_lock``,
``IS_USED_LOCK``, SQLite's write lock), nothing a failed attempt wrote is
committed, and the next use works.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest

from fastpeewee import alock, amigrate, readiness
from fastpeewee.integrations.core import database_lifespan
from fastpeewee.locks import SCHEMA_LOCK

from ..harness import (
    LEDGER,
    Ledger,
    Outside,
    StepResult,
    cancel_at_every_step,
    check_invariants,
    insert,
    ledger_database,
)
from .ops import columns, lock_is_free, sessions_match_pools, tagged, wait_lock_free

_tags = itertools.count()


@pytest.fixture
async def env(backend, request, tmp_path) -> AsyncIterator[tuple[Any, Outside]]:
    options: dict[str, Any] = {"pool_size": 4, "pool_min_size": 2, "acquire_timeout": 5.0}
    if backend == "sqlite":  # no fsync per commit: hundreds of runs per test
        options["pragmas"] = {"journal_mode": "wal", "synchronous": "off"}
        options["timeout"] = 2.0
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        yield db, outside


async def every_step(op: Any, check: Any, stride: int = 1) -> int:
    """:func:`cancel_at_every_step` (every ``stride``-th step: MariaDB's DDL makes
    a migration hundreds of steps long), also failing when a cancellation was
    swallowed (the task ended normally although cancelled before it completed)."""

    async def checked(result: StepResult) -> None:
        assert result.completed or result.error is not None, (
            f"k={result.k}: the cancellation was swallowed (the operation returned)"
        )
        await check(result)

    runs = await cancel_at_every_step(op, checked, stride=stride)
    assert runs >= 2, "the operation never awaited: the test cancelled nothing"
    return runs


# -- pool warm-up ------------------------------------------------------------------


async def test_warm_pool_cancelled_at_every_step_leaks_nothing(env, backend):
    """From a cold pool each time: a cancelled warm-up leaves no connection half
    open or checked out, the pool's counters agree with the server, and the
    database works afterwards."""
    db, outside = env
    await db.close_pool()

    async def op(marks: dict[str, bool]) -> int:
        return int(await db.warm_pool())

    async def check(result: StepResult) -> None:
        await sessions_match_pools(db, outside)
        stats = [s for s in db.pool_stats() if "[sync]" not in s.name]
        if result.completed:
            assert [s.idle for s in stats] == [2], stats
        await check_invariants(db, outside, probe=f"warm-{next(_tags)}")
        await sessions_match_pools(db, outside)
        await db.close_pool()  # cold again for the next k

    await every_step(op, check)


async def test_lifespan_warm_up_cancelled_at_every_step_closes_the_pools(env, backend):
    """``database_lifespan(warm=True)`` cancelled during start-up: the pools are
    closed (nothing open on the server) and a later start-up works."""
    db, outside = env
    await db.close_pool()
    lifespan = database_lifespan(db, warm=True)

    async def op(marks: dict[str, bool]) -> None:
        async with lifespan():
            marks["started"] = True

    async def check(result: StepResult) -> None:
        await sessions_match_pools(db, outside)
        assert db.pool_stats() == [], "the lifespan ended, its pools stayed open"

    await every_step(op, check)
    async with lifespan():
        assert await db.aping() > 0


# -- ping and readiness ------------------------------------------------------------


@pytest.mark.parametrize("pool", ["cold", "warm"])
async def test_aping_cancelled_at_every_step_leaks_nothing(env, backend, pool):
    db, outside = env

    async def op(marks: dict[str, bool]) -> float:
        return float(await db.aping(timeout=2.0))

    async def check(result: StepResult) -> None:
        await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"ping-{next(_tags)}")
        if pool == "cold":
            await db.close_pool()

    if pool == "cold":
        await db.close_pool()
    await every_step(op, check)


async def test_readiness_cancelled_at_every_step_leaks_nothing(env, backend):
    db, outside = env
    await db.close_pool()

    async def op(marks: dict[str, bool]) -> None:
        assert await readiness(db, timeout=2.0) == (True, "ready")

    async def check(result: StepResult) -> None:
        await sessions_match_pools(db, outside)
        assert await readiness(db, timeout=2.0) == (True, "ready")
        await db.close_pool()

    await every_step(op, check)


# -- named locks -------------------------------------------------------------------


async def test_alock_cancelled_at_every_step_is_never_left_held(env, backend):
    """Cancelled anywhere (waiting for the lock, holding it, committing), the lock
    is free for another connection, and the block's writes are all or nothing."""
    db, outside = env
    name = "cancel-every-step"
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Any:
        tag = current["tag"] = f"l{next(_tags)}"  # before the task starts: k may be 0

        async def body() -> None:
            async with alock(db, name, timeout=5.0):
                await insert(db, tag)
                await insert(db, tag)
                marks["body"] = True

        return body()

    async def check(result: StepResult) -> None:
        await wait_lock_free(outside, name)
        await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"probe-{current['tag']}")
        rows = (await asyncio.to_thread(outside.tags)).get(current["tag"], 0)
        allowed = {2} if result.completed else {0, 2} if result.marks.get("body") else {0}
        assert rows in allowed, f"k={result.k}: {rows} rows, allowed {allowed}"
        # Another holder gets the lock at once.
        async with alock(db, name, timeout=1.0):
            pass

    await every_step(op, check)


async def test_alock_waiter_cancelled_leaves_the_holder_alone(env, backend):
    """A task waiting for a lock another connection holds is cancelled at every
    step: it never takes the lock, the holder keeps it, and nothing leaks."""
    db, outside = env
    name = "waited-for"
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with alock(db, name, timeout=5.0):
            holding.set()
            await release.wait()

    held = asyncio.ensure_future(holder())
    await asyncio.wait_for(holding.wait(), 5)
    got: list[int] = []

    async def op(marks: dict[str, bool]) -> None:
        async with alock(db, name, timeout=0.2):
            got.append(1)

    async def check(result: StepResult) -> None:
        assert not got, "the lock was taken while another connection held it"
        assert not held.done()
        if backend != "sqlite":  # SQLite's lock is the file's: the holder keeps it busy
            assert not await asyncio.to_thread(lock_is_free, outside, name)

    try:
        # The op ends by itself with LockTimeout (a PeeweeException) after 0.2 s.
        await cancel_at_every_step(op, check, max_steps=60)
    except AssertionError as exc:
        if "still running" not in str(exc):
            raise
    finally:
        release.set()
        await held
    await wait_lock_free(outside, name)
    await sessions_match_pools(db, outside)


# -- migrations --------------------------------------------------------------------

HISTORY = "cancel_migration_history"


def _migrations(outside: Outside, table: str, k: int) -> list[Any]:
    """Two migrations on ``table``: add a column, then fill it."""

    def add(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_column(table, "extra", peewee.IntegerField(null=True)))

    def fill(migrator: Any, db: Any) -> None:
        db.execute_sql(f"UPDATE {table} SET extra = 1")

    add.migration_name = f"{table}_add"  # type: ignore[attr-defined]
    fill.migration_name = f"{table}_fill"  # type: ignore[attr-defined]
    return [add, fill]


async def test_amigrate_cancelled_at_every_step(env, backend):
    """Cancelled anywhere: the schema lock is free, a migration is recorded exactly
    when it is applied (PostgreSQL, SQLite: the run is one transaction; MySQL: the
    migration under way finishes first), and a later ``amigrate`` completes."""
    db, outside = env
    current: dict[str, Any] = {}

    def op(marks: dict[str, bool]) -> Any:
        # A fresh table, made before the task starts (k may be 0), from outside.
        k = current["k"] = next(_tags)
        table = current["table"] = f"mig_{k}"
        outside.query(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        outside.query(f"INSERT INTO {table} (id) VALUES (1)")
        current["migrations"] = _migrations(outside, table, k)
        return amigrate(db, current["migrations"], table=HISTORY, timeout=5.0)

    def recorded() -> set[str]:
        try:
            return {r[0] for r in outside.query(f"SELECT name FROM {HISTORY}")}
        except Exception:  # the history table itself not created yet
            return set()

    async def check(result: StepResult) -> None:
        await wait_lock_free(outside, SCHEMA_LOCK)
        await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"probe-m{current['k']}")
        table = current["table"]
        names = await asyncio.to_thread(recorded)
        added = "extra" in await asyncio.to_thread(columns, outside, table)
        filled = await asyncio.to_thread(
            outside.query, f"SELECT count(*) FROM {table} WHERE extra = 1"
        ) if added else [(0,)]  # fmt: skip
        if f"{table}_add" in names:
            assert added, f"k={result.k}: recorded as applied, but the column is missing"
        if f"{table}_fill" in names:
            assert filled[0][0] == 1, f"k={result.k}: recorded as applied, but not filled"
        # One transaction (PostgreSQL, SQLite), or on MySQL the migration under
        # way finished and recorded before the cancellation: recorded exactly
        # when applied.
        assert added == (f"{table}_add" in names), f"k={result.k}: half-applied run"
        if result.completed:
            assert {f"{table}_add", f"{table}_fill"} <= names
        # A later run completes, and applies what is left exactly once.
        await amigrate(db, current["migrations"], table=HISTORY, timeout=5.0)
        assert {f"{table}_add", f"{table}_fill"} <= await asyncio.to_thread(recorded)
        assert "extra" in await asyncio.to_thread(columns, outside, table)
        await wait_lock_free(outside, SCHEMA_LOCK)
        await sessions_match_pools(db, outside)

    await every_step(op, check, stride=7 if backend == "mysql" else 1)


# -- retries -----------------------------------------------------------------------


class Conflict(Exception):
    """Stands for a serialization failure: retried by the test's ``retry_if``."""


async def test_arun_in_transaction_cancelled_at_every_step(env, backend):
    """Three runs, the first two failing: cancelled in a run, in a pause or in
    the COMMIT, nothing of a failed run is committed, the successful run's rows
    at most once, and nothing is left open."""
    db, outside = env
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Any:
        tag = current["tag"] = f"r{next(_tags)}"  # before the task starts: k may be 0
        return body(tag, marks)

    async def body(tag: str, marks: dict[str, bool]) -> None:
        runs = 0

        async def attempt() -> None:
            nonlocal runs
            runs += 1
            await insert(db, tag if runs == 3 else f"{tag}-failed")
            await insert(db, tag if runs == 3 else f"{tag}-failed")
            if runs < 3:
                raise Conflict(f"run {runs}")
            marks["body"] = True

        await db.arun_in_transaction(
            attempt, attempts=3, backoff=0.001, retry_if=lambda e: isinstance(e, Conflict)
        )

    async def check(result: StepResult) -> None:
        tag = current["tag"]
        await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"probe-{tag}")
        tags = await asyncio.to_thread(outside.tags)
        assert tags.get(f"{tag}-failed", 0) == 0, f"k={result.k}: a failed run committed"
        rows = tags.get(tag, 0)
        allowed = {2} if result.completed else {0, 2} if result.marks.get("body") else {0}
        assert rows in allowed, f"k={result.k}: {rows} rows, allowed {allowed}"

    await every_step(op, check)


# -- asyncmy reads under read_timeout= (asyncio.wait_for on Python 3.11) -----------


@pytest.mark.backends("mysql")
async def test_read_timeout_never_swallows_a_cancellation(backend, request, tmp_path):
    """With ``read_timeout=``, asyncmy awaits every read through ``wait_for``,
    which on Python 3.11 returns the reply of a task cancelled as it arrives.
    A write then a read, cancelled at every step: the cancellation is always
    raised (``every_step`` fails on a swallowed one), the write is committed
    only if its statement ran, and nothing is left open."""
    options = {"pool_size": 4, "acquire_timeout": 5.0, "read_timeout": 5}
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        current: dict[str, str] = {}

        def op(marks: dict[str, bool]) -> Any:
            tag = current["tag"] = f"t{next(_tags)}"
            return body(tag, marks)

        async def body(tag: str, marks: dict[str, bool]) -> None:
            await insert(db, tag)
            marks["body"] = True
            cursor = await db.aexecute_sql(f"SELECT COUNT(*) FROM {LEDGER} WHERE tag = %s", (tag,))
            assert cursor.fetchone()[0] == 1

        async def check(result: StepResult) -> None:
            tag = current["tag"]
            await check_invariants(db, outside, probe=f"probe-{tag}")
            rows = (await asyncio.to_thread(outside.tags)).get(tag, 0)
            allowed = {1} if result.completed or result.marks.get("body") else {0, 1}
            assert rows in allowed, f"k={result.k}: {rows} rows, allowed {allowed}"

        await every_step(op, check)


@pytest.mark.backends("mysql")
async def test_read_timeout_never_swallows_a_cancellation_in_a_binary_bulk(
    backend, request, tmp_path
):
    """The same for a big insert sent as MariaDB binary bulk statements
    (``bulk_binary=True``): the cancellation is always raised, and the rows are
    all there or none."""
    options = {"pool_size": 4, "acquire_timeout": 5.0, "read_timeout": 5, "bulk_binary": True}
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        current: dict[str, str] = {}
        rows = 600  # past the binary bulk's threshold (drivers/mysql.py BULK_MIN_ROWS)
        Ledger.bind(db)  # the model's database decides how its queries compile

        def op(marks: dict[str, bool]) -> Any:
            tag = current["tag"] = f"t{next(_tags)}"
            return db.aexecute(Ledger.insert_many([{"tag": tag}] * rows))

        async def check(result: StepResult) -> None:
            tag = current["tag"]
            await check_invariants(db, outside, probe=f"probe-{tag}")
            found = (await asyncio.to_thread(outside.tags)).get(tag, 0)
            allowed = {rows} if result.completed else {0, rows}
            assert found in allowed, f"k={result.k}: {found} rows, allowed {allowed}"

        assert await every_step(op, check) >= 3
