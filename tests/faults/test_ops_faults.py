"""Server faults and contention around the operational helpers.

- ``warm_pool()`` against a server that refuses connections or black-holes
  them: it ends within ``acquire_timeout`` with a clear error, leaves nothing
  checked out, and works once the server is back.
- ``aping()`` while the server kills every session after k loop steps: it
  answers or raises within its timeout, and the pool heals.
- ``alock``: two tasks and a thread contend for one named lock in seeded
  schedules with random cancellations; never two holders at once (a holder
  cancelled mid-statement excepted, whose work is rolled back), every
  acknowledged block committed, the lock free afterwards (seen from another
  connection); a holder whose session the server kills leaves it free.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from typing import Any

import peewee
import pytest

from fastpeewee import LockTimeout, alock, lock, readiness

from ..conftest import assert_no_leaks, settle
from ..harness import LEDGER, Outside, check_invariants, insert, insert_sync, ledger_database
from ..proxy import proxied_database
from .ops import kill_all, lock_is_free, sessions_match_pools, tagged, wait_lock_free

SERVERS = {"postgres": "postgres_server", "mysql": "mariadb_server"}


# -- warm-up against a server that is not there ---------------------------------------


@pytest.mark.backends("postgres", "mysql")
@pytest.mark.parametrize("fault", ["refused", "black-holed"])
async def test_warm_pool_against_a_missing_server_ends_in_bounded_time(backend, request, fault):
    server = request.getfixturevalue(SERVERS[backend])
    options = {"pool_size": 4, "pool_min_size": 3, "acquire_timeout": 1.0}
    async with proxied_database(server, backend, **options) as (db, proxy):
        if fault == "refused":
            proxy.server.close()  # nothing listens: connects are refused
            await proxy.server.wait_closed()
        else:
            proxy.open.clear()  # links are accepted, nothing crosses: a partition
        started = time.monotonic()
        with pytest.raises(peewee.OperationalError) as caught:
            await db.warm_pool()
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 0.5, f"warm_pool took {elapsed:.2f} s with acquire_timeout=1.0"
        message = str(caught.value)
        assert message.strip() and "password" not in message.lower()
        if fault == "black-holed":
            assert "timed out" in message or "1.00 s" in message, message  # which budget
        for stats in db.pool_stats():
            assert (stats.size, stats.in_use, stats.waiting) == (0, 0, 0), stats
        ok, detail = await readiness(db, timeout=0.5)
        assert not ok and "unavailable" in detail
        if fault == "refused":
            return
        proxy.open.set()  # the partition heals: warm-up works, nothing left over
        deadline = time.monotonic() + 6.0
        while True:  # the connect back-off may refuse a first try
            try:
                assert await db.warm_pool() == 3
                break
            except peewee.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await settle(db)
        assert_no_leaks(db)
        assert await readiness(db) == (True, "ready")


# -- ping while the server kills sessions ----------------------------------------------


@pytest.mark.backends("postgres", "mysql")
async def test_aping_killed_at_every_step_is_bounded_and_the_pool_heals(
    backend, request, tmp_path
):
    options = {"pool_size": 3, "acquire_timeout": 5.0, "check_idle_after": 0.0}
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        for k in range(200):
            if k % 2:
                await db.close_pool()  # a cold pool half the time: the connect is killed
            task = asyncio.ensure_future(db.aping(timeout=2.0))
            for _ in range(k):
                if task.done():
                    break
                await asyncio.sleep(0)
            completed = task.done()
            if not completed:
                await asyncio.to_thread(kill_all, outside)
            started = time.monotonic()
            try:
                await asyncio.wait_for(task, 5)
            except peewee.OperationalError as exc:
                assert str(exc).strip()
            assert time.monotonic() - started < 2.5, "a killed ping outlived its timeout"
            await sessions_match_pools(db, outside, killed=not completed)
            await check_invariants(db, outside, probe=f"ping-kill-{k}")
            if completed:
                assert k >= 2
                return
        raise AssertionError("the ping never completed")


# -- named locks: contention and killed holders --------------------------------------


class Overlap:
    """Records which holders were inside a lock at the same moment."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.inside: set[str] = set()
        self.pairs: set[frozenset[str]] = set()

    def enter(self, tag: str) -> None:
        with self.guard:
            self.pairs.update(frozenset((tag, other)) for other in self.inside)
            self.inside.add(tag)

    def leave(self, tag: str) -> None:
        with self.guard:
            self.inside.discard(tag)

    def between(self, finished: list[str]) -> list[frozenset[str]]:
        """The overlaps of two holders that both finished their block's body.

        A holder cancelled in the middle of a statement may overlap the next
        one legitimately: on MySQL its connection is closed and its server
        thread killed before the cancellation unwinds its block, and that ends
        the session's lock (and rolls its work back) at once.
        """
        done = set(finished)
        return sorted((pair for pair in self.pairs if pair <= done), key=sorted)


SCHEDULES = {"sqlite": 4, "postgres": 6, "mysql": 4}


@pytest.mark.parametrize("seed", range(6))
async def test_tasks_and_a_thread_contending_for_a_lock(backend, request, tmp_path, seed):
    """Two tasks and a thread each take the lock three times (a seeded schedule of
    pauses and cancellations): never two holders inside at once (in the process,
    and in the order the server committed their rows), every block that returned
    is committed whole, none that was cancelled before its body ended committed."""
    if seed >= SCHEDULES[backend]:
        pytest.skip(f"{SCHEDULES[backend]} schedules on {backend}")
    rng = random.Random(seed)
    options: dict[str, Any] = {"pool_size": 4, "acquire_timeout": 10.0}
    if backend == "sqlite":
        options["pragmas"] = {"journal_mode": "wal"}
    name = "contended"
    overlap = Overlap()
    acked: list[str] = []
    bodies: list[str] = []
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):

        async def holder(tag: str, pause: float) -> None:
            async with alock(db, name, timeout=10.0):
                overlap.enter(tag)
                try:
                    await insert(db, tag)
                    await asyncio.sleep(pause)
                    await insert(db, tag)
                    bodies.append(tag)
                finally:
                    overlap.leave(tag)
            acked.append(tag)

        def thread_holder(tags: list[str], pauses: list[float]) -> None:
            try:
                for tag, pause in zip(tags, pauses, strict=True):
                    with lock(db, name, timeout=10.0):
                        overlap.enter(tag)
                        try:
                            insert_sync(db, tag)
                            time.sleep(pause)
                            insert_sync(db, tag)
                            bodies.append(tag)
                        finally:
                            overlap.leave(tag)
                    acked.append(tag)
            finally:
                db.release_thread()

        async def task_rounds(who: str) -> None:
            for i in range(3):
                tag = f"s{seed}-{who}-{i}"
                job = asyncio.ensure_future(holder(tag, rng.uniform(0, 0.01)))
                if rng.random() < 0.4:  # cancel this one after a few steps
                    for _ in range(rng.randrange(0, 40)):
                        await asyncio.sleep(0)
                    job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job

        tags = [f"s{seed}-thread-{i}" for i in range(3)]
        pauses = [rng.uniform(0, 0.01) for _ in tags]
        thread = asyncio.ensure_future(asyncio.to_thread(thread_holder, tags, pauses))
        await asyncio.wait_for(asyncio.gather(task_rounds("a"), task_rounds("b"), thread), 60)

        assert not overlap.between(bodies), "two holders inside the lock at once"
        # And as the server saw it: the committed rows of one block are never
        # interleaved with another's (ids are handed out in insert order).
        ordered = await asyncio.to_thread(
            outside.query,
            f"SELECT tag FROM {LEDGER} WHERE tag LIKE ? ORDER BY id",
            (f"s{seed}-%",),
        )
        committed = [tag for (tag,) in ordered]
        assert committed[::2] == committed[1::2], f"interleaved blocks: {committed}"
        await wait_lock_free(outside, name)
        await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"probe-s{seed}")
        found = await asyncio.to_thread(outside.tags)
        for tag in acked:
            assert found.get(tag) == 2, f"{tag} acknowledged, {found.get(tag, 0)} of 2 rows"
        for tag, rows in found.items():
            if tag.startswith(f"s{seed}-") and tag not in acked:
                assert rows in ((0, 2) if tag in bodies else (0,)), f"{tag}: {rows} rows"
        assert len(acked) >= 3  # the thread's three at least


@pytest.mark.backends("postgres", "mysql")
async def test_a_holder_killed_by_the_server_leaves_the_lock_free(backend, request, tmp_path):
    """The server ends the holder's session mid-block: the block fails with a
    database error, commits nothing, and another connection gets the lock."""
    options = {"pool_size": 3, "acquire_timeout": 5.0, "check_idle_after": 0.0}
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        name = "killed-holder"
        inside = asyncio.Event()

        async def holder() -> None:
            async with alock(db, name, timeout=5.0):
                await insert(db, "killed")
                inside.set()
                await asyncio.sleep(0.3)
                await insert(db, "killed")

        job = asyncio.ensure_future(holder())
        await asyncio.wait_for(inside.wait(), 5)
        assert not await asyncio.to_thread(lock_is_free, outside, name)  # held, seen outside
        await asyncio.to_thread(kill_all, outside)
        with pytest.raises((peewee.OperationalError, peewee.InterfaceError)):
            await asyncio.wait_for(job, 10)
        await wait_lock_free(outside, name)
        assert (await asyncio.to_thread(outside.tags)).get("killed", 0) == 0
        async with alock(db, name, timeout=1.0):  # and this library takes it at once
            await insert(db, "after")
        assert (await asyncio.to_thread(outside.tags)).get("after") == 1
        await sessions_match_pools(db, outside, killed=True)
        await check_invariants(db, outside, probe="probe-killed")


async def test_a_lock_timeout_says_what_to_do(backend, request, tmp_path):
    options: dict[str, Any] = {"pool_size": 3, "acquire_timeout": 5.0}
    if backend == "sqlite":
        options["timeout"] = 0.2
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with alock(db, "busy", timeout=5.0):
                held.set()
                await release.wait()

        job = asyncio.ensure_future(holder())
        await asyncio.wait_for(held.wait(), 5)
        try:
            started = time.monotonic()
            with pytest.raises(LockTimeout, match=r"not free after .* timeout="):
                async with alock(db, "busy", timeout=0.5):
                    pass
            assert time.monotonic() - started < 0.5 + 1.5
        finally:
            release.set()
            await job
        await wait_lock_free(outside, "busy")
        await sessions_match_pools(db, outside)


@pytest.mark.backends("postgres", "mysql")
async def test_a_ping_after_the_server_killed_idle_connections_succeeds(
    backend, request, tmp_path
):
    """The database is up; only the pooled connections died (a restart, a
    failover, an idle-session timeout): a ping or a readiness probe must not
    report an outage, it replaces the dead connection as a statement would."""
    async with ledger_database(
        backend, request, tmp_path, **tagged(backend, {"pool_size": 3})
    ) as (db, outside):
        assert await db.warm_pool() >= 1
        assert await db.aping() > 0
        assert await asyncio.to_thread(kill_all, outside) >= 1
        await asyncio.sleep(0.1)  # the FATAL / close reaches the client
        assert await db.aping(timeout=2.0) > 0
        await asyncio.to_thread(kill_all, outside)
        await asyncio.sleep(0.1)
        assert await readiness(db) == (True, "ready")
        await sessions_match_pools(db, outside, killed=True)
        await check_invariants(db, outside, probe="probe-ping-after-kill")


@pytest.mark.backends("postgres")
async def test_aping_retry_after_an_unread_fatal_cancelled_at_every_step(backend, request):
    """The ping refused before sending on a connection whose FATAL the driver read
    (its close held back) runs again on a new connection: cancelled after k loop
    steps for every k, the caller gets the answer or the cancellation, nothing
    stays checked out, and the server holds exactly the pool's sessions."""
    server = request.getfixturevalue(SERVERS[backend])
    options = tagged(backend, {"pool_size": 1, "check_idle_after": 3600.0})
    async with proxied_database(server, backend, **options) as (pooled_db, proxy):
        db: Any = pooled_db
        outside = Outside(db)
        try:
            # Every step through the acquire, the refused ping and the retry's first
            # steps; then every 20th: the connect takes as many loop steps as the
            # machine's load makes it last.
            steps = itertools.chain(range(80), range(80, 20_000, 20))
            for runs, k in enumerate(steps, 1):
                proxy.pass_eof()
                async with db:
                    pid = (await db.aexecute_sql("SELECT pg_backend_pid()")).fetchone()[0]
                proxy.hold_eof()
                await asyncio.to_thread(_terminate, outside, pid)
                await asyncio.sleep(0.05)  # the FATAL reaches the client, its close does not
                task = asyncio.ensure_future(db.aping(timeout=5.0))
                for _ in range(k):
                    if task.done():
                        break
                    await asyncio.sleep(0)
                completed = task.done()
                task.cancel()
                try:
                    assert await task >= 0
                    assert completed, f"k={k}: the ping answered although cancelled"
                except asyncio.CancelledError:
                    assert not completed
                proxy.pass_eof()
                # A ping cancelled before it took the dead connection leaves it idle
                # in the pool, to be found dead at its next use.
                await sessions_match_pools(db, outside, killed=not completed)
                stats = db.pool_stats()[0]
                assert (stats.in_use, stats.waiting) == (0, 0) and stats.size <= 1, (k, stats)
                if completed:
                    assert k >= 2 and runs >= 3, k
                    return
            raise AssertionError("the ping never completed")
        finally:
            outside.close()


def _terminate(outside: Outside, pid: int) -> None:
    """End server session ``pid`` and wait until it is gone."""
    assert outside.query("SELECT pg_terminate_backend(?)", (pid,)) == [(True,)]
    deadline = time.monotonic() + 10
    while outside.query("SELECT 1 FROM pg_stat_activity WHERE pid = ?", (pid,)):
        assert time.monotonic() < deadline, f"session {pid} outlived its kill"
        time.sleep(0.005)
