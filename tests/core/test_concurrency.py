"""Threads and tasks on one database at once; the event loop stays responsive."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fastpeewee import MissingGreenletBridge

from ..conftest import _reset_tables, assert_no_leaks, make_database
from ..models import MODELS, Tweet, User

THREADS, TASKS, ROUNDS = 8, 20, 10


async def test_threads_and_tasks_together(busy_db):
    db = busy_db
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    def sync_worker(n: int) -> None:
        for r in range(ROUNDS):
            with db.atomic():
                user = User.create(username=f"thread{n}-{r}")
                Tweet.create(user=user, content="sync")
            assert User.select().where(User.id == user.id).count() == 1

    async def async_worker(n: int) -> None:
        for r in range(ROUNDS):
            async with db.atomic():
                user = await User.acreate(username=f"task{n}-{r}")
                await Tweet.acreate(user=user, content="async")
            assert await db.count(User.select().where(User.id == user.id)) == 1

    beat = asyncio.create_task(heartbeat())
    threads = [asyncio.to_thread(sync_worker, n) for n in range(THREADS)]
    tasks = [async_worker(n) for n in range(TASKS)]
    await asyncio.gather(*threads, *tasks)
    stop.set()
    await beat

    assert await db.count(User.select()) == (THREADS + TASKS) * ROUNDS
    assert await db.count(Tweet.select().where(Tweet.content == "sync")) == THREADS * ROUNDS
    # The loop never stalled behind blocking I/O (a generous bound: shared CI machines).
    assert max(gaps) < 0.5, max(gaps)


async def test_sync_query_on_the_loop_thread_names_the_async_call(db):
    with pytest.raises(MissingGreenletBridge) as caught:
        User.get_or_none(User.id == 1)
    message = str(caught.value)
    assert "SELECT" in message and "aget" in message and "db.run" in message
    with pytest.raises(MissingGreenletBridge):
        db.connect()
    assert_no_leaks(db)


def test_plain_script_without_event_loop(backend, request, tmp_path):
    """A script or start-up DDL: no loop anywhere, plain peewee calls."""
    db = make_database(backend, request, tmp_path)
    db.bind(MODELS)
    try:
        _reset_tables(db)
        with db.atomic():
            ann = User.create(username="ann")
            Tweet.insert_many([{"user": ann, "content": str(i)} for i in range(5)]).execute()
        assert [t.content for t in ann.tweets.order_by(Tweet.id)] == ["0", "1", "2", "3", "4"]
        db.connect()
        assert not db.is_closed()
        assert db.close()
        assert all(s.in_use == 0 for s in db.pool_stats())
    finally:
        db.close_all()


def test_threads_each_get_their_own_state(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path, pool_size=3)
    db.bind(MODELS)
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def worker(n: int) -> None:
        try:
            with db.atomic():
                barrier.wait(5)  # all three inside a transaction at once
                assert db.transaction_depth() == 1
                User.create(username=f"w{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        _reset_tables(db)
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert User.select().count() == 3
    finally:
        db.close_all()
