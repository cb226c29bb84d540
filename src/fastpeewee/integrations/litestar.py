"""Litestar integration: a middleware (optionally one transaction per request),
exception handlers, lifespan and dependency injection of the database.

The usual set-up::

    app = Litestar(
        route_handlers=[...],
        middleware=[DatabaseMiddleware(db)],
        exception_handlers=exception_handlers(retry_after=1),
        lifespan=[database_lifespan(db, [User, Item])],
        dependencies={"db": provide_database(db)},
    )

:class:`DatabaseMiddleware` is an ``ASGIMiddleware``: it runs in the
request's own task, as do the handler, its dependencies and the threads of
``sync_to_thread`` handlers, so they all share the request's connection
state. Per-request transactions use Litestar's layered middleware: put
``atomic_request(db)`` on a handler, controller or router
(``@post("/", middleware=[atomic_request(db)])``), or
``DatabaseMiddleware(db, atomic=True)`` on the whole app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions.responses import create_debug_response, create_exception_response
from litestar.middleware import ASGIMiddleware

from . import core
from .core import HANDLED_ERRORS, ErrorResponse, commits, database_lifespan, error_reply

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from ..database import AsyncDatabase

__all__ = [
    "DatabaseMiddleware",
    "atomic_request",
    "database_lifespan",
    "exception_handlers",
    "provide_database",
]

logger = logging.getLogger("fastpeewee.litestar")

ExceptionHandler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


class DatabaseMiddleware(ASGIMiddleware):
    """Scope ``database`` (one or several) to each HTTP request and WebSocket.

    ``Litestar(middleware=[DatabaseMiddleware(db)])``. A request keeps its
    connection from its first query to its end, however it ends, with any
    transaction left open rolled back; a request that never queries takes no
    connection. A WebSocket holds one only while a transaction is open.

    ``atomic=True`` also runs each HTTP request in one transaction per
    database. Litestar turns a handler's exception into a response *inside*
    the middleware stack, so the middleware judges by the response: the
    transaction is committed when the response starts with a status below 400
    (before the client sees it) and rolled back on an error status, on an
    exception that escapes, and on cancellation.
    """

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(
        self, database: AsyncDatabase | Sequence[AsyncDatabase], *, atomic: bool = False
    ) -> None:
        self.databases = core.as_databases(database)
        self.atomic = atomic

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Run ``next_app`` in the request's scope (and transaction, with ``atomic``)."""
        http = scope["type"] == ScopeType.HTTP
        async with core.request_scope(self.databases, hold=http):
            if not (http and self.atomic):
                await next_app(scope, receive, send)
                return
            transactions = [db.atomic() for db in self.databases]
            for transaction in transactions:
                await transaction.__aenter__()
            pending = True

            async def finish(exc: BaseException | None) -> None:
                nonlocal pending
                pending = False
                for transaction in reversed(transactions):
                    if exc is None:
                        await transaction.__aexit__(None, None, None)
                    else:
                        await transaction.__aexit__(type(exc), exc, exc.__traceback__)

            async def send_after_commit(message: Message) -> None:
                if pending and message["type"] == "http.response.start":
                    await finish(
                        None if commits(message["status"]) else ErrorResponse(message["status"])
                    )
                await send(message)

            try:
                await next_app(scope, receive, send_after_commit)
            except BaseException as exc:
                if pending:
                    await finish(exc)
                raise
            if pending:  # the app sent no response at all
                await finish(ErrorResponse("no response"))


def atomic_request(database: AsyncDatabase | Sequence[AsyncDatabase]) -> DatabaseMiddleware:
    """Middleware running a handler (controller, router) in one transaction per database.

    ``@post("/transfer", middleware=[atomic_request(db)])``: committed when the
    response starts with a status below 400, rolled back otherwise (see
    :class:`DatabaseMiddleware`). Nests inside an app-level
    :class:`DatabaseMiddleware`, or opens the request scope itself.
    """
    return DatabaseMiddleware(database, atomic=True)


def provide_database(database: AsyncDatabase) -> Provide:
    """A dependency provider handing ``database`` to handlers that ask for it.

    ``Litestar(dependencies={"db": provide_database(db)})``, then
    ``async def handler(db: NamedDependency[AsyncDatabase]) -> ...``.
    """

    def provide() -> Any:  # Any: Litestar evaluates this hint at run time
        return database

    return Provide(provide, use_cache=True, sync_to_thread=False)


def exception_handlers(*, retry_after: int = 1) -> dict[int | type[Exception], ExceptionHandler]:
    """Handlers answering database errors, for ``Litestar(exception_handlers=...)``.

    - ``DoesNotExist`` -> 404 ``{"detail": "<Model> not found"}``;
    - ``IntegrityError`` -> 409; ``DataError`` -> 422;
    - the database unavailable (down, connection killed, pool exhausted or
      closed) -> 503 with ``Retry-After: <retry_after>``;
    - any other database error (a syntax error, a missing table: a bug) gets
      Litestar's own 500 (its debug page when ``debug=True``).

    Bodies never carry SQL, parameters or DSNs; those go to the
    ``fastpeewee.litestar`` logger, passwords masked. Merge the result with your
    own handlers: ``{**exception_handlers(), ValueError: mine}``.
    """

    def database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        reply = error_reply(
            exc,
            retry_after=retry_after,
            request=f"{request.method} {request.url.path}",
            log=logger,
        )
        if reply is None:
            # A bug, not an outage: what Litestar answers when no handler matches.
            if request.app.debug:
                return create_debug_response(request, exc)
            return create_exception_response(request, exc)
        return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))

    return {cls: database_error for cls in HANDLED_ERRORS}
