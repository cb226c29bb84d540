"""aiohttp integration: a middleware giving each request its connection state
(and, optionally, one transaction) and answering database errors, plus a
``cleanup_ctx`` lifespan. :func:`setup` installs both::

    app = web.Application()
    setup(app, db, models=[User, Item])

aiohttp has no exception-handler registry, so the middleware does the mapping:
``DoesNotExist`` -> 404, ``IntegrityError`` -> 409, ``DataError`` -> 422, the
database unavailable -> 503 with ``Retry-After``, as JSON ``{"detail": ...}``.

The middleware runs in the handler's own task, so the handler, tasks it starts
and sync code it sends to threads (``asyncio.to_thread``) share the request's
one connection. It is given back when the handler ends, however it ends. When
the client disconnects, aiohttp (>= 3.9, ``handler_cancellation=False``, the
default of ``web.run_app`` and ``AppRunner``) lets the handler run to its end:
the connection is held until then and the handler's work, a transaction
included, completes as if the client were there. With
``handler_cancellation=True`` (``web.run_app(app, handler_cancellation=True)``;
aiohttp's ``TestServer``) the handler is cancelled at once: the connection goes
back, its open transaction rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import peewee
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .core import (
    ErrorResponse,
    as_databases,
    commits,
    database_lifespan,
    error_reply,
    request_scope,
)

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["DATABASES", "database_lifespan", "database_middleware", "setup"]

logger = logging.getLogger("fastpeewee.aiohttp")

DATABASES: web.AppKey[tuple[Any, ...]] = web.AppKey("fastpeewee_databases")
"""Where :func:`setup` leaves the app's databases: ``app[DATABASES]``."""


def database_middleware(
    database: AsyncDatabase | Sequence[AsyncDatabase],
    *,
    atomic: bool = False,
    retry_after: int = 1,
) -> Middleware:
    """A ``@web.middleware`` scoping each request to its own connection state.

    - The connection is taken on the request's first query and given back when
      the handler ends (response, exception, cancellation), with any
      transaction left open rolled back. A WebSocket handler (an ``Upgrade:
      websocket`` request) holds a connection only while a transaction is open.
    - ``atomic=True`` runs each HTTP request in one transaction per database:
      committed when the handler returns a response with a status below 400,
      rolled back when it raises (``web.HTTPException`` included) or returns
      an error response. A commit that fails is answered like any database error.
    - Database errors become JSON answers (see the module docstring), with
      ``Retry-After: retry_after`` on a 503. Any other exception goes on to
      aiohttp (its 500, or the answer of a ``web.HTTPException``). Bodies never
      carry SQL, parameters or DSNs; those go to the ``fastpeewee.aiohttp``
      logger, passwords masked.

    Where it sits in ``app.middlewares`` decides what it covers: put it first
    (outermost) so the other middlewares' queries share the request's connection.
    """
    databases = as_databases(database)

    @web.middleware
    async def fastpeewee_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        websocket = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        try:
            async with request_scope(
                databases, hold=not websocket, atomic=atomic and not websocket
            ):
                response = await handler(request)
                if atomic and not commits(response.status):
                    raise ErrorResponse(response.status, response)  # roll back, then answer it
                return response
        except ErrorResponse as error:
            response = error.response
            assert isinstance(response, web.StreamResponse)
            return response
        except Exception as exc:
            reply = error_reply(
                exc,
                retry_after=retry_after,
                request=f"{request.method} {request.path}",
                log=logger,
            )
            if reply is None:
                raise
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    return fastpeewee_middleware


def setup(
    app: web.Application,
    database: AsyncDatabase | Sequence[AsyncDatabase],
    *,
    models: Iterable[type[peewee.Model]] = (),
    atomic: bool = False,
    retry_after: int = 1,
    warm: bool = True,
) -> None:
    """Install fastpeewee on ``app``: the middleware and the lifespan.

    Appends :func:`database_middleware` to ``app.middlewares`` (call it before
    adding middlewares that use the database, so it wraps them) and a
    ``cleanup_ctx`` entry that creates ``models``' tables and warms the pools
    at start-up and closes the pools at cleanup. ``app[DATABASES]`` holds the
    databases afterwards.
    """
    databases = as_databases(database)
    if DATABASES in app:
        raise RuntimeError("fastpeewee is already set up on this app: call setup once")
    app[DATABASES] = databases
    app.middlewares.append(database_middleware(databases, atomic=atomic, retry_after=retry_after))
    app.cleanup_ctx.append(database_lifespan(databases, models, warm=warm))
