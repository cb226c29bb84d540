"""SQLite reads on the loop thread: only short ones, never waiting for a lock."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncSqliteDatabase

pytestmark = pytest.mark.backends("sqlite")


class Beat:
    """Measures the longest stall of the event loop while it runs."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            await asyncio.sleep(0.002)
            now = time.monotonic()
            self.gaps.append(now - last)
            last = now

    async def __aenter__(self) -> Beat:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop.set()
        await self._task


@pytest.fixture
async def sdb(tmp_path):
    db = AsyncSqliteDatabase(str(tmp_path / "inline.db"))
    await db.aexecute_sql("CREATE TABLE n (x INTEGER)")
    async with db.atomic():
        for start in range(0, 3000, 500):
            values = ", ".join(f"({i})" for i in range(start, start + 500))
            await db.aexecute_sql(f"INSERT INTO n (x) VALUES {values}")
    yield db
    await db.close_pool()


async def test_a_long_select_moves_to_a_worker(sdb):
    async with Beat() as beat:
        cursor = await sdb.aexecute_sql("SELECT count(*) FROM n a, n b")  # 9M rows
    assert cursor.fetchone()[0] == 9_000_000
    # The inline attempt gave up after ~2 ms; a generous bound for a busy machine.
    assert max(beat.gaps) < 0.1, max(beat.gaps)


async def test_a_locked_database_is_waited_for_in_a_worker(sdb):
    locked, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sdb.atomic("EXCLUSIVE"):
            sdb.execute_sql("INSERT INTO n (x) VALUES (-1)")
            locked.set()
            release.wait(5)

    thread = asyncio.create_task(asyncio.to_thread(writer))
    await asyncio.to_thread(locked.wait, 5)
    asyncio.get_running_loop().call_later(0.3, release.set)
    started = time.monotonic()
    async with Beat() as beat:
        cursor = await sdb.aexecute_sql("SELECT count(*) FROM n")
    await thread
    assert cursor.fetchone()[0] == 3001  # read after the writer committed
    assert time.monotonic() - started >= 0.25
    assert max(beat.gaps) < 0.1, max(beat.gaps)
    # The connection's own busy timeout is back in place.
    timeout = await sdb.aexecute_sql("PRAGMA busy_timeout")  # not a SELECT: a worker
    assert timeout.fetchone()[0] == 5000


async def test_user_functions_keep_reads_in_workers(sdb):
    assert sdb._reads_inline()
    threads: list[str] = []

    @sdb.func("whereami")
    def whereami() -> int:
        threads.append(threading.current_thread().name)
        return 1

    assert not sdb._reads_inline()
    await sdb.close_pool()  # new connections get the function
    await sdb.aexecute_sql("SELECT whereami()")
    assert threads and threads[0].startswith("fastpeewee-sqlite")


async def test_inline_reads_can_be_turned_off(tmp_path):
    class Workers(AsyncSqliteDatabase):
        inline_reads = False

    db = Workers(str(tmp_path / "w.db"))
    assert not db._reads_inline()
    assert (await db.aexecute_sql("SELECT 1")).fetchone() == (1,)
    await db.close_pool()


async def test_reads_in_a_transaction_see_its_writes(sdb):
    class N(peewee.Model):
        x = peewee.IntegerField()

        class Meta:
            database = sdb
            table_name = "n"
            primary_key = False

    async with sdb.atomic():
        await sdb.aexecute_sql("INSERT INTO n (x) VALUES (-5)")
        assert await sdb.count(N.select().where(N.x == -5)) == 1
    assert await sdb.count(N.select()) == 3001
