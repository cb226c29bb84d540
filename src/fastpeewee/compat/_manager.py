"""``Manager``: the single entry point of peewee-async's high-level API."""

from __future__ import annotations

import builtins
from contextlib import AbstractContextManager
from typing import Any

from ..database import AsyncDatabase
from ..transactions import async_atomic, async_savepoint, async_transaction
from . import _ops

__all__ = ["Manager"]


class Manager:
    """Async operations on peewee models, bundled with one database.

    The models may be plain ``peewee.Model`` classes, bound to the database,
    to a ``peewee.Proxy`` of it, or to nothing. Example::

        objects = Manager(PooledPostgresqlDatabase("test"))
        user = await objects.create(User, username="ann")
        same = await objects.get(User, id=user.id)

    Or with the database as a class attribute::

        class MyManager(Manager):
            database = db
    """

    database: Any = None
    """The database (or a ``peewee.Proxy`` of one); set here or passed to the constructor."""

    def __init__(self, database: Any = None, *, loop: Any = None) -> None:
        # `loop` (0.6) is accepted and ignored: queries run on the running loop.
        if database is not None:
            self.database = database
        if self.database is None:
            raise ValueError(
                "Manager needs a database: Manager(db), or a subclass with `database = db`"
            )

    def _db(self) -> AsyncDatabase:
        return _ops.resolve(self.database)

    @property
    def is_connected(self) -> bool:
        """True while the database's async pool is open."""
        pool = self._db()._async_pool
        return pool is not None and not pool.closed

    # -- objects ----------------------------------------------------------------

    async def get(self, source_: Any, *args: Any, **kwargs: Any) -> Any:
        """The object of a model (or query) matching the conditions; raises ``DoesNotExist``.

        Example::

            obj = await objects.get(MyModel, id=1)
            obj = await objects.get(MyModel, MyModel.id == 1)
            obj = await objects.get(MyModel.select().where(MyModel.id == 1))
        """
        return await _ops.get(self._db(), source_, *args, **kwargs)

    async def get_or_none(self, source_: Any, *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`get`, returning None when nothing matches."""
        return await _ops.get_or_none(self._db(), source_, *args, **kwargs)

    async def create(self, model_: type[Any], **data: Any) -> Any:
        """INSERT a new object and return it (the model's ``save()`` is not called)."""
        return await _ops.create(self._db(), model_, **data)

    async def update(self, obj: Any, only: Any = None) -> int:
        """UPDATE the object's row, or only the fields (or names) in ``only``; returns rows."""
        return await _ops.update(self._db(), obj, only)

    async def delete(
        self, obj: Any, recursive: bool = False, delete_nullable: bool = False
    ) -> int:
        """DELETE the object through ``delete_instance``; returns the rows deleted."""
        return await _ops.delete(self._db(), obj, recursive, delete_nullable)

    async def get_or_create(
        self, model_: type[Any], defaults: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[Any, bool]:
        """``(object, created)``: get by ``kwargs`` or create it with ``defaults``."""
        return await _ops.get_or_create(self._db(), model_, defaults, **kwargs)

    async def create_or_get(self, model_: type[Any], **kwargs: Any) -> tuple[Any, bool]:
        """``(object, created)``: create it, or on a unique conflict get it by unique fields."""
        return await _ops.create_or_get(self._db(), model_, **kwargs)

    # -- queries ------------------------------------------------------------------

    async def execute(self, query: Any) -> Any:
        """Run any query; returns what ``query.execute()`` returns (rows, id or rowcount)."""
        return await _ops.execute(self._db(), query)

    async def prefetch(
        self, query: Any, *subqueries: Any, prefetch_type: Any = None
    ) -> builtins.list[Any]:
        """peewee's ``prefetch()`` awaited: the objects with their related rows attached."""
        return await _ops.prefetch(self._db(), query, *subqueries, prefetch_type=prefetch_type)

    async def count(self, query: Any, clear_limit: bool = False) -> int:
        """The number of rows ``query`` returns (all of them with ``clear_limit``)."""
        return await _ops.count(self._db(), query, clear_limit)

    async def scalar(self, query: Any, as_tuple: bool = False) -> Any:
        """The first value of the first row (the whole row with ``as_tuple``)."""
        return await _ops.scalar(self._db(), query, as_tuple)

    # -- connections and transactions ----------------------------------------------

    async def connect(self) -> None:
        """Open the async pool now (optional: it opens on first use)."""
        db = self._db()
        connect_async = getattr(db, "connect_async", None)
        if connect_async is not None:
            await connect_async()
        else:
            await db.aexecute_sql("SELECT 1")

    async def close(self) -> None:
        """Close the database's pools; a later query opens them again."""
        await self._db().close_pool()

    def atomic(self) -> async_atomic:
        """``async with objects.atomic():`` a transaction, or a savepoint when nested."""
        return self._db().atomic()

    def transaction(self) -> async_transaction:
        """``async with objects.transaction():`` a transaction; nested ones join it."""
        return self._db().transaction()

    def savepoint(self, sid: str | None = None) -> async_savepoint:
        """``async with objects.savepoint():`` a savepoint inside the open transaction."""
        return async_savepoint(self._db(), sid)

    def allow_sync(self) -> AbstractContextManager[None]:
        """Allow sync queries for the current task inside a ``with`` block.

        Example::

            with objects.allow_sync():
                PageBlock.create_table(True)
        """
        db = self._db()
        allow = getattr(db, "allow_sync", None)
        if allow is None:
            raise TypeError(
                f"{type(db).__name__} has no allow_sync(); use a class of "
                "fastpeewee.compat.peewee_async (e.g. PooledPostgresqlDatabase), or run "
                "sync code with `await db.run(fn)`"
            )
        cm: AbstractContextManager[None] = allow()
        return cm
