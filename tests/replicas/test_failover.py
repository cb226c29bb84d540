"""The reference app (examples/sql_app) on a primary with a standby: the share of
reads the replica serves under load, and a failover under load.

Failover: the app's database is a multi-host URL with
``target_session_attrs=read-write``. Under 20 concurrent clients the primary
is stopped (``-m immediate``, a crash) and the standby promoted; requests
fail only with 503 in between and succeed afterwards, with no restart, and
every item acknowledged with 201 is on the new primary (counted with psql).
Replication is synchronous here (``synchronous_standby_names='*'``,
``synchronous_commit=remote_apply``): with asynchronous replication
PostgreSQL itself may lose the last commits of a crashed primary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from examples.sql_app import main as app_main
from examples.sql_app import models as app_models

from fastpeewee import AsyncPostgresqlDatabase

from ..conftest import settle
from .cluster import Pair, psql, start_pair, stop_server, wait_replayed

CLIENTS = 20


@pytest.fixture
def fresh_pair() -> Iterator[Pair]:
    """A primary and standby of this test's own (the failover ends the primary)."""
    pair = start_pair()
    yield pair
    pair.stop()


async def _client(http: httpx.AsyncClient, user_id: int, until: float, log: list[Any]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        try:
            if n % 3:
                reply = await http.get("/items/?limit=5")
            else:
                reply = await http.post(f"/users/{user_id}/items/", json={"title": f"t{n}"})
        except httpx.HTTPError as exc:  # never: the app answers every request
            log.append((time.monotonic(), "error", repr(exc), None))
            continue
        body = reply.json() if reply.status_code == 201 else None
        log.append((time.monotonic(), reply.request.method, reply.status_code, body))
        if reply.status_code == 503:
            assert reply.headers.get("Retry-After")
            await asyncio.sleep(0.05)  # as a client honouring Retry-After would, but sooner


async def _open(db: AsyncPostgresqlDatabase) -> tuple[Any, httpx.AsyncClient, int]:
    db.bind(app_models.MODELS)
    await db.adrop_tables(app_models.MODELS, safe=True)
    app = app_main.create_app(db)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    )
    return app, http, 0


async def test_replica_share_of_the_apps_reads_under_load(pg_pair: Pair) -> None:
    db = AsyncPostgresqlDatabase(
        pg_pair.primary.database,
        **pg_pair.primary.connect_params,
        replicas=[pg_pair.url(pg_pair.standby)],
        pool_size=10,
        acquire_timeout=5.0,
    )
    app, http, _ = await _open(db)
    async with app.router.lifespan_context(app), http:
        await asyncio.to_thread(wait_replayed, pg_pair)  # the tables the app just created
        user = (await http.post("/users/", json={"email": "a@x.org", "password": "p" * 8})).json()
        await asyncio.to_thread(wait_replayed, pg_pair)
        log: list[Any] = []
        until = time.monotonic() + 3.0
        await asyncio.gather(*(_client(http, user["id"], until, log) for _ in range(CLIENTS)))
        statuses = {entry[2] for entry in log}
        assert statuses <= {200, 201}, statuses
        [status] = db.replica_status()
        share = status.served / (status.served + db._replicas.primary_reads)  # type: ignore[union-attr]
        print(f"\nreplica share of reads: {share:.1%} ({status.served} replica, "
              f"{db._replicas.primary_reads} primary; {len(log)} requests in 3 s)")  # type: ignore[union-attr]  # fmt: skip
        # GET /items/ reads only (replica); POST /items/ reads user_exists before its
        # write (replica) and, after it, nothing: every read could go to the replica.
        assert share > 0.9
        await settle(db)
        await db.adrop_tables(app_models.MODELS)
    await db.close_pool()


async def test_failover_under_load_loses_nothing_acknowledged(fresh_pair: Pair) -> None:
    pair = fresh_pair
    psql(pair.primary, "ALTER DATABASE fastpeewee_test SET synchronous_commit = remote_apply")
    psql(pair.primary, "ALTER SYSTEM SET synchronous_standby_names = '*'", "postgres")
    psql(pair.primary, "SELECT pg_reload_conf()", "postgres")
    hosts = f"127.0.0.1:{pair.primary.port},127.0.0.1:{pair.standby.port}"
    url = f"postgresql://postgres@{hosts}/fastpeewee_test?target_session_attrs=read-write"
    # The connect back-off's windows grow while the primary is down (5 s at most by
    # default): a promotion is picked up when the window open at that moment ends.
    db = AsyncPostgresqlDatabase(url, pool_size=10, acquire_timeout=2.0, connect_backoff_max=0.5)
    app, http, _ = await _open(db)
    async with app.router.lifespan_context(app), http:
        user = (await http.post("/users/", json={"email": "a@x.org", "password": "p" * 8})).json()
        log: list[Any] = []
        start = time.monotonic()
        load = asyncio.gather(
            *(_client(http, user["id"], start + 6.0, log) for _ in range(CLIENTS))
        )
        await asyncio.sleep(1.5)
        stopped = time.monotonic()
        await asyncio.to_thread(stop_server, pair.primary)  # a crash: no shutdown checkpoint
        await asyncio.sleep(1.0)  # what a failover manager takes to decide
        await asyncio.to_thread(psql, pair.standby, "SELECT pg_promote(true, 30)", "postgres")
        promoted = time.monotonic()
        await load
        await settle(db)

        failures = [e for e in log if e[2] not in (200, 201)]
        assert {e[2] for e in failures} <= {503}, failures[:5]
        assert failures, "the primary was stopped: some requests must have failed"
        first_503 = min(e[0] for e in failures)
        last_503 = max(e[0] for e in failures)
        assert first_503 >= stopped
        after = [e for e in log if e[0] > promoted + 1.0]
        assert after and all(e[2] in (200, 201) for e in after)  # no restart needed
        acknowledged = {e[3]["id"] for e in log if e[2] == 201}
        count = int(psql(pair.standby, "SELECT count(*) FROM item"))
        ids = psql(pair.standby, "SELECT string_agg(id::text, ',') FROM item").split(",")
        assert acknowledged <= {int(i) for i in ids}
        window = max(0.0, last_503 - promoted)
        print(
            f"\nfailover: 503s from {first_503 - stopped:.2f} s to {last_503 - stopped:.2f} s "
            f"after the primary stopped; promoted at {promoted - stopped:.2f} s; window after "
            f"promotion {window:.2f} s; {len(failures)} 503s of {len(log)} requests; "
            f"{len(acknowledged)} items acknowledged, {count} stored"
        )
        await db.adrop_tables(app_models.MODELS)
    await db.close_pool()


async def test_a_connection_to_a_server_turned_read_only_is_discarded(pg_pair: Pair) -> None:
    from fastpeewee import is_unavailable

    db = AsyncPostgresqlDatabase(
        pg_pair.primary.database, **pg_pair.primary.connect_params, pool_size=2
    )
    await db.aexecute_sql("CREATE TABLE IF NOT EXISTS ro_probe (x int)")
    opened = db.pool_stats()[0].opened
    psql(pg_pair.primary, "ALTER SYSTEM SET default_transaction_read_only = on", "postgres")
    psql(pg_pair.primary, "SELECT pg_reload_conf()", "postgres")
    try:
        await asyncio.sleep(0.2)  # the reload reaches every session
        with pytest.raises(Exception) as refused:
            await db.aexecute_sql("INSERT INTO ro_probe VALUES (1)")
        assert is_unavailable(refused.value)  # a 503 in the app, not a 500
        await settle(db)
        assert db.pool_stats()[0].closed >= 1  # that connection was not reused
    finally:
        psql(pg_pair.primary, "ALTER SYSTEM RESET default_transaction_read_only", "postgres")
        psql(pg_pair.primary, "SELECT pg_reload_conf()", "postgres")
    await asyncio.sleep(0.2)
    await db.aexecute_sql("INSERT INTO ro_probe VALUES (1)")
    assert db.pool_stats()[0].opened > opened  # a fresh connection served it
    assert psql(pg_pair.primary, "SELECT count(*) FROM ro_probe") == "1"
    await db.aexecute_sql("DROP TABLE ro_probe")
    await db.close_pool()
