"""``AioModel``: the model base of peewee-async 0.12, on fastpeewee.

Its queries (``AioModel.select()``, ``.update()``, ...) carry ``aio_execute``
and, for SELECTs, ``aio_get`` / ``aio_scalar`` / ``aio_count`` /
``aio_exists`` / ``aio_prefetch``. The model methods run peewee's own code
(``save``, ``get_or_create``, ``delete_instance``) through ``db.run``, so
overridden ``save()`` methods and peewee's race handling apply. ``AioModel``
also has the ``playhouse.pwasyncio`` names of :class:`fastpeewee.AsyncModel`
(``acreate``, ``aget``, ...).
"""

from __future__ import annotations

import builtins
from typing import Any, TypeVar

import peewee

from ..contracts.peewee import normalize_data
from ..database import AsyncDatabase
from ..model import AsyncModelMixin
from . import _ops

__all__ = [
    "AioModel",
    "AioModelCompoundSelectQuery",
    "AioModelDelete",
    "AioModelInsert",
    "AioModelRaw",
    "AioModelSelect",
    "AioModelUpdate",
    "AioSelect",
    "aio_prefetch",
]

M = TypeVar("M", bound="AioModel")


def _target(query: Any, database: Any) -> AsyncDatabase:
    return _ops.resolve(database) if database is not None else _ops.database_of(query)


async def aio_prefetch(sq: Any, *subqueries: Any, prefetch_type: Any = None) -> builtins.list[Any]:
    """peewee's ``prefetch()`` awaited: the objects of ``sq``, related rows attached.

    Example::

        users = await aio_prefetch(User.select(), Tweet.select())
    """
    return await _ops.prefetch(_ops.database_of(sq), sq, *subqueries, prefetch_type=prefetch_type)


class AioQueryMixin:
    """``aio_execute()`` for any query."""

    async def aio_execute(self, database: Any = None) -> Any:
        """Run the query; returns what ``execute()`` returns (rows, id or rowcount)."""
        return await _ops.execute(_target(self, database), self)


class AioSelectMixin(AioQueryMixin):
    """The async twins of a SELECT's ``get``, ``scalar``, ``count``, ``exists``, ``prefetch``."""

    async def aio_get(self, database: Any = None) -> Any:
        """The first row; raises the model's ``DoesNotExist`` when there is none."""
        db = _target(self, database)
        return await db.run(self.get, db)  # type: ignore[attr-defined]

    async def aio_scalar(self, database: Any = None, as_tuple: bool = False) -> Any:
        """The first value of the first row (the whole row with ``as_tuple``)."""
        return await _ops.scalar(_target(self, database), self, as_tuple)

    async def aio_count(self, database: Any = None, clear_limit: bool = False) -> int:
        """The number of rows (all of them with ``clear_limit``)."""
        return await _ops.count(_target(self, database), self, clear_limit)

    async def aio_exists(self, database: Any = None) -> bool:
        """Whether the query returns any row."""
        db = _target(self, database)
        found: bool = await db.run(self.exists, db)  # type: ignore[attr-defined]
        return found

    async def aio_prefetch(
        self, *subqueries: Any, prefetch_type: Any = None
    ) -> builtins.list[Any]:
        """The rows with the subqueries' related rows attached (peewee's ``prefetch``)."""
        return await aio_prefetch(self, *subqueries, prefetch_type=prefetch_type)

    def union_all(self, rhs: Any) -> AioModelCompoundSelectQuery:
        """``UNION ALL``, keeping the aio methods."""
        return AioModelCompoundSelectQuery(self.model, self, "UNION ALL", rhs)  # type: ignore[attr-defined]

    __add__ = union_all

    def union(self, rhs: Any) -> AioModelCompoundSelectQuery:
        """``UNION``, keeping the aio methods."""
        return AioModelCompoundSelectQuery(self.model, self, "UNION", rhs)  # type: ignore[attr-defined]

    __or__ = union

    def intersect(self, rhs: Any) -> AioModelCompoundSelectQuery:
        """``INTERSECT``, keeping the aio methods."""
        return AioModelCompoundSelectQuery(self.model, self, "INTERSECT", rhs)  # type: ignore[attr-defined]

    __and__ = intersect

    def except_(self, rhs: Any) -> AioModelCompoundSelectQuery:
        """``EXCEPT``, keeping the aio methods."""
        return AioModelCompoundSelectQuery(self.model, self, "EXCEPT", rhs)  # type: ignore[attr-defined]

    __sub__ = except_


class AioSelect(AioSelectMixin, peewee.Select):
    """A plain ``Select`` with the aio methods (``count()`` uses it)."""


class AioModelSelect(AioSelectMixin, peewee.ModelSelect):
    """``AioModel.select()``."""


class AioModelCompoundSelectQuery(  # type: ignore[misc]
    AioSelectMixin, peewee.ModelCompoundSelectQuery
):
    """A UNION / INTERSECT / EXCEPT of ``AioModelSelect`` queries."""


class AioModelUpdate(AioQueryMixin, peewee.ModelUpdate):
    """``AioModel.update()``."""


class AioModelInsert(AioQueryMixin, peewee.ModelInsert):
    """``AioModel.insert()`` / ``insert_many()`` / ``insert_from()``."""


class AioModelDelete(AioQueryMixin, peewee.ModelDelete):
    """``AioModel.delete()``."""


class AioModelRaw(AioQueryMixin, peewee.ModelRaw):
    """``AioModel.raw()``."""


class AioModel(AsyncModelMixin, peewee.Model):
    """A ``peewee.Model`` whose queries and methods have ``aio_*`` async twins.

    Example::

        class User(AioModel):
            username = peewee.CharField(unique=True)
            class Meta:
                database = db

        user = await User.aio_create(username="ann")
        rows = await User.select().where(User.username == "ann").aio_execute()
    """

    # select, update, insert, insert_many and insert_from mirror peewee's own
    # Model methods with the Aio query classes (contracts.peewee.MIRRORS pins them).

    @classmethod
    def select(cls, *fields: Any) -> AioModelSelect:  # type: ignore[override]
        """``SELECT``, with the aio methods."""
        is_default = not fields
        return AioModelSelect(cls, fields or cls._meta.sorted_fields, is_default=is_default)

    @classmethod
    def update(cls, __data: Any = None, **update: Any) -> AioModelUpdate:
        """``UPDATE``, with ``aio_execute``."""
        return AioModelUpdate(cls, normalize_data(cls, __data, update))

    @classmethod
    def insert(cls, __data: Any = None, **insert: Any) -> AioModelInsert:
        """``INSERT``, with ``aio_execute``."""
        return AioModelInsert(cls, normalize_data(cls, __data, insert))

    @classmethod
    def insert_many(cls, rows: Any, fields: Any = None) -> AioModelInsert:
        """``INSERT`` of many rows, with ``aio_execute``."""
        return AioModelInsert(cls, insert=rows, columns=fields)

    @classmethod
    def insert_from(cls, query: Any, fields: Any) -> AioModelInsert:
        """``INSERT ... SELECT``, with ``aio_execute``."""
        columns = [getattr(cls, f) if isinstance(f, str) else f for f in fields]
        return AioModelInsert(cls, insert=query, columns=columns)

    @classmethod
    def raw(cls, sql: str, *params: Any) -> AioModelRaw:
        """A raw SQL query returning model objects, with ``aio_execute``."""
        return AioModelRaw(cls, sql, params)

    @peewee.classmethod_only  # type: ignore[arg-type]
    def delete(cls) -> AioModelDelete:
        """``DELETE``, with ``aio_execute``."""
        return AioModelDelete(cls)

    @classmethod
    async def aio_get(cls: type[M], *query: Any, **filters: Any) -> M:
        """``Model.get`` awaited (an int is a primary key); raises ``DoesNotExist``."""
        return await cls.aget(*query, **filters)

    @classmethod
    async def aio_get_or_none(cls: type[M], *query: Any, **filters: Any) -> M | None:
        """``Model.get_or_none`` awaited."""
        return await cls.aget_or_none(*query, **filters)

    @classmethod
    async def aio_create(cls: type[M], **query: Any) -> M:
        """``Model.create`` awaited."""
        return await cls.acreate(**query)

    @classmethod
    async def aio_get_or_create(cls: type[M], **kwargs: Any) -> tuple[M, bool]:
        """``Model.get_or_create`` awaited: ``(object, created)``, races recovered."""
        return await cls.aget_or_create(**kwargs)

    async def aio_save(self, force_insert: bool = False, only: Any = None) -> int:
        """``save`` awaited; returns the rows written."""
        return await self.asave(force_insert, only)

    async def aio_delete_instance(
        self, recursive: bool = False, delete_nullable: bool = False
    ) -> int:
        """``delete_instance`` awaited; returns the rows deleted."""
        return await self.adelete_instance(recursive, delete_nullable)
