"""peewee-async's module-level ("low-level") API: each call runs on the database
its model, object or query is bound to."""

from __future__ import annotations

import builtins
from typing import Any

from ..transactions import async_atomic, async_savepoint, async_transaction
from . import _ops

__all__ = [
    "atomic",
    "count",
    "create_object",
    "delete_object",
    "execute",
    "get_object",
    "prefetch",
    "savepoint",
    "scalar",
    "transaction",
    "update_object",
]


async def execute(query: Any) -> Any:
    """Run a SELECT, INSERT, UPDATE or DELETE; returns what ``query.execute()`` returns.

    Example::

        rows = await execute(User.select())
    """
    return await _ops.execute(_ops.database_of(query), query)


async def get_object(source: Any, *args: Any) -> Any:
    """The object of a model or query matching ``args``; raises ``DoesNotExist``."""
    return await _ops.get(_ops.database_of(source), source, *args)


async def create_object(model: type[Any], **data: Any) -> Any:
    """INSERT a new object of ``model`` and return it."""
    return await _ops.create(_ops.database_of(model), model, **data)


async def delete_object(obj: Any, recursive: bool = False, delete_nullable: bool = False) -> int:
    """DELETE ``obj`` (``delete_instance``); returns the rows deleted."""
    return await _ops.delete(_ops.database_of(type(obj)), obj, recursive, delete_nullable)


async def update_object(obj: Any, only: Any = None) -> int:
    """UPDATE ``obj``'s row without calling its ``save()``; returns the rows updated."""
    return await _ops.update(_ops.database_of(type(obj)), obj, only)


async def prefetch(sq: Any, *subqueries: Any, prefetch_type: Any = None) -> builtins.list[Any]:
    """peewee's ``prefetch()`` awaited: the objects of ``sq`` with related rows attached."""
    return await _ops.prefetch(_ops.database_of(sq), sq, *subqueries, prefetch_type=prefetch_type)


async def count(query: Any, clear_limit: bool = False) -> int:
    """The number of rows ``query`` returns (all of them with ``clear_limit``)."""
    return await _ops.count(_ops.database_of(query), query, clear_limit)


async def scalar(query: Any, as_tuple: bool = False) -> Any:
    """The first value of the first row (the whole row with ``as_tuple``)."""
    return await _ops.scalar(_ops.database_of(query), query, as_tuple)


def atomic(db: Any) -> async_atomic:
    """``async with atomic(db):`` a transaction, or a savepoint when nested."""
    return _ops.resolve(db).atomic()


def transaction(db: Any) -> async_transaction:
    """``async with transaction(db):`` a transaction; nested ones join it."""
    return _ops.resolve(db).transaction()


def savepoint(db: Any, sid: str | None = None) -> async_savepoint:
    """``async with savepoint(db):`` a savepoint inside the open transaction."""
    return async_savepoint(_ops.resolve(db), sid)
