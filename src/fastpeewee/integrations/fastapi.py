"""FastAPI integration: a request-scope dependency, per-request transactions,
a lifespan helper and exception handlers.

The usual set-up, with :class:`fastpeewee.integrations.asgi.DatabaseMiddleware` giving each
request its own connection state::

    app = FastAPI(lifespan=database_lifespan(db, [User, Item]))
    app.add_middleware(DatabaseMiddleware, database=db)
    add_exception_handlers(app)

Apps that prefer dependencies to middleware use
``FastAPI(dependencies=[request_scope(db)])`` instead of the middleware.
``atomic_request(db)`` runs a path operation in one transaction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from . import core
from .core import database_lifespan
from .starlette import exception_handlers

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["add_exception_handlers", "atomic_request", "database_lifespan", "request_scope"]

logger = logging.getLogger("fastpeewee.fastapi")


def request_scope(*databases: AsyncDatabase) -> Any:
    """A dependency giving each request its own connection state on ``databases``.

    The dependency alternative to :class:`~fastpeewee.integrations.asgi.DatabaseMiddleware`;
    put it in the app's (or router's) dependencies so it runs before the
    others::

        app = FastAPI(dependencies=[request_scope(db)])

    The connection is taken on the first query and given back after the
    response is sent. Returns a ``Depends`` marker.
    """
    if not databases:
        raise ValueError("request_scope needs at least one database")

    async def database_scope() -> AsyncIterator[None]:
        async with core.request_scope(databases):
            yield

    return Depends(database_scope, scope="request")


def atomic_request(database: AsyncDatabase) -> Any:
    """A dependency running the path operation in one transaction on ``database``.

    The transaction commits when the path operation returns, before the
    response is sent, and rolls back when it raises (``HTTPException``
    included). Sync ``def`` endpoints and dependencies of the request join it::

        @app.post("/transfer", dependencies=[atomic_request(db)])
        def transfer(...): ...

    Opens a request scope when the middleware has not. Returns a ``Depends``
    marker.
    """

    async def transaction() -> AsyncIterator[None]:
        async with core.request_scope([database], atomic=True):
            yield

    return Depends(transaction, scope="function")


def add_exception_handlers(app: FastAPI, *, retry_after: int = 1) -> None:
    """Answer database errors with JSON instead of a 500.

    - ``DoesNotExist`` (``Model.aget``, ``get_by_id``...) -> 404 ``"<Model> not found"``;
    - ``IntegrityError`` (unique or foreign-key conflicts) -> 409;
    - ``DataError`` (a value the database cannot store: out of range, a NUL
      character in text, bad encoding) -> 422;
    - the database unavailable (:func:`~fastpeewee.errors.is_unavailable`: the
      server down or refusing connections, a connection killed or lost,
      :class:`~fastpeewee.TransactionLost`, the pool exhausted or closed) -> 503
      with a ``Retry-After`` header of ``retry_after`` seconds. Other database
      errors (a syntax error, a missing table: bugs) stay the server's usual 500;
    - request validation errors -> FastAPI's usual 422, but one that survives a
      ``NaN``/``Infinity`` or a lone surrogate (``"\\ud800"``) in the input
      (FastAPI's own handler answers 500 there, as strict JSON cannot encode
      the offending value it echoes back).

    The bodies are ``{"detail": ...}`` like FastAPI's own errors and never
    carry SQL, parameters, DSNs or driver messages; those go to the
    ``fastpeewee.fastapi`` logger, passwords masked.
    """

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _json_safe(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)
    # FastAPI is Starlette: the same handlers, logging under fastpeewee.fastapi.
    for error_class, handler in exception_handlers(retry_after=retry_after, log=logger).items():
        app.add_exception_handler(error_class, handler)


def _json_safe(value: Any) -> Any:
    """``value`` with what strict UTF-8 JSON cannot carry spelled out: non-finite
    floats by name (``"NaN"``), lone surrogates as escapes (``"\\ud800"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    return value
