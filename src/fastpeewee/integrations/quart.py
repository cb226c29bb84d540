"""Quart integration: a request scope, per-request transactions, a lifespan and
error handlers, installed Flask-extension style by :func:`init_app`::

    app = Quart(__name__)
    init_app(app, db, models=[User, Item])

Where each part lives, and why:

- **The request scope** wraps ``app.asgi_app`` with
  :class:`~fastpeewee.integrations.asgi.DatabaseMiddleware`, not a
  ``before_request``/``teardown_request`` pair. Quart runs the view in a task
  of its own and sends the response body *after* ``teardown_request`` has run,
  and it cancels that task when the client disconnects: only the ASGI call
  spans the whole request (streamed bodies and disconnects included). The view's
  task and the sync views Quart sends to its executor inherit the scope, so
  they share the request's one connection.
- **The transaction** (``atomic=True``) must belong to the view's task, so it is
  begun in ``before_request`` and ended in ``after_request`` (commit when the
  response is a success or a redirect, status < 400; roll back on an error
  response, ``abort()`` and mapped database errors included), with
  ``teardown_request`` rolling back what a cancelled or failed request left.
- **The lifespan** is a ``while_serving`` generator around
  :func:`~fastpeewee.integrations.core.database_lifespan`.
- **Errors** go through ``app.register_error_handler``: database errors become
  JSON ``{"detail": ...}`` answers (404, 409, 422, 503 with ``Retry-After``);
  any other one stays Quart's 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import peewee
from quart import Quart, Response, request

from .asgi import DatabaseMiddleware
from .core import (
    HANDLED_ERRORS,
    ErrorResponse,
    as_databases,
    commits,
    database_lifespan,
    error_reply,
    request_scope,
)

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["add_error_handlers", "atomic_requests", "database_lifespan", "init_app"]

logger = logging.getLogger("fastpeewee.quart")

EXTENSION = "fastpeewee"
"""The key of ``app.extensions`` under which :func:`init_app` leaves the app's databases."""


def init_app(
    app: Quart,
    database: AsyncDatabase | Sequence[AsyncDatabase],
    *,
    models: Iterable[type[peewee.Model]] = (),
    atomic: bool = False,
    retry_after: int = 1,
    warm: bool = True,
) -> None:
    """Install fastpeewee on ``app``: request scope, lifespan, error handlers.

    - every HTTP request (and WebSocket) gets its own connection state on each
      database, taken on its first query and given back when the request ends,
      however it ends, with anything left open rolled back;
    - while the app is served: ``models``' tables are created and the pools
      warmed at start-up, the pools closed at shutdown;
    - ``atomic=True`` runs each HTTP request in one transaction per database
      (see :func:`atomic_requests`);
    - database errors are answered as :func:`add_error_handlers` says, with
      ``Retry-After: retry_after`` on a 503.

    Call it once per app, before the app is served. ``app.extensions["fastpeewee"]``
    then holds the databases.
    """
    databases = as_databases(database)
    if EXTENSION in app.extensions:
        raise RuntimeError("fastpeewee is already installed on this app: call init_app once")
    app.extensions[EXTENSION] = databases
    # The ASGI call spans the whole request; see the module docstring.
    app.asgi_app = DatabaseMiddleware(app.asgi_app, databases)  # type: ignore[method-assign,assignment,arg-type]
    lifespan = database_lifespan(databases, models, warm=warm)

    async def serving() -> AsyncGenerator[None, None]:
        async with lifespan(app):
            yield

    app.while_serving(serving)
    if atomic:
        atomic_requests(app, databases)
    add_error_handlers(app, retry_after=retry_after)


def atomic_requests(app: Quart, database: AsyncDatabase | Sequence[AsyncDatabase]) -> None:
    """Run each HTTP request of ``app`` in one transaction per database.

    The transaction begins before the first ``before_request`` function the app
    registers after this call, and ends after every other ``after_request``
    function has run, before the response is sent:

    - committed when the response status is below 400;
    - rolled back on an error response: ``abort(...)``, a raised exception
      (answered by an error handler or Quart's 500), a returned 4xx/5xx;
    - rolled back when the request is cancelled (the client disconnected) or
      ``teardown_request`` runs with the transaction still open.

    Sync views (run in Quart's executor) and ``asyncio.to_thread`` calls join
    it. A commit that fails is answered like a database error raised by the
    view (a 409, a 503...). :func:`init_app` calls this for ``atomic=True``.
    """
    databases = as_databases(database)
    current: ContextVar[AbstractAsyncContextManager[None] | None] = ContextVar(
        "fastpeewee_quart_transaction", default=None
    )

    async def begin() -> None:
        transaction = request_scope(databases, atomic=True)
        await transaction.__aenter__()
        current.set(transaction)

    async def end(response: Response) -> Response:
        transaction = current.get()
        if transaction is None:
            return response
        current.set(None)
        if not commits(response.status_code):
            error = ErrorResponse(response.status_code)
            await transaction.__aexit__(type(error), error, None)
            return response
        try:
            await transaction.__aexit__(None, None, None)
        except Exception as exc:
            reply = error_reply(exc, request=_describe_request(), log=logger)
            if reply is None:
                raise
            return _json_response(reply.body, reply.status, reply.headers)
        return response

    async def abandon(exc: BaseException | None) -> None:
        transaction = current.get()
        if transaction is None:
            return
        current.set(None)
        error = exc if exc is not None else ErrorResponse("no response")
        await transaction.__aexit__(type(error), error, error.__traceback__)

    app.before_request(begin)
    app.after_request(end)
    app.teardown_request(abandon)


def add_error_handlers(app: Quart, *, retry_after: int = 1) -> None:
    """Answer database errors with JSON ``{"detail": ...}`` instead of a 500.

    ``DoesNotExist`` -> 404 ``"<Model> not found"``; ``IntegrityError`` -> 409;
    ``DataError`` -> 422; the database unavailable (down, connection killed,
    pool exhausted or closed) -> 503 with ``Retry-After: retry_after``. Other
    database errors (bugs: a syntax error, a missing table) and other
    exceptions stay Quart's 500. Bodies never carry SQL, parameters or DSNs;
    those go to the ``fastpeewee.quart`` logger, passwords masked.
    """

    async def database_error(exc: Exception) -> Response:
        reply = error_reply(exc, retry_after=retry_after, request=_describe_request(), log=logger)
        if reply is None:
            raise exc  # not ours to answer: Quart's usual 500 (logged with its traceback)
        return _json_response(reply.body, reply.status, reply.headers)

    for error_class in HANDLED_ERRORS:
        app.register_error_handler(error_class, database_error)


def _describe_request() -> str:
    return f"{request.method} {request.path}"


def _json_response(body: Any, status: int, headers: Any) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers), content_type="application/json"
    )
