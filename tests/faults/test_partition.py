"""A network partition between the app and PostgreSQL (RELIABILITY R10).

A TCP proxy on loopback stops forwarding for 2 s while 9 requests are in
flight. Every request must end, successfully or with a clear error, within
``acquire_timeout + command_timeout``; once the link is back the pool heals by
itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import peewee
import pytest

from fastpeewee import PoolTimeout

from ..conftest import settle
from ..proxy import proxied_database

ACQUIRE_TIMEOUT = 2.0
COMMAND_TIMEOUT = 1.0
PARTITION = 2.0


@pytest.mark.backends("postgres")
async def test_requests_end_in_bounded_time_and_the_pool_heals(postgres_server, backend):
    async with proxied_database(
        postgres_server,
        backend,
        pool_size=5,
        acquire_timeout=ACQUIRE_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
    ) as (db, proxy):
        await partition_and_heal(db, proxy)


async def partition_and_heal(db: Any, proxy: Any) -> None:
    async def request() -> tuple[float, Any]:
        started = time.monotonic()
        try:
            await db.aexecute_sql("SELECT pg_sleep(0.05)")
            outcome: Any = "ok"
        except (peewee.OperationalError, PoolTimeout) as exc:
            outcome = exc
        return time.monotonic() - started, outcome

    await db.aexecute_sql("SELECT 1")  # the pool is up through the proxy
    proxy.open.clear()
    asyncio.get_running_loop().call_later(PARTITION, proxy.open.set)
    during = await asyncio.gather(*(request() for _ in range(9)))
    for elapsed, outcome in during:
        assert elapsed < ACQUIRE_TIMEOUT + COMMAND_TIMEOUT + 1.0, (elapsed, outcome)
        assert outcome == "ok" or str(outcome).strip(), "an error without a message"
    assert any(outcome != "ok" for _, outcome in during)  # the partition was felt

    await asyncio.sleep(PARTITION)  # the link is back
    after = await asyncio.gather(*(request() for _ in range(9)))
    assert [outcome for _, outcome in after] == ["ok"] * 9
    await settle(db)
    assert all(s.in_use == 0 for s in db.pool_stats())
