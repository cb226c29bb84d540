"""Replica reads cancelled at every step, and a replica killed mid-read.

Against a real streaming standby (``tests/replicas/cluster.py``), PostgreSQL
only (the one backend whose replicas are tested). After each case, from
outside: neither server has a session in a transaction or mid-statement, the
replica's pool and the primary's hold what the servers see, and the next read
works.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import peewee
import pytest

from fastpeewee import AsyncPostgresqlDatabase

from ..harness import Outside, StepResult, check_invariants, insert
from ..replicas.cluster import Pair, psql, start_pair, wait_replayed
from .ops import sessions_match_pools
from .test_cancel_ops import every_step

_tags = itertools.count()
PORT = "SELECT inet_server_port()"


@pytest.fixture(scope="module")
def pg_pair() -> Iterator[Pair]:
    """A primary and its streaming standby of this module's own (one is killed into)."""
    pair = start_pair()
    yield pair
    pair.stop()


@pytest.fixture
async def rdb(pg_pair: Pair) -> AsyncIterator[tuple[Any, Outside, Outside]]:
    options: dict[str, Any] = {
        "pool_size": 3,
        "acquire_timeout": 3.0,
        "replica_check_interval": 0.1,
        "check_idle_after": 0.0,
        "replicas": [pg_pair.url(pg_pair.standby)],
    }
    db = AsyncPostgresqlDatabase(
        pg_pair.primary.database, **pg_pair.primary.connect_params, **options
    )
    outside = Outside(db)
    replica: Any = db.replicas[0]
    replica_outside = Outside(replica)
    try:
        await asyncio.to_thread(outside.create_ledger)
        await asyncio.to_thread(wait_replayed, pg_pair)
        await db.aexecute_sql(PORT)  # the first check marks the replica up
        yield db, outside, replica_outside
    finally:
        outside.close()
        replica_outside.close()
        await db.close_pool()
        db.close_all()


async def check_both(db: Any, outside: Outside, replica_outside: Outside, probe: str) -> None:
    replica = db.replicas[0]
    await replica_outside.wait_quiet()
    await sessions_match_pools(replica, replica_outside)
    await check_invariants(db, outside, probe=probe)
    await sessions_match_pools(db, outside)


async def test_a_replica_read_cancelled_at_every_step(rdb, pg_pair):
    db, outside, replica_outside = rdb
    standby = pg_pair.standby.port

    async def op(marks: dict[str, bool]) -> None:
        row: Any = (await db.aexecute_sql(PORT)).fetchone()
        assert row[0] == standby

    async def check(result: StepResult) -> None:
        await check_both(db, outside, replica_outside, f"rr-{next(_tags)}")

    await every_step(op, check)
    assert db.replica_status()[0].served > 0


async def test_read_your_writes_cancelled_at_every_step(rdb, pg_pair):
    """A request scope writes, then reads: cancelled anywhere, the write is all or
    nothing, the read after it never runs on the replica, nothing is left open."""
    db, outside, replica_outside = rdb
    primary = pg_pair.primary.port
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Any:
        tag = current["tag"] = f"ryw{next(_tags)}"  # before the task starts: k may be 0
        return body(tag, marks)

    async def body(tag: str, marks: dict[str, bool]) -> None:
        async with db.scope():
            await insert(db, tag)
            row: Any = (await db.aexecute_sql(PORT)).fetchone()
            assert row[0] == primary, "a read after the request's write went to the replica"
            seen: Any = (
                await db.aexecute_sql("SELECT count(*) FROM harness_ledger WHERE tag = %s", (tag,))
            ).fetchone()
            assert seen[0] == 1, "the request did not read its own write"

    async def check(result: StepResult) -> None:
        tag = current["tag"]
        await check_both(db, outside, replica_outside, f"probe-{tag}")
        rows = (await asyncio.to_thread(outside.tags)).get(tag, 0)
        assert rows in ({1} if result.completed else {0, 1}), f"k={result.k}: {rows} rows"

    await every_step(op, check)


async def test_a_replica_killed_mid_read_falls_back_to_the_primary(rdb, pg_pair):
    """The replica's session is terminated while a read runs on it: the read runs
    again on the primary (or fails with a clear error), within its bounds, and
    nothing is left open on either server."""
    db, outside, replica_outside = rdb
    primary, standby = pg_pair.primary.port, pg_pair.standby.port
    slow = "SELECT inet_server_port(), pg_sleep(0.5)"
    for _ in range(3):
        assert (await db.aexecute_sql(PORT)).fetchone()[0] == standby
        task = asyncio.ensure_future(db.aexecute_sql(slow))
        await asyncio.sleep(0.15)  # the read runs on the standby
        killed = psql(
            pg_pair.standby,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(0.5)%' AND pid <> pg_backend_pid()",
        )
        assert killed == "1", f"no read to kill on the standby ({killed})"
        started = time.monotonic()
        try:
            row: Any = (await asyncio.wait_for(task, 5)).fetchone()
            assert row[0] == primary, "the read was not run again on the primary"
        except peewee.OperationalError as exc:
            assert "terminat" in str(exc) or "server" in str(exc), exc
        assert time.monotonic() - started < 3.0
        await check_both(db, outside, replica_outside, f"killed-{next(_tags)}")
        # The replica comes back at its next check; reads go there again.
        deadline = time.monotonic() + 5
        while (await db.aexecute_sql(PORT)).fetchone()[0] != standby:
            assert time.monotonic() < deadline, db.replica_status()
            await asyncio.sleep(0.1)
