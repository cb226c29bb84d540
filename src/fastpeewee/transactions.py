"""Transactions usable both as ``with`` (sync code) and ``async with`` (async code).

Nesting works as in peewee: the outermost ``atomic()`` is a transaction, inner
ones are savepoints. ``with`` runs peewee's own code. ``async with`` follows
the same steps in the same order (transaction stack, commit callbacks,
savepoint names, rollback when the commit fails), awaiting each statement
directly; a step a backend or subclass customises (``begin`` with arguments,
an overridden ``commit``, commit callbacks that may query) runs peewee's sync
code through the greenlet bridge instead, so its behaviour never changes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from .contracts.peewee import (
    TRANSACTION_HELPERS,
    atomic_transaction_args,
    build_ctx,
    run_commit_callbacks,
    transaction_begin,
    transaction_begin_args,
)

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["async_atomic", "async_savepoint", "async_transaction"]

F = TypeVar("F", bound=Callable[..., Any])


def _stack(db: Any) -> list[Any]:
    """The transaction stack of the awaiting task's state.

    ``async with`` keeps its books on the task's async state, never on what
    ``db._state`` resolves to: a database that lets sync queries run on the
    loop (the peewee-async compat classes) gives those a sync state of their
    own. The same list operations as peewee's ``push_transaction``,
    ``pop_transaction``, ``transaction_depth`` and ``top_transaction``
    (mirrored, pinned by tests/contracts).
    """
    stack: list[Any] = db._async_state().transactions
    return stack


class _AsyncTransactionMixin:
    """Decorates ``async def`` functions too (each block adds ``async with``,
    ``acommit`` and ``arollback`` of its own)."""

    db: AsyncDatabase

    def __call__(self, fn: F) -> F:
        """Decorate a function, sync or ``async def``, to run inside this block."""
        if not inspect.iscoroutinefunction(fn):
            return super().__call__(fn)  # type: ignore[misc,no-any-return]

        @functools.wraps(fn)
        async def inner(*args: Any, **kwargs: Any) -> Any:
            async with build_ctx(self):
                return await fn(*args, **kwargs)

        return inner  # type: ignore[return-value]


class async_atomic(_AsyncTransactionMixin, TRANSACTION_HELPERS.atomic):  # type: ignore[misc,name-defined]
    """``db.atomic()``: a transaction, or a savepoint when one is already open."""

    if TYPE_CHECKING:
        _helper: Any

    async def __aenter__(self) -> Any:
        db: Any = self.db
        stack = _stack(db)
        if not stack:
            args, kwargs = atomic_transaction_args(self)
            helper = self._helper = db.transaction(*args, **kwargs)
            if type(helper).__aenter__ is async_transaction.__aenter__:
                # The stack was just found empty, with no await since: BEGIN at once.
                return await helper._aopen()
        elif isinstance(stack[-1], TRANSACTION_HELPERS.manual):
            raise ValueError("Cannot enter atomic commit block while in manual commit mode.")
        else:
            self._helper = db.savepoint()
        return await self._helper.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await self._helper.__aexit__(exc_type, exc, tb)

    async def acommit(self, begin: bool = True) -> None:
        """Commit the transaction, or release the savepoint, this block opened
        (and begin again unless ``begin=False``)."""
        await self._entered().acommit(begin)

    async def arollback(self, begin: bool = True) -> None:
        """Roll back the transaction, or to the savepoint, this block opened
        (and begin again unless ``begin=False``)."""
        await self._entered().arollback(begin)

    def _entered(self) -> async_transaction | async_savepoint:
        helper: async_transaction | async_savepoint | None = vars(self).get("_helper")
        if helper is None:
            raise peewee.InterfaceError("enter the atomic() block before committing it")
        return helper


class async_transaction(_AsyncTransactionMixin, TRANSACTION_HELPERS.transaction):  # type: ignore[misc,name-defined]
    """``db.transaction()``: a transaction; nested ones join the outer one."""

    async def __aenter__(self) -> Any:
        stack = _stack(self.db)
        if not stack:
            return await self._aopen()
        stack.append(self)  # no await since the stack was resolved: still this task's
        return self

    async def _aopen(self) -> Any:
        """Enter as the outermost block: BEGIN, then join the stack."""
        await self._abegin()
        # Resolved again: in a db.scope() block, BEGIN gives this task a state of its own.
        _stack(self.db).append(self)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        stack = _stack(self.db)
        depth = len(stack)
        stack.pop()
        if exc_type and depth == 1:
            await self.arollback(False)
        elif depth == 1:
            try:
                await self.acommit(False)
            except Exception:
                await self.arollback(False)
                raise

    async def _abegin(self) -> None:
        args, kwargs = transaction_begin_args(self)
        db: Any = self.db
        if args or kwargs or not db._plain_begin():
            await db.run(transaction_begin, self)
        else:
            await db._arun("BEGIN")

    async def acommit(self, begin: bool = True) -> None:
        """Commit now (and begin again unless ``begin=False``)."""
        db: Any = self.db
        await self._aend("commit", "COMMIT")
        if db._async_state().commit_callbacks:
            await db.run(run_commit_callbacks, db)  # callbacks may query
        if begin:
            await self._abegin()

    async def arollback(self, begin: bool = True) -> None:
        """Roll back now (and begin again unless ``begin=False``)."""
        await self._aend("rollback", "ROLLBACK")
        del self.db._async_state().commit_callbacks[:]  # peewee's _clear_commit_callbacks
        if begin:
            await self._abegin()

    async def _aend(self, method: str, sql: str) -> None:
        """``db.commit()`` / ``db.rollback()``: their own code if a subclass replaced it."""
        db: Any = self.db
        if db._overrides(method):
            await db.run(getattr(db, method))
        else:
            await db._arun(sql, (), True)


class async_savepoint(_AsyncTransactionMixin, TRANSACTION_HELPERS.savepoint):  # type: ignore[misc,name-defined]
    """``db.savepoint()``: a savepoint inside the open transaction."""

    async def __aenter__(self) -> Any:
        await self._asql("SAVEPOINT")
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type:
            await self.arollback(False)
        else:
            try:
                await self.acommit(begin=False)
            except Exception:
                await self.arollback(begin=False)
                raise

    async def acommit(self, begin: bool = True) -> None:
        """Release the savepoint (and set it again unless ``begin=False``)."""
        await self._asql("RELEASE SAVEPOINT")
        if begin:
            await self._asql("SAVEPOINT")

    async def arollback(self, begin: bool = True) -> None:
        """Roll back to the savepoint (and set it again unless ``begin=False``)."""
        await self._asql("ROLLBACK TO SAVEPOINT")
        if begin:
            await self._asql("SAVEPOINT")

    async def _asql(self, command: str) -> None:
        """``<command> <this savepoint>;``, the statements peewee's ``_savepoint`` sends."""
        await self.db._arun(f"{command} {self.quoted_sid};")
