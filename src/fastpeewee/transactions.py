"""Transactions usable both as ``with`` (sync code) and ``async with`` (async code).

Nesting works as in peewee: the outermost ``atomic()`` is a transaction, inner
ones are savepoints. ``async with`` runs peewee's own enter/exit logic through
the greenlet bridge, so commit callbacks, savepoint naming and error handling
are peewee's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["async_atomic", "async_savepoint", "async_transaction"]

F = TypeVar("F", bound=Callable[..., Any])


class _AsyncTransactionMixin:
    """Adds ``async with``, ``acommit``/``arollback`` and coroutine decoration."""

    db: AsyncDatabase

    async def __aenter__(self) -> Any:
        return await self.db.run(self.__enter__)  # type: ignore[attr-defined]

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await self.db.run(self.__exit__, exc_type, exc, tb)  # type: ignore[attr-defined]

    async def acommit(self, begin: bool = True) -> None:
        """Commit now (and begin again unless ``begin=False``)."""
        await self.db.run(self.commit, begin)  # type: ignore[attr-defined]

    async def arollback(self, begin: bool = True) -> None:
        """Roll back now (and begin again unless ``begin=False``)."""
        await self.db.run(self.rollback, begin)  # type: ignore[attr-defined]

    def __call__(self, fn: F) -> F:
        """Decorate a function, sync or ``async def``, to run inside this block."""
        if not inspect.iscoroutinefunction(fn):
            return super().__call__(fn)  # type: ignore[misc,no-any-return]

        @functools.wraps(fn)
        async def inner(*args: Any, **kwargs: Any) -> Any:
            async with self._build_ctx():  # type: ignore[attr-defined]
                return await fn(*args, **kwargs)

        return inner  # type: ignore[return-value]


class async_atomic(_AsyncTransactionMixin, peewee._atomic):
    """``db.atomic()``: a transaction, or a savepoint when one is already open."""


class async_transaction(_AsyncTransactionMixin, peewee._transaction):
    """``db.transaction()``: a transaction; nested ones join the outer one."""


class async_savepoint(_AsyncTransactionMixin, peewee._savepoint):
    """``db.savepoint()``: a savepoint inside the open transaction."""
