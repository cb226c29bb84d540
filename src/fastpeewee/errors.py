"""The exceptions fastpeewee adds to peewee's own tree, and driver-error translation.

Every pool error subclasses :class:`peewee.OperationalError`, so existing
``except peewee.OperationalError`` blocks keep catching them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager

import peewee

from ._peewee import DRIVER_ERRORS

__all__ = [
    "MissingGreenletBridge",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "TooManyWaiters",
    "TransactionLost",
    "UnloadedRelation",
    "mask_password",
    "translate_errors",
    "wrap_driver_error",
]

BRIDGE_HINT = (
    "Hint: in async code use the async API, e.g. `await Model.aget(...)`, "
    "`await query.aexecute()`, `await db.list(query)`, or run sync code with "
    "`await db.run(fn)`; for a lazy foreign key use `await obj.afetch(Model.field)`; "
    "for rows with the relations a pydantic schema reads use "
    "`await fastpeewee.afetch(query, Schema)`."
)


class MissingGreenletBridge(RuntimeError):
    """A blocking peewee call was made on the event-loop thread outside ``db.run``.

    Example::

        await User.aget(User.id == 1)      # not: User.get(User.id == 1)
    """


class PoolError(peewee.OperationalError):
    """Base class of the errors raised by a fastpeewee connection pool."""


class PoolTimeout(PoolError):
    """No connection became free within ``acquire_timeout`` seconds."""


class TooManyWaiters(PoolError):
    """The pool's wait queue already holds ``max_waiting`` callers."""


class PoolClosed(PoolError, peewee.InterfaceError):
    """The pool was closed while the caller used or waited for it."""


class TransactionLost(peewee.OperationalError):
    """The connection holding an open transaction broke (cancelled, killed or timed out).

    The server rolled the transaction back; nothing of it was committed.
    """


# Names peewee's own table does not know, walked along the exception's MRO.
_EXTRA_NAMES: dict[str, type[peewee.PeeweeException]] = {
    "ConnectionDoesNotExistError": peewee.OperationalError,
    "ConnectionFailureError": peewee.OperationalError,
    "CannotConnectNowError": peewee.OperationalError,
    "TooManyConnectionsError": peewee.OperationalError,
    "InvalidAuthorizationSpecificationError": peewee.OperationalError,
    "InvalidCatalogNameError": peewee.OperationalError,
    "QueryCanceledError": peewee.OperationalError,
    "PostgresError": peewee.DatabaseError,
    "MySQLError": peewee.DatabaseError,  # PyMySQL's and asyncmy's base class
}
_NAMES: dict[str, type[peewee.PeeweeException]] = {**DRIVER_ERRORS, **_EXTRA_NAMES}
_NETWORK = (OSError, EOFError, asyncio.TimeoutError)


def peewee_error_for(exc: BaseException) -> type[peewee.PeeweeException] | None:
    """Return the peewee exception class matching a driver exception, if any."""
    if isinstance(exc, peewee.PeeweeException):
        return None
    for klass in type(exc).__mro__:
        target = _NAMES.get(klass.__name__)
        if target is not None:
            return target
    if isinstance(exc, _NETWORK):
        return peewee.OperationalError
    return None


def wrap_driver_error(
    target: type[peewee.PeeweeException], exc: BaseException
) -> peewee.PeeweeException:
    """``target`` for the driver exception ``exc``, built as peewee builds it
    (``exc`` first, then its arguments), with a message when ``exc`` has none."""
    if exc.args:
        return target(exc, *exc.args)
    if isinstance(exc, asyncio.TimeoutError):
        reason = (
            "timed out: the server did not answer within the driver's timeout "
            "(command_timeout / read_timeout, or the connect timeout)"
        )
    else:
        reason = f"{type(exc).__name__} from the database driver"
    return target(exc, reason)


def mask_password(dsn: str) -> str:
    """Hide the password of a connection URL: ``postgresql://ann:***@host/db``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", dsn)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver exceptions as the matching peewee exception (``from`` the original)."""
    try:
        yield
    except Exception as exc:
        target = peewee_error_for(exc)
        if target is None:
            raise
        raise wrap_driver_error(target, exc) from exc


class UnloadedRelation(MissingGreenletBridge):
    """A schema touched a relation that was not loaded, in async code.

    Loading it there would be a blocking query on the event loop (and one
    query per row). Load rows with their relations instead::

        users = await fastpeewee.afetch(User.select(), UserRead)
    """
