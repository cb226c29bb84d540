"""Connect back-off (fastpeewee.backoff) with the real server stopped.

The database reaches the server through a loopback proxy that counts the
connections it accepts: each is one connect attempt of a pool. While the
server is down (``PostgresServer.restart`` / ``MariaDBServer.restart``), a
burst of statements from tasks and threads hits two databases side by side,
one with the default back-off and one with it off; the first must try a
bounded number of times, the second tries for every statement. Once the
server is back, the first must serve again within the back-off cap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fastpeewee import AsyncMySQLDatabase, AsyncPostgresqlDatabase, PoolBackoff, is_unavailable

from ..conftest import assert_no_leaks, settle
from ..proxy import Proxy

CAP = 0.4  # connect_backoff_max of the database under test
BURST = 1.5  # seconds of requests while the server is down
DOWN = 3.0  # seconds the server stays down (the burst fits in it)


class CountingProxy(Proxy):
    """A :class:`Proxy` that counts the connections it accepts, and refuses them
    (closes at once) while the server behind it is down, as the server would."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.accepted = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await super()._client(reader, writer)
        except OSError:
            writer.close()


def _database(backend: str, server: Any, port: int, **options: Any) -> Any:
    params = {**server.connect_params, "port": port}
    options = {"pool_size": 4, "acquire_timeout": 2.0, **options}
    if backend == "postgres":
        return AsyncPostgresqlDatabase(server.database, **params, **options)
    return AsyncMySQLDatabase(server.database, ssl_disabled=True, **params, **options)


async def _wait_down(port: int) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            writer.close()
            await asyncio.sleep(0.02)


async def _burst(db: Any) -> list[Any]:
    """Ten statements from tasks and two from threads every 50 ms for BURST seconds."""

    def sync_select() -> Any:
        try:
            return db.execute_sql("SELECT 1")
        finally:
            db.release_thread()

    results: list[Any] = []
    end = time.monotonic() + BURST
    while time.monotonic() < end:
        calls = [db.aexecute_sql("SELECT 1") for _ in range(10)]
        calls += [asyncio.to_thread(sync_select) for _ in range(2)]
        results += await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.sleep(0.05)
    return results


async def _recovery_seconds(db: Any) -> float:
    started = time.monotonic()
    async with asyncio.timeout(10):
        while True:
            try:
                await db.aexecute_sql("SELECT 1")
                await asyncio.to_thread(db.execute_sql, "SELECT 1")
                await asyncio.to_thread(db.release_thread)
                return time.monotonic() - started
            except Exception as exc:
                assert is_unavailable(exc), exc
                await asyncio.sleep(0.01)


@pytest.mark.own_server("it stops and restarts the server")
@pytest.mark.backends("postgres", "mysql")
async def test_a_stopped_server_gets_bounded_connects_and_is_used_again(backend, request):
    fixture = "postgres_server" if backend == "postgres" else "mariadb_server"
    server = request.getfixturevalue(fixture)
    proxy, plain_proxy = CountingProxy(server.port), CountingProxy(server.port)
    db = _database(backend, server, await proxy.start(), connect_backoff_max=CAP)
    plain = _database(backend, server, await plain_proxy.start(), connect_backoff=0)
    restart: asyncio.Future[None] | None = None
    try:
        for each in (db, plain):  # a connection each side, then the server goes away
            await each.aexecute_sql("SELECT 1")
            await asyncio.to_thread(each.execute_sql, "SELECT 1")
            await asyncio.to_thread(each.release_thread)
        restart = asyncio.ensure_future(asyncio.to_thread(server.restart, DOWN))
        await _wait_down(server.port)
        before, plain_before = proxy.accepted, plain_proxy.accepted
        results: list[Any]
        results, _ = await asyncio.gather(_burst(db), _burst(plain))
        attempts = proxy.accepted - before
        plain_attempts = plain_proxy.accepted - plain_before

        assert all(isinstance(r, Exception) and is_unavailable(r) for r in results), results
        refused = sum(isinstance(r, PoolBackoff) for r in results)
        print(
            f"\n{backend}: {len(results)} statements in {BURST} s with the server down: "
            f"{attempts} connects with back-off ({refused} refused at once), "
            f"{plain_attempts} without"
        )
        # Each pool (tasks: 10 callers a round; threads: 2) tries in at most
        # 2 rounds before its first window, then once a window: windows of at
        # least 0.025, 0.05, 0.1, 0.2, 0.2... s (0.05 s doubling up to CAP,
        # jitter taking up to half) leave at most 12 rounds in 1.5 s; a round
        # tries at most pool_size (4) connects at once on tasks, 2 on threads.
        assert attempts <= 12 * (4 + 2), attempts
        assert plain_attempts >= 3 * attempts, (plain_attempts, attempts)
        assert refused >= len(results) // 2

        await restart
        recovery = await _recovery_seconds(db)
        print(f"{backend}: served again {recovery:.2f} s after the server was back")
        assert recovery <= CAP + 1.5, recovery
        await settle(db)
        assert_no_leaks(db)
    finally:
        if restart is not None:
            await restart
        for each in (db, plain):
            await each.close_pool()
            each.close_all()
        await proxy.close()
        await plain_proxy.close()
