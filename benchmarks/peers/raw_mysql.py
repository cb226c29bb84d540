"""The MariaDB floors: asyncmy (the ratios' floor) and aiomysql, with hand-written SQL.

Each is driven the fastest way it offers: one connection in autocommit for the
sequential workloads, a buffered cursor per statement (``execute`` reads the
whole result; ``fetchone``/``fetchall`` then hand it over without I/O), the
driver's own pool for W6, and ``executemany`` for W4, which both drivers turn
into multi-row ``INSERT ... VALUES`` statements under ``max_allowed_packet``.
"""

from __future__ import annotations

from typing import Any

from ..schema import BULK_TABLE, COLUMNS, TABLE
from .base import POOL_SIZE, Peer

_COLS = ", ".join(COLUMNS)
_SELECT = f"SELECT id, {_COLS} FROM {TABLE}"
_GET = f"{_SELECT} WHERE id = %s"
_PAGE = f"{_SELECT} ORDER BY id LIMIT 100 OFFSET %s"
_INSERT = f"INSERT INTO {TABLE} ({_COLS}) VALUES (%s, %s, %s, %s)"
_BULK = f"INSERT INTO {BULK_TABLE} ({_COLS}) VALUES (%s, %s, %s, %s)"
_UPDATE = f"UPDATE {TABLE} SET quantity = %s WHERE id = %s"


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in COLUMNS)


class RawAsyncmy(Peer):
    """asyncmy: the driver fastpeewee uses for tasks, and the MariaDB floor."""

    name = "raw asyncmy"

    def _params(self) -> dict[str, Any]:
        t = self.target
        return {
            "host": t.host,
            "port": t.port,
            "user": t.user,
            "password": t.password,
            "db": t.database,
            "autocommit": True,
        }

    async def _connect(self) -> Any:
        import asyncmy

        return await asyncmy.connect(**self._params())

    async def _create_pool(self) -> Any:
        import asyncmy

        return await asyncmy.create_pool(minsize=1, maxsize=POOL_SIZE, **self._params())

    async def setup(self) -> None:
        self.conn = await self._connect()
        self.pool = await self._create_pool()

    async def teardown(self) -> None:
        self.conn.close()
        self.pool.close()
        await self.pool.wait_closed()

    def pk(self, obj: Any) -> int:
        return int(obj[0])

    async def _one(self, conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        cur = conn.cursor()
        await cur.execute(sql, params)
        return await cur.fetchone()

    async def get(self, pk: int) -> Any:
        return await self._one(self.conn, _GET, (pk,))

    async def page(self, offset: int) -> list[Any]:
        cur = self.conn.cursor()
        await cur.execute(_PAGE, (offset,))
        return list(await cur.fetchall())

    async def insert(self, row: dict[str, Any]) -> None:
        await self.conn.cursor().execute(_INSERT, _values(row))

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        await self.conn.begin()
        await self.conn.cursor().executemany(_BULK, [_values(r) for r in rows])
        await self.conn.commit()

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        await self.conn.begin()
        cur = self.conn.cursor()
        await cur.execute(_GET, (pk,))
        found = await cur.fetchone()
        await cur.execute(_UPDATE, (found[4] + 1, pk))
        await cur.execute(_INSERT, _values(row))
        await self.conn.commit()

    async def task_gets(self, pks: list[int]) -> list[Any]:
        async with self.pool.acquire() as conn:
            return [await self._one(conn, _GET, (pk,)) for pk in pks]


class RawAiomysql(RawAsyncmy):
    """aiomysql (PyMySQL's protocol code on asyncio): what pwasyncio's MySQL class uses."""

    name = "raw aiomysql"

    async def _connect(self) -> Any:
        import aiomysql

        return await aiomysql.connect(**self._params())

    async def _create_pool(self) -> Any:
        import aiomysql

        return await aiomysql.create_pool(minsize=1, maxsize=POOL_SIZE, **self._params())

    async def _one(self, conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        cur = await conn.cursor()
        await cur.execute(sql, params)
        return await cur.fetchone()

    async def page(self, offset: int) -> list[Any]:
        cur = await self.conn.cursor()
        await cur.execute(_PAGE, (offset,))
        return list(await cur.fetchall())

    async def insert(self, row: dict[str, Any]) -> None:
        cur = await self.conn.cursor()
        await cur.execute(_INSERT, _values(row))

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        await self.conn.begin()
        cur = await self.conn.cursor()
        await cur.executemany(_BULK, [_values(r) for r in rows])
        await self.conn.commit()

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        await self.conn.begin()
        cur = await self.conn.cursor()
        await cur.execute(_GET, (pk,))
        found = await cur.fetchone()
        await cur.execute(_UPDATE, (found[4] + 1, pk))
        await cur.execute(_INSERT, _values(row))
        await self.conn.commit()
