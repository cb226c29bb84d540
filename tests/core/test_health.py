"""db.aping() / db.ping() (fastpeewee.health) and readiness (integrations.health)."""

from __future__ import annotations

import asyncio
import time

import peewee
import pytest

from fastpeewee import MissingGreenletBridge, PoolBackoff, is_unavailable, readiness

from ..conftest import assert_no_leaks, settle
from ..proxy import proxied_database


async def test_aping_and_ping_make_a_round_trip_on_a_pooled_connection(db, backend):
    assert await db.aping() > 0
    opened = sum(s.opened for s in db.pool_stats())
    assert await db.aping(timeout=1.0) > 0
    assert sum(s.opened for s in db.pool_stats()) == opened  # the same pooled connection

    def in_thread() -> float:
        try:
            return db.ping()
        finally:
            db.release_thread()

    assert await asyncio.to_thread(in_thread) > 0
    assert await readiness(db) == (True, "ready")
    await settle(db)
    assert_no_leaks(db)


async def test_aping_inside_a_transaction_uses_a_connection_of_its_own(db, backend):
    async with db.atomic():
        await db.aexecute_sql("SELECT 1")
        assert await db.aping() > 0
        assert db.in_transaction()
        in_use = sum(s.in_use for s in db.pool_stats())
        assert in_use == 1  # the transaction's; the ping's went back


async def test_ping_on_the_event_loop_is_refused(db):
    with pytest.raises(MissingGreenletBridge, match="aping"):
        db.ping()


@pytest.mark.backends("postgres", "mysql")
async def test_a_silent_server_fails_the_ping_within_its_timeout(backend, request):
    server = request.getfixturevalue(
        "postgres_server" if backend == "postgres" else "mariadb_server"
    )
    async with proxied_database(server, backend, pool_size=2, acquire_timeout=5.0) as (db, proxy):
        assert await db.aping() > 0
        proxy.blackhole()  # the open link goes silent
        proxy.open.clear()  # and new links wait: a partition
        started = time.monotonic()
        with pytest.raises(
            peewee.OperationalError, match=r"no answer to a ping within 0\.30 s"
        ) as caught:
            await db.aping(timeout=0.3)
        assert time.monotonic() - started < 1.0
        assert is_unavailable(caught.value)
        ok, detail = await readiness(db, timeout=0.3)
        assert not ok and detail == "database 1 of 1 unavailable: OperationalError"
        assert sum(s.in_use for s in db.pool_stats()) == 0  # the silent ones were closed
        proxy.open.set()
        assert await db.aping(timeout=2.0) > 0  # healed
        assert await readiness(db) == (True, "ready")


@pytest.mark.backends("postgres", "mysql")
async def test_a_stopped_server_is_not_ready_and_the_pool_backs_off(backend, request):
    server = request.getfixturevalue(
        "postgres_server" if backend == "postgres" else "mariadb_server"
    )
    async with proxied_database(server, backend, pool_size=2, acquire_timeout=1.0) as (db, proxy):
        assert await db.aping() > 0
        proxy.server.close()  # refuse new links, cut the open ones
        for writer in proxy.writers:
            writer.close()
        await asyncio.sleep(0.05)
        details = [await readiness(db) for _ in range(3)]
        assert all(not ok for ok, _ in details), details
        assert details[-1][1] == "database 1 of 1 unavailable: PoolBackoff", details
        with pytest.raises(PoolBackoff, match="not connecting"):
            await db.aping()
