"""Holding one connection for a block: ``db.connection_context()`` for ``async with``,
and a read-only stand-in for peewee-async 0.12's ``connection_context`` variable."""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee

from ..database import AsyncDatabase
from ..state import AsyncState

__all__ = ["ConnectionContext", "ConnectionContextVar", "HeldConnection", "track"]

F = TypeVar("F", bound=Callable[..., Any])

# Databases of the compat classes, for ConnectionContextVar.get().
_tracked: weakref.WeakSet[AsyncDatabase] = weakref.WeakSet()


def track(db: AsyncDatabase) -> None:
    """Make ``db`` visible to ``connection_context.get()``."""
    _tracked.add(db)


class ConnectionContext(peewee.ConnectionContext):
    """``db.connection_context()``: hold one connection for the block.

    ``with`` in sync code (peewee's behaviour), ``async with`` in async code;
    also decorates sync and ``async def`` functions. Example::

        async with db.connection_context():
            await objects.get(User, id=1)   # both on one connection
            await objects.count(User.select())
    """

    db: AsyncDatabase

    async def __aenter__(self) -> None:
        scope = self.db._async_state()
        if scope.closed:
            await self.db.aconnect()
        scope.ctx.append(self)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        scope = self.db._async_state()
        scope.ctx.pop()
        if not scope.ctx:
            await self.db.aclose()

    def __call__(self, fn: F) -> F:
        """Decorate a function, sync or ``async def``, to run holding a connection."""
        if not inspect.iscoroutinefunction(fn):
            return super().__call__(fn)  # type: ignore[no-untyped-call,no-any-return]

        @functools.wraps(fn)
        async def inner(*args: Any, **kwargs: Any) -> Any:
            async with ConnectionContext(self.db):
                return await fn(*args, **kwargs)

        return inner  # type: ignore[return-value]


@dataclass(frozen=True)
class HeldConnection:
    """What :meth:`ConnectionContextVar.get` returns: the task's driver connection."""

    connection: Any
    """The driver connection (asyncpg, aiomysql or sqlite3) the task holds."""
    transaction_is_opened: bool
    """True while the task has a transaction open on it."""


class ConnectionContextVar:
    """peewee-async 0.12 exported ``connection_context``, a ``ContextVar``; this reads alike.

    ``connection_context.get()`` returns a :class:`HeldConnection` when the
    current task holds a connection of a compat database, else ``default``.
    Setting it is not supported: fastpeewee decides when a task holds one
    (``async with db.connection_context():``, ``async with db.atomic():``).
    """

    def get(self, default: Any = None) -> Any:
        """The current task's held connection, or ``default``."""
        loop = asyncio._get_running_loop()
        if loop is None:
            return default
        task = asyncio.current_task(loop)
        for db in list(_tracked):
            scope = db._cv.get(None)
            if (
                isinstance(scope, AsyncState)
                and scope.serves(loop, task)
                and scope.conn is not None
            ):
                return HeldConnection(scope.conn.raw, bool(scope.transactions))
        return default

    def set(self, value: Any) -> Any:
        """Not supported: raises ``TypeError`` naming what to use instead."""
        raise TypeError(
            "connection_context cannot be set in fastpeewee; hold a connection with "
            "`async with db.connection_context():` or `async with db.atomic():`"
        )
