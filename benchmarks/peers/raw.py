"""The floors: asyncpg and aiosqlite used directly, with hand-written SQL,
each driven the fastest way it offers.

asyncpg: statements prepared once per connection (``conn.prepare``) and run
with ``fetchrow``/``fetch``/``executemany``, so no call pays the statement
cache's lookup. aiosqlite: every read is one ``execute_fetchall`` (one hop to
the connection's thread) rather than ``execute`` + ``fetchone`` + the cursor's
close (three hops); writes are one ``execute`` each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..schema import BULK_TABLE, COLUMNS, TABLE
from .base import POOL_SIZE, Peer

_COLS = ", ".join(COLUMNS)
_SELECT = f"SELECT id, {_COLS} FROM {TABLE}"


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in COLUMNS)


class RawAsyncpg(Peer):
    """asyncpg: one connection for the sequential workloads, a pool for W6."""

    name = "raw asyncpg"
    _insert = f"INSERT INTO {TABLE} ({_COLS}) VALUES ($1, $2, $3, $4)"

    async def setup(self) -> None:
        import asyncpg

        t = self.target
        params = {"host": t.host, "port": t.port, "user": t.user, "database": t.database}
        self.conn = await asyncpg.connect(**params)
        self.pool = await asyncpg.create_pool(min_size=1, max_size=POOL_SIZE, **params)
        self._get = await self.conn.prepare(f"{_SELECT} WHERE id = $1")
        self._page = await self.conn.prepare(f"{_SELECT} ORDER BY id LIMIT 100 OFFSET $1")
        self._ins = await self.conn.prepare(self._insert)
        self._upd = await self.conn.prepare(f"UPDATE {TABLE} SET quantity = $1 WHERE id = $2")

    async def teardown(self) -> None:
        await self.conn.close()
        await self.pool.close()

    async def synchronous_commit(self) -> str:
        return str(await self.conn.fetchval("SHOW synchronous_commit"))

    def pk(self, obj: Any) -> int:
        return int(obj["id"])

    async def get(self, pk: int) -> Any:
        return await self._get.fetchrow(pk)

    async def page(self, offset: int) -> list[Any]:
        return list(await self._page.fetch(offset))

    async def insert(self, row: dict[str, Any]) -> None:
        await self._ins.fetch(*_values(row))

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {BULK_TABLE} ({_COLS}) VALUES ($1, $2, $3, $4)"
        async with self.conn.transaction():
            await self.conn.executemany(sql, [_values(r) for r in rows])

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        async with self.conn.transaction():
            found = await self._get.fetchrow(pk)
            await self._upd.fetch(found["quantity"] + 1, pk)
            await self._ins.fetch(*_values(row))

    async def task_gets(self, pks: list[int]) -> list[Any]:
        async with self.pool.acquire() as conn:
            # fetchrow through the connection's statement cache: prepared once per
            # pooled connection (conn.prepare would skip the cache and round-trip).
            return [await conn.fetchrow(f"{_SELECT} WHERE id = $1", pk) for pk in pks]


class RawAiosqlite(Peer):
    """aiosqlite: one connection for the sequential workloads, ten in a queue for W6."""

    name = "raw aiosqlite"
    _insert = f"INSERT INTO {TABLE} ({_COLS}) VALUES (?, ?, ?, ?)"

    async def _connect(self) -> Any:
        import aiosqlite

        # isolation_level=None: autocommit, with explicit BEGIN where a transaction is wanted.
        return await aiosqlite.connect(self.target.path, isolation_level=None)

    async def setup(self) -> None:
        self.conn = await self._connect()
        self.pool: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(POOL_SIZE):
            self.pool.put_nowait(await self._connect())

    async def teardown(self) -> None:
        await self.conn.close()
        while not self.pool.empty():
            await self.pool.get_nowait().close()

    def pk(self, obj: Any) -> int:
        return int(obj[0])

    async def _fetchone(self, conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        # One hop to the connection's thread (execute, fetch, close there).
        rows = await conn.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def get(self, pk: int) -> Any:
        return await self._fetchone(self.conn, f"{_SELECT} WHERE id = ?", (pk,))

    async def page(self, offset: int) -> list[Any]:
        sql = f"{_SELECT} ORDER BY id LIMIT 100 OFFSET ?"
        return list(await self.conn.execute_fetchall(sql, (offset,)))

    async def insert(self, row: dict[str, Any]) -> None:
        await self.conn.execute(self._insert, _values(row))

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        await self.conn.execute("BEGIN")
        await self.conn.executemany(
            f"INSERT INTO {BULK_TABLE} ({_COLS}) VALUES (?, ?, ?, ?)", [_values(r) for r in rows]
        )
        await self.conn.execute("COMMIT")

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        await self.conn.execute("BEGIN")
        found = await self._fetchone(self.conn, f"{_SELECT} WHERE id = ?", (pk,))
        await self.conn.execute(
            f"UPDATE {TABLE} SET quantity = ? WHERE id = ?", (found[4] + 1, pk)
        )
        await self.conn.execute(self._insert, _values(row))
        await self.conn.execute("COMMIT")

    async def task_gets(self, pks: list[int]) -> list[Any]:
        conn = await self.pool.get()
        try:
            sql = f"{_SELECT} WHERE id = ?"
            return [await self._fetchone(conn, sql, (pk,)) for pk in pks]
        finally:
            self.pool.put_nowait(conn)
