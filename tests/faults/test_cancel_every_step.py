"""Cancellation at every await point (RELIABILITY R4, R5, R13, R16).

Each operation is started and cancelled after k event-loop steps, for every k
until it completes on its own, on every backend. After each run, from
outside the library: no connection leaked, none is left in a transaction or
mid-statement on the server, the next owner's autocommit write is committed
at once, and the operation's own rows are all or nothing, as acknowledged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import peewee
import pytest
from fastapi import FastAPI

from fastpeewee import DatabaseMiddleware

from ..harness import (
    Ledger,
    Outside,
    StepResult,
    cancel_at_every_step,
    check_invariants,
    insert,
    insert_sync,
    ledger_database,
)

_tags = itertools.count()


@pytest.fixture
async def env(backend, request, tmp_path) -> AsyncIterator[tuple[Any, Outside]]:
    options: dict[str, Any] = {"pool_size": 3, "acquire_timeout": 5.0}
    if backend == "sqlite":  # no fsync per commit: hundreds of runs per test
        options["pragmas"] = {"journal_mode": "wal", "synchronous": "off"}
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        Ledger.bind(db)
        yield db, outside


Op = Callable[[dict[str, bool]], Awaitable[Any]]


async def run_every_step(
    db: Any,
    outside: Outside,
    make: Callable[[str], Op],
    allowed: Callable[[StepResult, str], dict[str, set[int]]],
    before_check: Callable[[], Awaitable[None]] | None = None,
    stride: int = 1,
) -> int:
    """Drive ``make(tag)``'s operation through :func:`cancel_at_every_step`
    (every ``stride``-th step).

    ``allowed(result, tag)`` gives, per tag, the row counts the outcome allows.
    """
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Awaitable[Any]:
        tag = current["tag"] = f"t{next(_tags)}"  # before the task starts: k may be 0
        return make(tag)(marks)

    async def check(result: StepResult) -> None:
        tag = current["tag"]
        if before_check is not None:
            await before_check()
        counts = allowed(result, tag)
        await check_invariants(db, outside, probe=f"probe-{tag}")
        found = await asyncio.to_thread(outside.tags)
        for name, allowed_counts in counts.items():
            got = found.get(name, 0)
            assert got in allowed_counts, (
                f"k={result.k}: {name} has {got} rows, allowed {sorted(allowed_counts)} "
                f"(completed={result.completed}, error={result.error!r}, marks={result.marks})"
            )

    runs = await cancel_at_every_step(op, check, stride=stride)
    assert runs >= 2, "the operation never awaited: the test cancelled nothing"
    return runs


def all_or_nothing(n: int) -> Callable[[StepResult, str], dict[str, set[int]]]:
    """n rows if the body ran and it completed, none if the body did not finish."""

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        if result.completed:
            return {tag: {n}}
        if not result.marks.get("body"):
            return {tag: {0}}
        return {tag: {0, n}}  # cancelled during COMMIT: either way, never a part

    return allowed


async def test_autocommit_statement(env, backend):
    db, outside = env

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            await insert(db, tag)

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        return {tag: {1} if result.completed else {0, 1}}

    await run_every_step(db, outside, make, allowed)


async def test_atomic_block(env, backend):
    db, outside = env

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            async with db.atomic():
                await insert(db, tag)
                await insert(db, tag)
                marks["body"] = True

        return body

    await run_every_step(db, outside, make, all_or_nothing(2))


async def test_savepoint_rolled_back_inside_a_transaction(env, backend):
    db, outside = env

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            async with db.atomic():
                await insert(db, tag)
                try:
                    async with db.atomic():
                        await insert(db, tag + "-inner")
                        raise ValueError("roll back the savepoint")
                except ValueError:
                    pass
                await insert(db, tag)
                marks["body"] = True

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        return {**all_or_nothing(2)(result, tag), tag + "-inner": {0}}

    await run_every_step(db, outside, make, allowed)


@pytest.mark.parametrize("where", ["task", "request scope"])
async def test_iterate_then_write(env, backend, where):
    """A stream on a connection of its own (a task), or on the held connection
    of a request scope, then a write."""
    db, outside = env
    for _ in range(5):
        await insert(db, "stream")

    async def stream_then_write(tag: str) -> None:
        seen = 0
        async for _row in db.iterate(Ledger.select().where(Ledger.tag == "stream"), 2):
            seen += 1
            if seen == 3:
                break
        await insert(db, tag)

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            if where == "task":
                await stream_then_write(tag)
                return
            async with db.scope():
                await stream_then_write(tag)

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        return {tag: {1} if result.completed else {0, 1}, "stream": {5}}

    await run_every_step(db, outside, make, allowed)


async def test_bulk_insert(env, backend):
    db, outside = env

    def make(tag: str) -> Op:
        async def body(marks: dict[str, bool]) -> None:
            await db.aexecute(Ledger.insert_many([{"tag": tag}] * 200))

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        return {tag: {200} if result.completed else {0, 200}}  # never a part

    await run_every_step(db, outside, make, allowed)


async def test_sync_transaction_through_the_bridge(env, backend):
    db, outside = env

    def make(tag: str) -> Op:
        def sync(marks: dict[str, bool]) -> None:
            with db.atomic():
                insert_sync(db, tag)
                insert_sync(db, tag)
                marks["body"] = True

        async def body(marks: dict[str, bool]) -> None:
            await db.run(sync, marks)

        return body

    await run_every_step(db, outside, make, all_or_nothing(2))


async def test_request_through_the_middleware(env, backend):
    db, outside = env
    app = FastAPI()
    app.add_middleware(DatabaseMiddleware, database=db)
    marks_of: dict[str, dict[str, bool]] = {}

    @app.post("/ledger/{tag}")
    async def write(tag: str) -> dict[str, str]:
        async with db.atomic():
            await insert(db, tag)
            await insert(db, tag)
            marks_of[tag]["body"] = True
        return {"tag": tag}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

        def make(tag: str) -> Op:
            async def body(marks: dict[str, bool]) -> None:
                marks_of[tag] = marks
                response = await client.post(f"/ledger/{tag}")
                assert response.status_code == 200

            return body

        await run_every_step(db, outside, make, all_or_nothing(2))


async def test_thread_transaction_in_a_request_scope(env, backend):
    """The request ends (cancelled) while its worker thread is inside a
    transaction: the thread's transaction is all or nothing, and the thread's
    statements after the end never land anywhere else."""
    db, outside = env
    jobs: list[concurrent.futures.Future[None]] = []
    workers = concurrent.futures.ThreadPoolExecutor(2)

    def make(tag: str) -> Op:
        def sync(marks: dict[str, bool]) -> None:
            try:
                with db.atomic():
                    insert_sync(db, tag)
                    insert_sync(db, tag)
                    marks["body"] = True
                marks["committed"] = True
            except peewee.OperationalError:
                pass  # TransactionLost: the request ended under it

        async def body(marks: dict[str, bool]) -> None:
            async with db.scope():
                # What asyncio.to_thread does, keeping the job to wait for it:
                # a cancelled await does not stop a job that already started.
                job = workers.submit(contextvars.copy_context().run, sync, marks)
                jobs.append(job)
                await asyncio.wrap_future(job)

        return body

    def allowed(result: StepResult, tag: str) -> dict[str, set[int]]:
        if result.marks.get("committed"):
            return {tag: {2}}
        if not result.marks.get("body"):
            return {tag: {0}}
        return {tag: {0, 2}}

    async def wait_for_the_thread() -> None:
        for job in jobs:
            if not job.cancelled():
                await asyncio.wait_for(asyncio.wrap_future(job), 10)
        jobs.clear()

    try:
        await run_every_step(db, outside, make, allowed, wait_for_the_thread)
    finally:
        # Off the loop: a job still running waits for the loop to run its statements.
        await asyncio.to_thread(workers.shutdown, wait=True, cancel_futures=True)
