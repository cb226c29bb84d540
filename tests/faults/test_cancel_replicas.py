"""Replica reads cancelled at every step, and a replica killed mid-read.

Against a real replica (``tests/replicas/cluster.py``): a PostgreSQL streaming
standby and a MariaDB replica, each pair this module's own. After each case,
from outside: neither server has a session in a transaction or mid-statement,
the replica's pool and the primary's hold what the servers see, and the next
read works.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import peewee
import pytest

from ..harness import Outside, StepResult, check_invariants, insert
from ..replicas.cluster import ReplicaPair, start_mariadb_pair, start_pair
from .ops import sessions_match_pools
from .test_cancel_ops import every_step

_tags = itertools.count()
PORT = {"postgres": "SELECT inet_server_port()", "mysql": "SELECT @@port"}
SLOW = {  # a read that takes 0.5 s, its port first; the words the kill looks for
    "postgres": ("SELECT inet_server_port(), pg_sleep(0.5)", "pg_sleep(0.5)"),
    "mysql": ("SELECT @@port, SLEEP(0.5)", "SLEEP(0.5)"),
}


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def pair(request: pytest.FixtureRequest) -> Iterator[ReplicaPair]:
    """A primary and its replica of this module's own (one is killed into)."""
    started: Any = start_pair() if request.param == "postgres" else start_mariadb_pair()
    yield started
    started.stop()


@pytest.fixture
async def rdb(pair: ReplicaPair) -> AsyncIterator[tuple[Any, Outside, Outside]]:
    options: dict[str, Any] = {
        "pool_size": 3,
        "acquire_timeout": 3.0,
        "replica_check_interval": 0.1,
        "check_idle_after": 0.0,
        "replicas": [pair.url(pair.standby)],
    }
    if pair.kind == "mysql":
        options["ssl_disabled"] = True  # no TLS on the test servers
    db = pair.database_class(pair.primary.database, **pair.primary.connect_params, **options)
    outside = Outside(db)
    replica: Any = db.replicas[0]
    replica_outside = Outside(replica)
    try:
        await asyncio.to_thread(outside.create_ledger)
        await asyncio.to_thread(pair.wait_replayed)
        await db.aexecute_sql(PORT[pair.kind])  # the first check marks the replica up
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


async def test_a_replica_read_cancelled_at_every_step(rdb, pair):
    db, outside, replica_outside = rdb
    standby = pair.standby.port

    async def op(marks: dict[str, bool]) -> None:
        row: Any = (await db.aexecute_sql(PORT[pair.kind])).fetchone()
        assert row[0] == standby

    async def check(result: StepResult) -> None:
        await check_both(db, outside, replica_outside, f"rr-{next(_tags)}")

    await every_step(op, check)
    assert db.replica_status()[0].served > 0


async def test_read_your_writes_cancelled_at_every_step(rdb, pair):
    """A request scope writes, then reads: cancelled anywhere, the write is all or
    nothing, the read after it never runs on the replica, nothing is left open."""
    db, outside, replica_outside = rdb
    primary = pair.primary.port
    current: dict[str, str] = {}

    def op(marks: dict[str, bool]) -> Any:
        tag = current["tag"] = f"ryw{next(_tags)}"  # before the task starts: k may be 0
        return body(tag, marks)

    async def body(tag: str, marks: dict[str, bool]) -> None:
        async with db.scope():
            await insert(db, tag)
            row: Any = (await db.aexecute_sql(PORT[pair.kind])).fetchone()
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


async def test_a_replica_killed_mid_read_falls_back_to_the_primary(rdb, pair):
    """The replica's session is terminated while a read runs on it: the read runs
    again on the primary (or fails with a clear error), within its bounds, and
    nothing is left open on either server."""
    db, outside, replica_outside = rdb
    primary, standby = pair.primary.port, pair.standby.port
    port, (slow, running) = PORT[pair.kind], SLOW[pair.kind]
    for _ in range(3):
        assert (await db.aexecute_sql(port)).fetchone()[0] == standby
        task = asyncio.ensure_future(db.aexecute_sql(slow))
        await asyncio.sleep(0.15)  # the read runs on the standby
        killed = await asyncio.to_thread(pair.kill_standby_sessions, running)
        assert killed == 1, f"no read to kill on the standby ({killed})"
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
        while (await db.aexecute_sql(port)).fetchone()[0] != standby:
            assert time.monotonic() < deadline, db.replica_status()
            await asyncio.sleep(0.1)
