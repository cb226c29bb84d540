"""Starlette integration (without FastAPI): middleware, lifespan, per-endpoint
transactions and exception handlers.

The usual set-up::

    app = Starlette(
        routes=[...],
        middleware=[Middleware(DatabaseMiddleware, database=db)],
        exception_handlers=exception_handlers(retry_after=1),
        lifespan=database_lifespan(db, [User, Item]),
    )

:class:`~fastpeewee.integrations.asgi.DatabaseMiddleware` is a plain ASGI
middleware, so the endpoint runs in the request's own task and shares its
connection state (Starlette's ``BaseHTTPMiddleware`` would run it in another
task). ``@atomic_request(db)`` runs one endpoint in a transaction that is
committed when the endpoint returns, before the response is sent.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import core
from .asgi import DatabaseMiddleware
from .core import HANDLED_ERRORS, ErrorResponse, commits, database_lifespan, error_reply

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = [
    "DatabaseMiddleware",
    "add_exception_handlers",
    "atomic_request",
    "database_lifespan",
    "exception_handlers",
]

logger = logging.getLogger("fastpeewee.starlette")

R = TypeVar("R", bound=Response)
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def atomic_request(
    database: AsyncDatabase | Sequence[AsyncDatabase],
) -> Callable[[Callable[..., Awaitable[R] | R]], Callable[..., Awaitable[R]]]:
    """Run a Starlette endpoint in one transaction per database.

    A decorator, because Starlette endpoints are plain functions returning a
    response object: the transaction is committed when the endpoint returns,
    *before* the response is sent, so a client never sees a success the
    database did not keep::

        @atomic_request(db)
        async def transfer(request: Request) -> JSONResponse: ...

    It rolls back when the endpoint raises (``HTTPException`` included) and
    when it returns a response with an error status (400 and above), so
    ``raise HTTPException(400)`` and ``return JSONResponse(..., 400)`` agree.
    A sync ``def`` endpoint runs in Starlette's threadpool inside the
    transaction; the methods of an ``HTTPEndpoint`` can be decorated too.
    Without :class:`DatabaseMiddleware` the decorator opens the request scope
    itself.
    """
    databases = core.as_databases(database)

    def decorate(endpoint: Callable[..., Awaitable[R] | R]) -> Callable[..., Awaitable[R]]:
        is_async = _is_async(endpoint)

        @functools.wraps(endpoint)
        async def transactional(*args: Any) -> R:
            response: R | None = None
            try:
                async with core.request_scope(databases, atomic=True):
                    if is_async:
                        response = await endpoint(*args)  # type: ignore[misc]
                    else:
                        response = await run_in_threadpool(endpoint, *args)  # type: ignore[arg-type]
                    assert response is not None
                    if not commits(response.status_code):
                        raise ErrorResponse(response.status_code)
            except ErrorResponse:
                pass  # rolled back; the endpoint's own error response goes out
            assert response is not None
            return response

        return transactional

    return decorate


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


def exception_handlers(
    *, retry_after: int = 1, log: logging.Logger = logger
) -> dict[type[Exception], ExceptionHandler]:
    """Handlers answering database errors with JSON, for ``Starlette(exception_handlers=...)``.

    - ``DoesNotExist`` -> 404 ``{"detail": "<Model> not found"}``;
    - ``IntegrityError`` -> 409; ``DataError`` -> 422;
    - the database unavailable (down, connection killed, pool exhausted or
      closed) -> 503 with ``Retry-After: <retry_after>``;
    - any other database error (a syntax error, a missing table: a bug) is
      re-raised and stays Starlette's usual 500.

    Bodies never carry SQL, parameters or DSNs; those go to the
    ``fastpeewee.starlette`` logger (or ``log``), passwords masked. Merge the result with
    your own handlers: ``{**exception_handlers(), 404: not_found}``.
    """

    async def database_error(request: Request, exc: Exception) -> Response:
        reply = error_reply(
            exc,
            retry_after=retry_after,
            request=f"{request.method} {request.url.path}",
            log=log,
        )
        if reply is None:
            # Not an outage: re-raised, it reaches ServerErrorMiddleware's 500.
            raise exc
        return JSONResponse(reply.body, status_code=reply.status, headers=dict(reply.headers))

    return {cls: database_error for cls in HANDLED_ERRORS}


def add_exception_handlers(app: Starlette, *, retry_after: int = 1) -> None:
    """Register :func:`exception_handlers` on an existing ``app``."""
    handlers: Mapping[type[Exception], ExceptionHandler] = exception_handlers(
        retry_after=retry_after
    )
    for cls, handler in handlers.items():
        app.add_exception_handler(cls, handler)
