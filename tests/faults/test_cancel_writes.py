"""Cancellation at every step of the ORM write paths (RELIABILITY R4, R5, R13, R16).

:mod:`tests.faults.test_cancel_every_step` drives raw SQL, ``atomic()`` and one
bulk insert; here the same harness drives the model calls that skip peewee's
own code for speed, and the peewee-async ``Manager``: ``acreate``, ``asave``
(insert and update, on compiled SQL), ``adelete_instance``,
``update().aexecute()``, ``db.prepare(...)`` writes, the big multi-row inserts
(PostgreSQL's ``COPY``, MySQL's several-statement ``executemany``, MariaDB's
binary bulk statements) and racing ``aget_or_create`` calls. Each runs inside a
transaction with two writes (all or nothing) and in autocommit mode (one write:
there or not), cancelled after k loop steps for every k; after each run the
server, seen from outside the library, holds no session in a transaction, the
pools hold every connection, and the rows are all or nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncModel, Param
from fastpeewee.compat.peewee_async import Manager
from fastpeewee.drivers import mysql as mysql_driver

from ..harness import (
    LEDGER,
    Outside,
    StepResult,
    cancel_at_every_step,
    check_invariants,
    ledger_database,
)
from .ops import sessions_match_pools, tagged
from .test_cancel_every_step import Op, run_every_step


class Entry(AsyncModel):
    """A ledger row as a model: the fast paths of ``acreate``/``asave`` apply to it."""

    tag = peewee.CharField(max_length=64)
    body = peewee.TextField(null=True)

    class Meta:
        table_name = LEDGER


def add_body_column(outside: Outside) -> None:
    """Give the harness's ledger the ``body`` column of :class:`Entry` (big rows)."""
    outside.query(f"ALTER TABLE {LEDGER} ADD COLUMN body TEXT")


@asynccontextmanager
async def entry_database(
    backend: str, request: Any, tmp_path: Any, **options: Any
) -> AsyncIterator[tuple[Any, Outside]]:
    """:func:`ledger_database` with :class:`Entry` bound, its sessions
    :func:`tagged` (PgBouncer's idle server sessions of the same database, left
    by other modules, are not counted as the pools')."""
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        await asyncio.to_thread(add_body_column, outside)
        Entry.bind(db)
        yield db, outside


@pytest.fixture
async def writes(backend, request, tmp_path) -> AsyncIterator[tuple[Any, Outside]]:
    options: dict[str, Any] = {"pool_size": 3, "acquire_timeout": 5.0}
    if backend == "sqlite":  # no fsync per commit: hundreds of runs per test
        options["pragmas"] = {"journal_mode": "wal", "synchronous": "off"}
    async with entry_database(backend, request, tmp_path, **options) as env:
        yield env


# -- the writes ------------------------------------------------------------------

# A write turns ``seed`` (a row tagged ``<tag>-old``, or None) into a row tagged
# ``tag``; a removing write deletes ``seed`` (then tagged ``tag`` itself).
Write = Callable[[Any, str, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Kind:
    seeded: bool  # works on a row made first (autocommit), else inserts
    removes: bool  # deletes that row
    write: Write
    block: str = "atomic"  # the transaction: db.atomic(), or the Manager's


async def _acreate(ctx: Any, tag: str, seed: Any) -> None:
    await Entry.acreate(tag=tag)


async def _asave_insert(ctx: Any, tag: str, seed: Any) -> None:
    await Entry(tag=tag).asave()


async def _asave_update(ctx: Any, tag: str, seed: Any) -> None:
    seed.tag = tag
    assert await seed.asave() == 1


async def _update_aexecute(ctx: Any, tag: str, seed: Any) -> None:
    assert await Entry.update(tag=tag).where(Entry.id == seed.id).aexecute() == 1


async def _adelete_instance(ctx: Any, tag: str, seed: Any) -> None:
    assert await seed.adelete_instance() == 1


async def _prepared_insert(ctx: Any, tag: str, seed: Any) -> None:
    assert await ctx["insert"].execute(tag=tag) is not None  # the new key


async def _prepared_update(ctx: Any, tag: str, seed: Any) -> None:
    assert await ctx["update"].execute(tag=tag, id=seed.id) == 1


async def _manager_create(ctx: Any, tag: str, seed: Any) -> None:
    await ctx["manager"].create(Entry, tag=tag)


async def _manager_update(ctx: Any, tag: str, seed: Any) -> None:
    seed.tag = tag
    assert await ctx["manager"].update(seed) == 1


async def _manager_delete(ctx: Any, tag: str, seed: Any) -> None:
    assert await ctx["manager"].delete(seed) == 1


KINDS = {
    "acreate": Kind(False, False, _acreate),
    "asave-insert": Kind(False, False, _asave_insert),
    "asave-update": Kind(True, False, _asave_update),
    "update-aexecute": Kind(True, False, _update_aexecute),
    "adelete_instance": Kind(True, True, _adelete_instance),
    "prepared-insert": Kind(False, False, _prepared_insert),
    "prepared-update": Kind(True, False, _prepared_update),
    "manager-create": Kind(False, False, _manager_create, "manager.atomic"),
    "manager-update": Kind(True, False, _manager_update, "manager.transaction"),
    "manager-delete": Kind(True, True, _manager_delete, "manager.atomic"),
}


def expected(
    kind: Kind, n: int, result: StepResult, tag: str, transaction: bool
) -> dict[str, set[int]]:
    """Row counts per tag that ``result`` allows for ``n`` writes of ``kind``.

    ``done``: the writes are committed (all), not (none), or either (a cancel
    during COMMIT, or in autocommit mode during the one write).
    """
    marks = result.marks
    if result.completed:
        done = "all"
    elif marks.get("body") or (not transaction and marks.get("seeded")):
        done = "either"
    else:
        done = "none"
    made = {"all": {n}, "none": {0}, "either": {0, n}}[done]
    # The seed rows, made one by one in autocommit mode: any number of them
    # before the op reached its transaction, all of them from then on.
    seeds = {n} if result.marks.get("seeded") else set(range(n + 1))
    left = {"all": {0}, "none": seeds, "either": {0, n}}[done]
    if not kind.seeded:
        return {tag: made}
    if kind.removes:
        return {tag: left}
    return {tag: made, tag + "-old": left}


@pytest.mark.parametrize("mode", ["transaction", "autocommit"])
@pytest.mark.parametrize("name", list(KINDS))
async def test_model_writes(writes, backend, name, mode):
    """Two writes in a transaction are all or nothing; one in autocommit mode is
    there or not; a seed row is never half-updated or half-deleted."""
    db, outside = writes
    kind = KINDS[name]
    n = 2 if mode == "transaction" else 1
    manager = Manager(db)
    ctx = {
        "manager": manager,
        "insert": db.prepare(Entry.insert(tag=Param("tag"))),
        "update": db.prepare(Entry.update(tag=Param("tag")).where(Entry.id == Param("id"))),
    }
    blocks = {
        "atomic": db.atomic,
        "manager.atomic": manager.atomic,
        "manager.transaction": manager.transaction,
    }

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            old = tag if kind.removes else tag + "-old"
            seeds = [await Entry.acreate(tag=old) for _ in range(n)] if kind.seeded else [None] * n
            marks["seeded"] = True
            if mode == "autocommit":
                await kind.write(ctx, tag, seeds[0])
                return
            async with blocks[kind.block]():
                for seed in seeds:
                    await kind.write(ctx, tag, seed)
                marks["body"] = True

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        return expected(kind, n, result, tag, mode == "transaction")

    await run_every_step(db, outside, make, allowed, lambda: sessions_match_pools(db, outside))


# -- big multi-row inserts -------------------------------------------------------------

#: Rows per insert: on PostgreSQL a multi-row model insert from a task is one
#: COPY (with ids drawn from the sequence first); on MySQL the rows exceed one
#: statement's size bound, so executemany sends several statements bracketed by
#: BEGIN/COMMIT (a savepoint inside a transaction), and ``bulk_binary=True``
#: several COM_STMT_BULK_EXECUTE groups (500 rows or more).
BULK_ROWS = {"sqlite": 300, "postgres": 300, "mysql": 600}

#: MySQL's statement size bound in these tests (1 MB in the library, lowered as
#: tests/fast/test_bulk_mysql.py does): 600 rows of 200 bytes make three
#: statements, and each of the hundreds of cancelled runs sends 120 kB, not
#: megabytes.
STATEMENT_BYTES = 50_000


@pytest.fixture
def statement_bound(backend, monkeypatch) -> None:
    if backend == "mysql":
        monkeypatch.setattr(mysql_driver, "MANY_STATEMENT_BYTES", STATEMENT_BYTES)


def bulk_rows(backend: str, tag: str) -> list[dict[str, Any]]:
    body = "x" * 200 if backend == "mysql" else "x"
    return [{"tag": tag, "body": body} for _ in range(BULK_ROWS[backend])]


def server_counter(outside: Outside, name: str) -> int:
    """A MariaDB global status counter (``Com_insert``, ``Com_stmt_prepare``)."""
    return int(outside.query(f"SHOW GLOBAL STATUS LIKE '{name}'")[0][1])


async def check_bulk_path(
    db: Any, outside: Outside, backend: str, counter: str, least: int
) -> None:
    """One uncancelled insert, to see it take the path the test means to cancel
    (on MySQL: at least ``least`` more of the server's ``counter``)."""
    seen: list[str] = []
    db.query_hooks.append(lambda event: seen.append(event.sql.split()[0].upper()))
    before = await asyncio.to_thread(server_counter, outside, counter) if backend == "mysql" else 0
    await Entry.insert_many(bulk_rows(backend, "path")).aexecute()
    db.query_hooks.clear()
    if backend == "postgres":
        assert "COPY" in seen and "INSERT" not in seen, seen
    if backend == "mysql":
        assert await asyncio.to_thread(server_counter, outside, counter) - before >= least
    assert (await asyncio.to_thread(outside.tags))["path"] == BULK_ROWS[backend]
    await asyncio.to_thread(outside.query, f"DELETE FROM {LEDGER}")


async def cancel_bulk(db: Any, outside: Outside, backend: str, mode: str) -> int:
    """A bulk insert, alone or in a transaction after an ``acreate``, cancelled
    at every step (every 3rd on MySQL, where each costs a KILL and a reconnect)."""
    n = BULK_ROWS[backend]

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            if mode == "autocommit":
                await Entry.insert_many(bulk_rows(backend, tag)).aexecute()
                return
            async with db.atomic():
                await Entry.acreate(tag=tag)
                await Entry.insert_many(bulk_rows(backend, tag)).aexecute()
                marks["body"] = True

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        total = n if mode == "autocommit" else n + 1
        if result.completed:
            return {tag: {total}}
        if mode == "transaction" and not result.marks.get("body"):
            return {tag: {0}}
        return {tag: {0, total}}  # never a part

    return await run_every_step(
        db, outside, make, allowed, lambda: sessions_match_pools(db, outside),
        stride=3 if backend == "mysql" else 1,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["transaction", "autocommit"])
async def test_bulk_insert(writes, backend, statement_bound, mode):
    db, outside = writes
    await check_bulk_path(db, outside, backend, "Com_insert", 3)  # three INSERTs
    await cancel_bulk(db, outside, backend, mode)


@pytest.mark.backends("mysql")
@pytest.mark.parametrize("mode", ["transaction", "autocommit"])
async def test_mariadb_binary_bulk_insert(backend, request, tmp_path, statement_bound, mode):
    """``bulk_binary=True``: the rows go as COM_STMT_BULK_EXECUTE groups."""
    options = {"pool_size": 3, "acquire_timeout": 5.0, "bulk_binary": True}
    async with entry_database(backend, request, tmp_path, **options) as (db, outside):
        await check_bulk_path(db, outside, backend, "Com_stmt_prepare", 1)  # one prepared INSERT
        await cancel_bulk(db, outside, backend, mode)


# -- racing aget_or_create ---------------------------------------------------------------


class Claim(AsyncModel):
    name = peewee.CharField(max_length=64, unique=True)

    class Meta:
        table_name = "cancel_writes_claim"


async def test_aget_or_create_race(writes, backend):
    """Two tasks get-or-create the same row at once, one of them cancelled after
    k steps: the other gets the one row there is, made by either."""
    db, outside = writes
    Claim.bind(db)
    await db.acreate_tables([Claim])
    names = itertools.count()
    rivals: dict[str, asyncio.Future[Any]] = {}
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Awaitable[Any]:
        name = current["name"] = f"c{next(names)}"  # before the task starts: k may be 0
        rivals[name] = asyncio.ensure_future(Claim.aget_or_create(name=name))
        return Claim.aget_or_create(name=name)

    async def check(result: StepResult) -> None:
        name = current["name"]
        rival, _created = await asyncio.wait_for(rivals.pop(name), 10)
        await check_invariants(db, outside, probe=f"probe-{name}")
        await sessions_match_pools(db, outside)
        found = await asyncio.to_thread(
            outside.query, f"SELECT id FROM {Claim._meta.table_name} WHERE name = ?", (name,)
        )
        assert found == [(rival.id,)], f"k={result.k}: {found}, the rival got {rival.id}"

    try:
        assert await cancel_at_every_step(op, check) >= 2
    finally:
        await db.adrop_tables([Claim])
