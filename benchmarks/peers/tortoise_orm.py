"""Tortoise ORM (asyncpg or aiosqlite) through its model API."""

from __future__ import annotations

from typing import Any

from .base import POOL_SIZE, Peer


class TortoiseOrm(Peer):
    """Tortoise in its own context, initialised for the target and closed afterwards."""

    name = "Tortoise ORM"

    async def setup(self) -> None:
        from tortoise.context import TortoiseContext

        from . import tortoise_models

        t = self.target
        pool = f"minsize=1&maxsize={POOL_SIZE}"
        url = {
            "sqlite": f"sqlite://{t.path}",
            "postgres": f"asyncpg://{t.user}@{t.host}:{t.port}/{t.database}?{pool}",
            # Tortoise's MySQL client uses asyncmy when it is installed (it is here).
            "mysql": f"mysql://{t.user}:{t.password}@{t.host}:{t.port}/{t.database}?{pool}",
        }[t.backend]
        module = tortoise_models.models_module(t.backend)
        # An explicit context per backend: Tortoise's state is otherwise process-wide.
        self.context = TortoiseContext()
        self.context.__enter__()
        # Tortoise caches insert SQL per (connection name, table), whatever the dialect:
        # a connection name per backend keeps the SQLite SQL away from PostgreSQL.
        name = f"bench_{t.backend}"
        await self.context.init(
            config={
                "connections": {name: url},
                "apps": {"models": {"models": [module.__name__], "default_connection": name}},
            }
        )
        self.connection = name
        self.Item, self.Bulk = module.Item, module.BulkItem

    async def teardown(self) -> None:
        await self.context.close_connections()
        self.context.__exit__(None, None, None)

    async def synchronous_commit(self) -> str:
        rows = await self.context.db(self.connection).execute_query_dict("SHOW synchronous_commit")
        return str(rows[0]["synchronous_commit"])

    async def get(self, pk: int) -> Any:
        return await self.Item.get(id=pk)

    async def page(self, offset: int) -> list[Any]:
        return list(await self.Item.all().order_by("id").offset(offset).limit(100))

    async def insert(self, row: dict[str, Any]) -> None:
        await self.Item.create(**row)

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        await self.Bulk.bulk_create([self.Bulk(**r) for r in rows])

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        from tortoise.transactions import in_transaction

        async with in_transaction():
            item = await self.Item.get(id=pk)
            item.quantity += 1
            await item.save(update_fields=["quantity"])
            await self.Item.create(**row)

    async def task_gets(self, pks: list[int]) -> list[Any]:
        return [await self.Item.get(id=pk) for pk in pks]
