"""SQLAlchemy 2 asyncio ORM (asyncpg or aiosqlite), one AsyncSession per unit of work."""

from __future__ import annotations

from typing import Any

from .base import POOL_SIZE, Peer


class SqlAlchemyOrm(Peer):
    """Each operation (and each W6 task) is one ``AsyncSession``, as a request would be."""

    name = "SQLAlchemy 2 async ORM"

    async def setup(self) -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        t = self.target
        url = {
            "sqlite": f"sqlite+aiosqlite:///{t.path}",
            "postgres": f"postgresql+asyncpg://{t.user}@{t.host}:{t.port}/{t.database}",
            "mysql": f"mysql+asyncmy://{t.user}:{t.password}@{t.host}:{t.port}/{t.database}",
        }[t.backend]
        self.engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0)
        self.Session = async_sessionmaker(self.engine, expire_on_commit=False)
        from . import sqlalchemy_models

        self.Item, self.Bulk = sqlalchemy_models.Item, sqlalchemy_models.BulkItem

    async def teardown(self) -> None:
        await self.engine.dispose()

    async def synchronous_commit(self) -> str:
        from sqlalchemy import text

        async with self.Session() as session:
            return str((await session.execute(text("SHOW synchronous_commit"))).scalar_one())

    async def get(self, pk: int) -> Any:
        async with self.Session() as session:
            return await session.get(self.Item, pk)

    async def page(self, offset: int) -> list[Any]:
        from sqlalchemy import select

        query = select(self.Item).order_by(self.Item.id).offset(offset).limit(100)
        async with self.Session() as session:
            return list((await session.scalars(query)).all())

    async def insert(self, row: dict[str, Any]) -> None:
        async with self.Session() as session, session.begin():
            session.add(self.Item(**row))

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        from sqlalchemy import insert

        # SQLAlchemy 2's "ORM bulk INSERT": a list of dicts through session.execute.
        async with self.Session() as session, session.begin():
            await session.execute(insert(self.Bulk), rows)

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        async with self.Session() as session, session.begin():
            item = await session.get(self.Item, pk)
            item.quantity += 1  # type: ignore[union-attr]
            session.add(self.Item(**row))

    async def task_gets(self, pks: list[int]) -> list[Any]:
        async with self.Session() as session:
            return [await session.get(self.Item, pk) for pk in pks]
