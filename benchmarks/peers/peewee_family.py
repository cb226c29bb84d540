"""Peewee three ways: fastpeewee, playhouse.pwasyncio, and plain sync peewee."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import peewee

from ..schema import BULK_TABLE, TABLE, peewee_model
from .base import POOL_SIZE, Peer, Target


def _mysql(t: Target) -> dict[str, Any]:
    """Connection keywords of the MariaDB target, for peewee's MySQL classes."""
    return {"host": t.host, "port": t.port, "user": t.user, "password": t.password}


class AsyncPeeweePeer(Peer):
    """The API fastpeewee shares with playhouse.pwasyncio (``db.get``, ``db.list``, ...)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.db = self.make_database()
        self.Item = peewee_model(self.db, TABLE, self.db.Model)
        self.Bulk = peewee_model(self.db, BULK_TABLE, self.db.Model)

    def make_database(self) -> Any:
        """The library's async database on the target, with a pool of POOL_SIZE."""
        raise NotImplementedError

    async def teardown(self) -> None:
        await self.db.close_pool()

    async def synchronous_commit(self) -> str:
        cursor = await self.db.aexecute_sql("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])

    async def get(self, pk: int) -> Any:
        return await self.db.get(self.Item.select().where(self.Item.id == pk))

    async def page(self, offset: int) -> list[Any]:
        Item = self.Item
        return await self.db.list(Item.select().order_by(Item.id).limit(100).offset(offset))

    async def insert(self, row: dict[str, Any]) -> None:
        await self.Item.acreate(**row)

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        # pwasyncio: peewee's documented idiom for large inserts, batches in a transaction.
        async with self.db.atomic():
            for batch in peewee.chunked(rows, 1000):
                await self.db.aexecute(self.Bulk.insert_many(batch))

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        Item = self.Item
        async with self.db.atomic():
            item = await self.db.get(Item.select().where(Item.id == pk))
            item.quantity += 1
            await item.asave(only=[Item.quantity])
            await Item.acreate(**row)

    async def task_gets(self, pks: list[int]) -> list[Any]:
        # Like the raw driver's ``pool.acquire()`` and SQLAlchemy's session: the
        # task holds one pooled connection for its gets (``async with db`` in
        # both libraries; a FastAPI request under fastpeewee's middleware does
        # the same from its first query on).
        async with self.db:
            return [await self.get(pk) for pk in pks]


class FastPeewee(AsyncPeeweePeer):
    """fastpeewee from this repository."""

    name = "fastpeewee"

    def make_database(self) -> Any:
        import fastpeewee

        t = self.target
        if t.backend == "sqlite":
            return fastpeewee.AsyncSqliteDatabase(t.path, pool_size=POOL_SIZE)
        if t.backend == "mysql":
            return fastpeewee.AsyncMySQLDatabase(t.database, pool_size=POOL_SIZE, **_mysql(t))
        return fastpeewee.AsyncPostgresqlDatabase(
            t.database, host=t.host, port=t.port, user=t.user, pool_size=POOL_SIZE
        )

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        # One call for all rows: staying under the driver's parameter cap is the library's job.
        query = self.Bulk.insert_many(rows)
        if hasattr(query, "aexecute"):
            await query.aexecute()
        else:
            await self.db.aexecute(query)


class FastPeeweePrepared(FastPeewee):
    """fastpeewee with its explicit compiled-query API (``db.prepare``) for the reads.

    Not a peer but the other way to use fastpeewee: the README's "Reaching the
    raw driver's speed" section. Writes are the same calls as :class:`FastPeewee`.
    """

    name = "fastpeewee prepared"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        from fastpeewee import Param

        Item = self.Item
        self.by_id = self.db.prepare(Item.select().where(Item.id == Param("id")))
        self.page_at = self.db.prepare(
            Item.select().order_by(Item.id).limit(100).offset(Param("at"))
        )

    async def get(self, pk: int) -> Any:
        return await self.by_id.get(id=pk)

    async def page(self, offset: int) -> list[Any]:
        return await self.page_at.list(at=offset)


class PwAsyncio(AsyncPeeweePeer):
    """peewee's own ``playhouse.pwasyncio``."""

    name = "playhouse.pwasyncio"

    def make_database(self) -> Any:
        from playhouse import pwasyncio

        t = self.target
        if t.backend == "sqlite":
            return pwasyncio.AsyncSqliteDatabase(t.path, pool_size=POOL_SIZE)
        if t.backend == "mysql":
            return pwasyncio.AsyncMySQLDatabase(t.database, pool_size=POOL_SIZE, **_mysql(t))
        return pwasyncio.AsyncPostgresqlDatabase(
            t.database, host=t.host, port=t.port, user=t.user, pool_size=POOL_SIZE
        )


class SyncPeewee(Peer):
    """Plain blocking peewee with playhouse.pool, called straight from the loop.

    W6 runs its 200 units of work on a pool of POOL_SIZE threads instead of tasks.
    """

    name = "peewee (sync)"

    async def setup(self) -> None:
        from playhouse.pool import (
            PooledMySQLDatabase,
            PooledPostgresqlDatabase,
            PooledSqliteDatabase,
        )

        t = self.target
        if t.backend == "sqlite":
            self.db: Any = PooledSqliteDatabase(
                t.path, max_connections=POOL_SIZE, timeout=10, check_same_thread=False
            )
        elif t.backend == "mysql":
            self.db = PooledMySQLDatabase(
                t.database, max_connections=POOL_SIZE, timeout=10, **_mysql(t)
            )
        else:
            self.db = PooledPostgresqlDatabase(
                t.database,
                host=t.host,
                port=t.port,
                user=t.user,
                max_connections=POOL_SIZE,
                timeout=10,
            )
        self.Item = peewee_model(self.db, TABLE)
        self.Bulk = peewee_model(self.db, BULK_TABLE)
        self.threads = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="bench-peewee")

    async def teardown(self) -> None:
        self.threads.shutdown()
        self.db.close()
        self.db.close_all()

    async def synchronous_commit(self) -> str:
        return str(self.db.execute_sql("SHOW synchronous_commit").fetchone()[0])

    async def get(self, pk: int) -> Any:
        return self.Item.get(self.Item.id == pk)

    async def page(self, offset: int) -> list[Any]:
        return list(self.Item.select().order_by(self.Item.id).limit(100).offset(offset))

    async def insert(self, row: dict[str, Any]) -> None:
        self.Item.create(**row)

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        with self.db.atomic():
            for batch in peewee.chunked(rows, 1000):
                self.Bulk.insert_many(batch).execute()

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        with self.db.atomic():
            item = self.Item.get(self.Item.id == pk)
            item.quantity += 1
            item.save(only=[self.Item.quantity])
            self.Item.create(**row)

    def _unit(self, pks: list[int]) -> list[Any]:
        with self.db.connection_context():
            return [self.Item.get(self.Item.id == pk) for pk in pks]

    async def concurrent_gets(self, batches: list[list[int]]) -> list[Any]:
        self.db.close()  # the loop thread's connection back to the pool, for the workers
        results = list(self.threads.map(self._unit, batches))
        return [obj for objs in results for obj in objs]
