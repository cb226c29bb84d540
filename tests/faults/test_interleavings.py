"""Seeded schedules of tasks and threads, in and out of a request scope
(RELIABILITY R12, R17).

Each seed builds a scenario: a few actors (tasks inside one ``db.scope()``,
worker threads those tasks run, tasks and threads outside any scope), each
running a random script of autocommit writes, transactions that commit or
fail, and nested blocks whose savepoint fails, with random yields between
steps. Every row is tagged by the step that wrote it, and what each step
acknowledged decides, exactly, which rows must exist afterwards: the server's
rows are compared with that, then the invariants of :mod:`tests.harness`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee
import pytest

from ..harness import Boom, check_invariants, insert, insert_sync, ledger_database

SEEDS = range(24)


@dataclass
class Script:
    """What one actor does, and what its steps acknowledged."""

    name: str
    steps: list[tuple[str, int, bool]]
    expected: dict[str, int] = field(default_factory=dict)


def plan(rng: random.Random, name: str) -> Script:
    steps = []
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["auto", "txn", "txn", "nested"])
        steps.append((kind, rng.randint(1, 3), rng.random() < 0.35))
    return Script(name, steps)


async def run_async(db: Any, script: Script, rng: random.Random, prefix: str) -> None:
    async def pause() -> None:
        if rng.random() < 0.5:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(rng.random() * 0.003)

    for i, (kind, n, fail) in enumerate(script.steps):
        tag = f"{prefix}-{script.name}-{i}"
        try:
            if kind == "auto":
                await insert(db, tag)
                script.expected[tag] = 1
            elif kind == "txn":
                async with db.atomic():
                    for _ in range(n):
                        await insert(db, tag)
                        await pause()
                    if fail:
                        raise Boom
                script.expected[tag] = n
            else:
                async with db.atomic():
                    await insert(db, tag)
                    try:
                        async with db.atomic():
                            await insert(db, tag + "-inner")
                            await pause()
                            if fail:
                                raise Boom
                        inner = 1
                    except Boom:
                        inner = 0
                    await insert(db, tag)
                script.expected[tag] = 2
                script.expected[tag + "-inner"] = inner
        except (Boom, peewee.OperationalError):
            pass  # nothing of the step may remain (SQLite may say "locked")
        await pause()


def run_sync(db: Any, script: Script, rng: random.Random, prefix: str) -> None:
    def pause() -> None:
        time.sleep(rng.random() * 0.003)

    for i, (kind, n, fail) in enumerate(script.steps):
        tag = f"{prefix}-{script.name}-{i}"
        try:
            if kind == "auto":
                insert_sync(db, tag)
                script.expected[tag] = 1
            elif kind == "txn":
                with db.atomic():
                    for _ in range(n):
                        insert_sync(db, tag)
                        pause()
                    if fail:
                        raise Boom
                script.expected[tag] = n
            else:
                with db.atomic():
                    insert_sync(db, tag)
                    try:
                        with db.atomic():
                            insert_sync(db, tag + "-inner")
                            pause()
                            if fail:
                                raise Boom
                        inner = 1
                    except Boom:
                        inner = 0
                    insert_sync(db, tag)
                script.expected[tag] = 2
                script.expected[tag + "-inner"] = inner
        except (Boom, peewee.OperationalError):
            pass
        pause()


async def scenario(db: Any, seed: int) -> list[Script]:
    rng = random.Random(seed)
    prefix = f"s{seed}"
    scripts: list[Script] = []
    jobs: list[Callable[[], Any]] = []

    def actor(kind: str) -> Script:
        script = plan(rng, f"{kind}{len(scripts)}")
        scripts.append(script)
        return script

    in_scope: list[Callable[[], Any]] = []
    for _ in range(rng.randint(2, 3)):  # sibling tasks of one request
        script, arng = actor("task"), random.Random(rng.random())
        in_scope.append(lambda s=script, r=arng: run_async(db, s, r, prefix))  # type: ignore[misc]
    if rng.random() < 0.7:  # a worker thread of the request (a def endpoint)
        script, arng = actor("thread"), random.Random(rng.random())
        in_scope.append(lambda s=script, r=arng: asyncio.to_thread(run_sync, db, s, r, prefix))  # type: ignore[misc]
    if rng.random() < 0.5:  # a task outside any scope
        script, arng = actor("free"), random.Random(rng.random())
        jobs.append(lambda s=script, r=arng: run_async(db, s, r, prefix))  # type: ignore[misc]
    if rng.random() < 0.3:  # a thread outside any scope
        script, arng = actor("freethread"), random.Random(rng.random())
        jobs.append(lambda s=script, r=arng: asyncio.to_thread(run_sync, db, s, r, prefix))  # type: ignore[misc]

    async def request() -> None:
        async with db.scope():
            await asyncio.gather(*(asyncio.create_task(job()) for job in in_scope))

    await asyncio.gather(request(), *(job() for job in jobs))
    return scripts


@pytest.fixture
async def env(backend, request, tmp_path):
    options: dict[str, Any] = {"pool_size": 6, "acquire_timeout": 10.0}
    if backend == "sqlite":
        options["pragmas"] = {"journal_mode": "wal", "synchronous": "off"}
        options["timeout"] = 15  # one writer at a time: siblings wait for each other
    async with ledger_database(backend, request, tmp_path, **options) as (db, outside):
        yield db, outside


async def test_seeded_schedules_commit_exactly_what_was_acknowledged(env):
    db, outside = env
    for seed in SEEDS:
        scripts = await asyncio.wait_for(scenario(db, seed), 60)
        expected = {t: n for s in scripts for t, n in s.expected.items() if n}
        found = {
            t: n for t, n in (await asyncio.to_thread(outside.tags)).items()
            if t.startswith(f"s{seed}-")
        }  # fmt: skip
        assert found == expected, f"seed {seed}: {[(s.name, s.steps) for s in scripts]}"
        await check_invariants(db, outside, probe=f"probe{seed}")
