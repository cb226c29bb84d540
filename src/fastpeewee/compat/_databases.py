"""The database API of peewee-async (0.6-0.12) on fastpeewee's databases.

``connect_async`` / ``close_async`` / ``atomic_async`` / ``transaction_async``
/ ``savepoint_async`` (0.6) and ``aio_connect`` / ``aio_close`` /
``is_connected`` / ``aio_atomic`` / ``aio_execute`` (0.12) over fastpeewee's
pools, task-local state and transactions; ``max_connections`` /
``min_connections`` set the pool size; ``allow_sync`` is per task (see
:mod:`._sync_guard`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from ..backends.mysql import AsyncMySQLDatabase
from ..backends.postgres import AsyncPostgresqlDatabase
from ..backends.sqlite import AsyncSqliteDatabase
from ..transactions import async_atomic, async_savepoint, async_transaction
from . import _ops
from ._connection import ConnectionContext, track
from ._sync_guard import AllowSyncMixin

if TYPE_CHECKING:
    from ..pool import PoolConfig

__all__ = [
    "MySQLDatabase",
    "PeeweeAsyncDatabaseMixin",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PostgresqlDatabase",
    "SqliteDatabase",
]


class PeeweeAsyncDatabaseMixin(AllowSyncMixin):
    """peewee-async's database methods; mixed in before a fastpeewee database class.

    Example::

        class PooledPostgresqlDatabase(PeeweeAsyncDatabaseMixin, AsyncPostgresqlDatabase):
            ...
    """

    if TYPE_CHECKING:
        pool_config: PoolConfig
        _async_pool: Any

        async def aexecute_sql(self, sql: str, params: Any = None) -> Any: ...
        async def close_pool(self) -> None: ...
        def atomic(self, *args: Any, **kwargs: Any) -> async_atomic: ...
        def transaction(self, *args: Any, **kwargs: Any) -> async_transaction: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        track(self)  # type: ignore[arg-type]

    def init(self, database: Any, *args: Any, **kwargs: Any) -> None:
        """peewee's deferred ``init``; also takes ``max_connections`` / ``min_connections``."""
        pool_size = kwargs.pop("max_connections", None)
        pool_min_size = kwargs.pop("min_connections", None)
        if "connection_timeout" in kwargs:  # peewee-async 0.12's old spelling
            kwargs.setdefault("connect_timeout", kwargs.pop("connection_timeout"))
        if pool_size is not None or pool_min_size is not None:
            config = self.pool_config
            pool_size = config.pool_size if pool_size is None else pool_size
            pool_min_size = config.pool_min_size if pool_min_size is None else pool_min_size
            self.pool_config = dataclasses.replace(
                config, pool_size=pool_size, pool_min_size=min(pool_min_size, pool_size)
            )
        super().init(database, *args, **kwargs)  # type: ignore[misc]

    # -- peewee-async 0.6 ---------------------------------------------------------

    async def connect_async(self, loop: Any = None, timeout: float | None = None) -> None:
        """Open the async pool now and check the server answers.

        Optional: the pool opens on first use anyway. ``loop`` is accepted and
        ignored (the running loop is used); ``timeout`` bounds the wait in seconds.
        """
        async with asyncio.timeout(timeout):
            await self.aexecute_sql("SELECT 1")

    async def close_async(self) -> None:
        """Close the pools (``close_pool()``); a later query opens them again."""
        await self.close_pool()

    def atomic_async(self) -> async_atomic:
        """``async with db.atomic_async():`` a transaction, a savepoint when nested."""
        return self.atomic()

    def transaction_async(self) -> async_transaction:
        """``async with db.transaction_async():`` a transaction; nested ones join it."""
        return self.transaction()

    def savepoint_async(self, sid: str | None = None) -> async_savepoint:
        """``async with db.savepoint_async():`` a savepoint in the open transaction."""
        return async_savepoint(self, sid)

    def connection_context(self) -> ConnectionContext:
        """Hold one connection for a block: ``async with`` / ``with`` / decorator."""
        return ConnectionContext(self)

    # -- peewee-async 0.12 --------------------------------------------------------

    async def aio_connect(self) -> None:
        """peewee-async 0.12's name for :meth:`connect_async`."""
        await self.connect_async()

    async def aio_close(self) -> None:
        """peewee-async 0.12's name for :meth:`close_async`."""
        await self.close_async()

    @property
    def is_connected(self) -> bool:
        """True while the async pool is open."""
        pool = self._async_pool
        return pool is not None and not pool.closed

    def aio_atomic(self) -> async_atomic:
        """peewee-async 0.12's name for :meth:`atomic_async`."""
        return self.atomic()

    async def aio_execute(self, query: Any) -> Any:
        """Run a query on this database; returns what ``query.execute()`` returns."""
        return await _ops.execute(self, query)  # type: ignore[arg-type]


class PooledPostgresqlDatabase(PeeweeAsyncDatabaseMixin, AsyncPostgresqlDatabase):
    """PostgreSQL for async code (asyncpg) and sync code (psycopg), pooled.

    ``max_connections`` sets the size of each pool (default 10). Example::

        database = PooledPostgresqlDatabase("test", max_connections=20)
    """


class PostgresqlDatabase(PooledPostgresqlDatabase):
    """peewee-async's "single async connection" PostgreSQL class, pooled here too.

    Tasks hold their own connections (a single shared one mixed transactions
    across tasks); ``max_connections=1`` gives one. Example::

        database = PostgresqlDatabase("test")
    """


class PooledMySQLDatabase(PeeweeAsyncDatabaseMixin, AsyncMySQLDatabase):
    """MySQL / MariaDB for async code (asyncmy) and sync code (PyMySQL), pooled.

    ``max_connections`` sets the size of each pool (default 10). Example::

        database = PooledMySQLDatabase("test", user="app", max_connections=10)
    """


class MySQLDatabase(PooledMySQLDatabase):
    """peewee-async's "single async connection" MySQL class, pooled here too.

    ``max_connections=1`` gives a single connection. Example::

        database = MySQLDatabase("test", user="app")
    """


class SqliteDatabase(PeeweeAsyncDatabaseMixin, AsyncSqliteDatabase):
    """SQLite with the peewee-async database API (peewee-async 2.x has this name).

    Example::

        database = SqliteDatabase("app.db")
    """
