"""Sanic integration: a database scope per request, per-request transactions,
start-up and shutdown listeners and error handlers, set up in one call::

    app = Sanic("app")
    setup(app, db, models=[User, Item])

Sanic serves all the requests of a kept-alive connection in one asyncio task,
so anything a request leaves in the task's context (a connection, an open
transaction) would be found by the next request on the same socket. The scope
is therefore entered and left by Sanic's inline lifecycle signals, which run
in that task, and it is left on every path a request can end by:

- ``http.lifecycle.handle`` (before routing): leftovers of the connection's
  previous request, if any, are rolled back and released; the request's scope
  opens (nothing is taken from the pool until the first query);
- ``http.handler.before``: the request's transaction begins, when asked for;
- ``http.lifecycle.response`` (after the response middleware, before the
  response is sent): the transaction commits (a failed commit becomes the
  error response, never a false success) or rolls back after an exception or
  an error response (4xx, 5xx), and the connection goes back to the pool;
- ``http.lifecycle.exception`` when part of the response was already sent
  (Sanic then sends no other response): rolled back and released at once;
- ``http.lifecycle.complete`` (the connection closed: client gone, the task
  cancelled by a timeout or a disconnect): whatever is still open is rolled
  back and released.

In ASGI mode (``uvicorn app:app``) the ASGI server runs each request in a task
of its own and cancels it without a Sanic signal; wrap the app in
:class:`~fastpeewee.integrations.asgi.DatabaseMiddleware` there
(``asgi_app = DatabaseMiddleware(app, db)``): the signals' scope then joins the
middleware's, which ends with the request whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import peewee
from sanic import HTTPResponse, Request, Sanic
from sanic.models.server_types import ConnInfo
from sanic.response import json

from . import core
from .core import (
    HANDLED_ERRORS,
    ErrorResponse,
    as_databases,
    commits,
    database_lifespan,
    error_reply,
)

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["add_error_handlers", "add_lifespan", "add_request_scope", "database_lifespan", "setup"]

logger = logging.getLogger("fastpeewee.sanic")

_SLOT = "fastpeewee_scope"  # attribute of request.ctx and conn_info.ctx


class _Scope:
    """One request's open scope: its exit stack and why it must roll back."""

    __slots__ = ("conn_info", "failure", "stack")

    def __init__(self, conn_info: ConnInfo | None) -> None:
        self.stack = AsyncExitStack()
        self.failure: BaseException | None = None
        self.conn_info = conn_info

    async def close(self, failure: BaseException | None = None) -> None:
        """Leave the scope: commit when ``failure`` (or the recorded one) is
        None, else roll back. Runs once."""
        if self.conn_info is not None and getattr(self.conn_info.ctx, _SLOT, None) is self:
            delattr(self.conn_info.ctx, _SLOT)
        failure = failure or self.failure
        if failure is None:
            await self.stack.aclose()  # a failed commit raises: the error response follows
            return
        try:
            await self.stack.__aexit__(type(failure), failure, failure.__traceback__)
        except Exception:
            logger.exception("rolling back a request's transaction failed")


def add_request_scope(
    app: Sanic[Any, Any],
    database: AsyncDatabase | Sequence[AsyncDatabase],
    *,
    atomic: bool = False,
) -> None:
    """Give each request of ``app`` its own connection state on ``database``.

    Every part of a request (request and response middleware, the handler,
    tasks it starts, sync code it sends to threads with ``asyncio.to_thread``)
    shares one connection, taken on the first query. ``atomic=True`` runs each
    handler, with the response middleware, in one transaction per database,
    committed before the response is sent and rolled back when something
    raises or the response is an error (4xx, 5xx). A route can ask for it alone with
    ``@app.post("/path", ctx_atomic=True)``.

    WebSocket routes hold a connection only while a transaction is open.
    """
    databases = as_databases(database)

    async def open_scope(request: Request) -> None:
        conn_info = request.conn_info
        if conn_info is not None:
            leftover = getattr(conn_info.ctx, _SLOT, None)
            if leftover is not None:
                await leftover.close(ErrorResponse("no response"))
        scope = _Scope(conn_info)
        websocket = request.headers.get("upgrade", "").lower() == "websocket"
        await scope.stack.enter_async_context(core.request_scope(databases, hold=not websocket))
        setattr(request.ctx, _SLOT, scope)
        if conn_info is not None:
            setattr(conn_info.ctx, _SLOT, scope)

    async def begin(request: Request) -> None:
        scope = getattr(request.ctx, _SLOT, None)
        if scope is None:
            return
        route = request.route
        if atomic or (route is not None and getattr(route.ctx, "atomic", False)):
            for db in databases:
                await scope.stack.enter_async_context(db.atomic())

    async def on_exception(request: Request, exception: BaseException) -> None:
        scope = getattr(request.ctx, _SLOT, None)
        if scope is None:
            return
        scope.failure = scope.failure or exception
        if request.responded:
            # Sanic sends no other response now, so no response signal comes.
            delattr(request.ctx, _SLOT)
            await scope.close()

    async def on_response(request: Request, response: HTTPResponse) -> None:
        scope = getattr(request.ctx, _SLOT, None)
        if scope is None:
            return
        delattr(request.ctx, _SLOT)
        failed = not commits(response.status) and scope.failure is None
        await scope.close(ErrorResponse(response.status) if failed else None)

    async def on_complete(conn_info: ConnInfo) -> None:
        leftover = getattr(conn_info.ctx, _SLOT, None)
        if leftover is not None:
            await leftover.close(ErrorResponse("connection closed"))

    app.signal("http.lifecycle.handle")(open_scope)
    app.signal("http.handler.before")(begin)
    app.signal("http.lifecycle.exception")(on_exception)
    app.signal("http.lifecycle.response")(on_response)
    app.signal("http.lifecycle.complete")(on_complete)


def add_lifespan(
    app: Sanic[Any, Any],
    database: AsyncDatabase | Sequence[AsyncDatabase],
    models: Iterable[type[peewee.Model]] = (),
    *,
    safe: bool = True,
    warm: bool = True,
) -> None:
    """Run :func:`~fastpeewee.integrations.core.database_lifespan` with the server:
    ``models``' tables created and the pools warmed in ``before_server_start``,
    the pools closed in ``after_server_stop``."""
    lifespan = database_lifespan(database, models, safe=safe, warm=warm)
    running: list[Any] = []

    async def start(app: Sanic[Any, Any]) -> None:
        context = lifespan(app)
        await context.__aenter__()
        running.append(context)

    async def stop(app: Sanic[Any, Any]) -> None:
        while running:
            await running.pop().__aexit__(None, None, None)

    app.register_listener(start, "before_server_start")
    app.register_listener(stop, "after_server_stop")


def add_error_handlers(app: Sanic[Any, Any], *, retry_after: int = 1) -> None:
    """Answer database errors through ``app.error_handler`` with JSON ``{"detail": ...}``.

    404 ``"<Model> not found"`` for ``DoesNotExist``, 409 for an integrity
    conflict, 422 for a value the database cannot store, 503 with a
    ``Retry-After`` of ``retry_after`` seconds when the database is
    unavailable (see :func:`~fastpeewee.integrations.core.error_reply`). Other
    errors, database bugs included, keep Sanic's own 500. Bodies never carry
    SQL, parameters or DSNs; those go to the ``fastpeewee.sanic`` logger.
    """

    def database_error(request: Request, exception: Exception) -> HTTPResponse:
        reply = error_reply(
            exception,
            retry_after=retry_after,
            request=f"{request.method} {request.path}",
            log=logger,
        )
        if reply is None:
            return app.error_handler.default(request, exception)
        return json(reply.body, status=reply.status, headers=dict(reply.headers))

    for error_class in HANDLED_ERRORS:
        app.error_handler.add(error_class, database_error)


def setup(
    app: Sanic[Any, Any],
    database: AsyncDatabase | Sequence[AsyncDatabase],
    *,
    models: Iterable[type[peewee.Model]] = (),
    atomic: bool = False,
    retry_after: int = 1,
    lifespan: bool = True,
) -> None:
    """Everything at once: :func:`add_request_scope`, :func:`add_lifespan`
    (unless ``lifespan=False``) and :func:`add_error_handlers`. Call it before
    the server starts."""
    add_request_scope(app, database, atomic=atomic)
    if lifespan:
        add_lifespan(app, database, models)
    add_error_handlers(app, retry_after=retry_after)
