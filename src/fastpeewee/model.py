"""``AsyncModel``: peewee models with the async methods of ``playhouse.pwasyncio``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import peewee

from . import fast
from .contracts.peewee import related_objects
from .database import AsyncDatabase
from .fast import fastpath

__all__ = ["AsyncModel", "AsyncModelMixin"]

M = TypeVar("M", bound="AsyncModelMixin")


def _database_of(model: type[Any]) -> AsyncDatabase:
    db = model._meta.database
    if isinstance(db, peewee.Proxy):
        db = db.obj
    if db is None:
        raise peewee.InterfaceError(
            f"{model.__name__} is not bound to a database; async methods need a "
            "fastpeewee database (e.g. AsyncSqliteDatabase)"
        )
    if not isinstance(db, AsyncDatabase):
        raise peewee.InterfaceError(
            f"{model.__name__} is bound to {type(db).__name__}, which has no async "
            "support; bind it to a fastpeewee database (e.g. AsyncPostgresqlDatabase)"
        )
    return db


class AsyncModelMixin:
    """Async twins of peewee's model methods; each runs the sync one through ``db.run``.

    Example::

        class User(AsyncModelMixin, peewee.Model): ...
        ann = await User.acreate(name="ann")
    """

    @classmethod
    async def acreate(cls: type[M], **query: Any) -> M:
        """``Model.create`` awaited."""
        db = _database_of(cls)
        if not fast.enabled(db) or not fastpath.can_create(cls):
            return await db.run(cls.create, **query)  # type: ignore[attr-defined]
        inst = cls(**query)
        await fastpath.save(inst, db, True, None)
        return inst

    @classmethod
    async def aget(cls: type[M], *query: Any, **filters: Any) -> M:
        """``Model.get`` awaited; raises ``DoesNotExist``."""
        return await _database_of(cls).run(cls.get, *query, **filters)  # type: ignore[attr-defined]

    @classmethod
    async def aget_or_none(cls: type[M], *query: Any, **filters: Any) -> M | None:
        """``Model.get_or_none`` awaited."""
        db = _database_of(cls)
        return await db.run(cls.get_or_none, *query, **filters)  # type: ignore[attr-defined]

    @classmethod
    async def aget_by_id(cls: type[M], pk: Any) -> M:
        """``Model.get_by_id`` awaited; raises ``DoesNotExist``."""
        db = _database_of(cls)
        if fast.enabled(db):
            found = await fastpath.get_by_id(cls, db, pk)
            if found is not fastpath.MISSING:
                return found  # type: ignore[no-any-return]
        return await db.run(cls.get_by_id, pk)  # type: ignore[attr-defined]

    @classmethod
    async def aget_or_create(cls: type[M], **kwargs: Any) -> tuple[M, bool]:
        """``Model.get_or_create`` awaited, race recovery included."""
        db = _database_of(cls)
        return await db.run(cls.get_or_create, **kwargs)  # type: ignore[attr-defined]

    @classmethod
    async def aset_by_id(cls, key: Any, value: dict[str, Any]) -> int:
        """``Model.set_by_id`` awaited; returns the number of rows updated."""
        return await _database_of(cls).run(cls.set_by_id, key, value)  # type: ignore[attr-defined]

    @classmethod
    async def adelete_by_id(cls, pk: Any) -> int:
        """``Model.delete_by_id`` awaited; returns the number of rows deleted."""
        return await _database_of(cls).run(cls.delete_by_id, pk)  # type: ignore[attr-defined]

    @classmethod
    async def abulk_create(cls, model_list: Iterable[Any], batch_size: int | None = None) -> None:
        """``Model.bulk_create`` awaited."""
        db = _database_of(cls)
        await db.run(cls.bulk_create, model_list, batch_size)  # type: ignore[attr-defined]

    @classmethod
    async def abulk_update(
        cls, model_list: Iterable[Any], fields: Sequence[Any], batch_size: int | None = None
    ) -> int:
        """``Model.bulk_update`` awaited; returns the number of rows updated."""
        db = _database_of(cls)
        return await db.run(cls.bulk_update, model_list, fields, batch_size)  # type: ignore[attr-defined]

    async def asave(self, force_insert: bool = False, only: Any = None) -> int:
        """``save`` awaited; returns the number of rows written."""
        db = _database_of(type(self))
        if not fast.enabled(db) or not fastpath.can_save(type(self)):
            return await db.run(self.save, force_insert, only)  # type: ignore[attr-defined]
        return await fastpath.save(self, db, force_insert, only)  # type: ignore[no-any-return]

    async def adelete_instance(
        self, recursive: bool = False, delete_nullable: bool = False
    ) -> int:
        """``delete_instance`` awaited; returns the number of rows deleted."""
        db = _database_of(type(self))
        return await db.run(self.delete_instance, recursive, delete_nullable)  # type: ignore[attr-defined]

    async def afetch(self, field: Any) -> Any:
        """Load a foreign key's related object without a hidden blocking query.

        Example::

            author = await tweet.afetch(Tweet.user)
        """
        meta = self._meta  # type: ignore[attr-defined]
        if isinstance(field, str):
            field = meta.combined[field]
        if not isinstance(field, peewee.ForeignKeyField):
            raise ValueError(f"afetch() takes a foreign-key field, got {field!r}")
        cached = related_objects(self)
        if field.name in cached:
            return cached[field.name]
        if not field.lazy_load:
            raise ValueError(
                f"{type(self).__name__}.{field.name} is declared with lazy_load=False"
            )
        return await _database_of(type(self)).run(getattr, self, field.name)


class AsyncModel(AsyncModelMixin, peewee.Model):
    """A ``peewee.Model`` with the async methods of :class:`AsyncModelMixin`."""
