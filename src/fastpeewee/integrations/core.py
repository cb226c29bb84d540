"""What every framework integration shares, importable without any web framework.

Each adapter (FastAPI, Starlette, Litestar, Quart, aiohttp, Sanic, Tornado,
WSGI) is a thin translation of three things into its framework's idiom:

- :func:`request_scope`: the request's connection state, taken on the first
  query and given back when the request ends, however it ends, with any open
  transaction rolled back; optionally one transaction around the request;
- :func:`database_lifespan`: tables at start-up, the pools warmed up, the
  pools closed at shutdown;
- :func:`error_reply` and :data:`ERROR_STATUSES`: which database error
  becomes which HTTP status, with a body that never carries SQL, parameters or
  a DSN (those are logged, passwords masked).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import peewee

from ..errors import PoolClosed, PoolError, is_unavailable, mask_password

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = [
    "ERROR_STATUSES",
    "HANDLED_ERRORS",
    "ErrorReply",
    "ErrorResponse",
    "as_databases",
    "commits",
    "database_lifespan",
    "describe_error",
    "error_reply",
    "request_scope",
]

logger = logging.getLogger("fastpeewee.integrations")


def as_databases(database: AsyncDatabase | Sequence[AsyncDatabase]) -> tuple[AsyncDatabase, ...]:
    """``database`` as a non-empty tuple (adapters accept one database or several)."""
    databases = tuple(database) if isinstance(database, Sequence) else (database,)
    if not databases:
        raise ValueError("a database integration needs at least one database")
    return databases


@asynccontextmanager
async def request_scope(
    databases: Sequence[AsyncDatabase], *, hold: bool = True, atomic: bool = False
) -> AsyncIterator[None]:
    """One request's connection state on each of ``databases``.

    Everything run inside shares the request's connection: the handler, tasks
    it starts and sync code it sends to worker threads. The connection is taken
    on the first query and given back when the block exits, however it exits
    (return, exception, cancellation), with any transaction left open rolled
    back. ``hold=False`` gives it back after each statement outside a
    transaction (for WebSockets and other long, idle connections).
    ``atomic=True`` runs the block in one transaction per database, committed
    when it returns and rolled back when it raises.
    """
    if len(databases) == 1 and not atomic:
        async with databases[0].scope(hold=hold):
            yield
        return
    async with AsyncExitStack() as stack:
        for db in databases:
            await stack.enter_async_context(db.scope(hold=hold))
        if atomic:
            for db in databases:
                await stack.enter_async_context(db.atomic())
        yield


def commits(status: int) -> bool:
    """Whether a per-request transaction commits for a response of ``status``.

    The rule of every adapter's per-request transaction: it commits for a
    success or a redirect (below 400), before the response is sent, and rolls
    back for an error status (4xx, 5xx), whether the handler raised it or
    returned it, as well as on an exception or a cancellation.
    """
    return status < 400


class ErrorResponse(Exception):
    """Rolls a per-request transaction back for an error response that still goes out.

    Adapters raise it inside the transaction and catch it outside; ``response``
    is what to send, when the adapter needs it back.
    """

    def __init__(self, status: int | str, response: Any = None) -> None:
        super().__init__(f"error response ({status}): the request's transaction rolls back")
        self.status = status
        self.response = response


def database_lifespan(
    database: AsyncDatabase | Sequence[AsyncDatabase],
    models: Iterable[type[peewee.Model]] = (),
    *,
    safe: bool = True,
    warm: bool = True,
) -> Callable[..., AbstractAsyncContextManager[None]]:
    """A lifespan: create ``models``' tables and warm the pools at start-up,
    close the pools at shutdown.

    The result takes the application as an optional argument, so it fits the
    frameworks that pass one (Starlette, FastAPI, Litestar, aiohttp's
    ``cleanup_ctx`` through its adapter) and those that do not::

        app = Starlette(lifespan=database_lifespan(db, [User, Item]))

        async with database_lifespan(db, [User, Item])():
            ...

    Tables go to the first database, created in one transaction under
    :data:`~fastpeewee.locks.SCHEMA_LOCK`, so that the workers of one app
    starting at once take turns (see :mod:`fastpeewee.locks`). ``warm`` opens each pool's
    ``pool_min_size`` connections before the first request arrives.
    """
    databases = as_databases(database)
    models = list(models)

    @asynccontextmanager
    async def lifespan(app: Any = None) -> AsyncIterator[None]:
        try:
            if models:
                await databases[0].acreate_tables(models, safe=safe)
            if warm:
                for db in databases:
                    await db.warm_pool()
            yield
        finally:
            for db in databases:
                await db.close_pool()

    return lifespan


@dataclass(frozen=True)
class ErrorReply:
    """The HTTP answer to a database error: a status, a ``detail`` and headers.

    ``body`` is the JSON-able body every adapter sends: ``{"detail": ...}``,
    the shape of FastAPI's own errors.
    """

    status: int
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, str]:
        """``{"detail": detail}``."""
        return {"detail": self.detail}


ERROR_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (peewee.DoesNotExist, 404),
    (peewee.IntegrityError, 409),
    (peewee.DataError, 422),
    (PoolError, 503),
)
"""Database error classes and the status each means, most specific first.

The rest of peewee's tree (``DatabaseError``, ``InterfaceError``) is 503 when
:func:`~fastpeewee.errors.is_unavailable` says the database cannot serve now,
and otherwise not mapped: a syntax error or a missing table is a bug, a 500.
"""

HANDLED_ERRORS: tuple[type[Exception], ...] = (
    *(cls for cls, _ in ERROR_STATUSES),
    peewee.DatabaseError,
    peewee.InterfaceError,
)
"""The classes an adapter registers its error handler for: the mapped ones and the
rest of peewee's tree, which :func:`error_reply` answers with 503 when the
database is unavailable and leaves to the framework's 500 otherwise."""

_DETAILS = {
    409: "The request conflicts with existing data.",
    422: "A value in the request cannot be stored by the database.",
}


def error_reply(
    exc: BaseException,
    *,
    retry_after: int = 1,
    request: str = "",
    log: logging.Logger = logger,
) -> ErrorReply | None:
    """The answer to ``exc``, or None when it is no database error to map.

    404 ``"<Model> not found"`` for ``DoesNotExist``; 409 for an integrity
    conflict; 422 for a value the database cannot store; 503 with a
    ``Retry-After`` of ``retry_after`` seconds when the database is unavailable
    (down, connection killed or lost, pool exhausted or closed, transaction
    lost). None for other errors, programming errors included: those stay the
    framework's usual 500. ``request`` (``"GET /items"``) goes into the log
    line written to ``log`` for 409, 422 (info) and 503 (warning).
    """
    status = _status(exc)
    if status is None:
        return None
    if status == 404:
        name = type(exc).__name__.removesuffix("DoesNotExist") or "Object"
        return ErrorReply(404, f"{name} not found")
    where = f" on {request}" if request else ""
    if status == 503:
        log.warning("database unavailable%s: %s", where, describe_error(exc))
        return ErrorReply(503, _unavailable_detail(exc), {"Retry-After": str(retry_after)})
    kind = "integrity" if status == 409 else "data"
    log.info("%s error%s: %s", kind, where, describe_error(exc))
    return ErrorReply(status, _DETAILS[status])


def _status(exc: BaseException) -> int | None:
    for cls, status in ERROR_STATUSES:
        if isinstance(exc, cls):
            return status
    if isinstance(exc, (peewee.DatabaseError, peewee.InterfaceError)) and is_unavailable(exc):
        return 503
    return None


def _unavailable_detail(exc: BaseException) -> str:
    if isinstance(exc, PoolClosed):
        return "The database is shutting down."
    if isinstance(exc, PoolError):
        return "The database is busy; retry shortly."
    return "The database is unavailable; retry shortly."


def describe_error(exc: BaseException) -> str:
    """``exc`` for a log line: its class, the driver's class, the message; passwords masked."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f" (from {type(cause).__module__}.{type(cause).__qualname__})"
    return mask_password(text)
