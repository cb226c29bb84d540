"""Plain ASGI middleware: one database scope per request.

``DatabaseMiddleware`` wraps every HTTP request and WebSocket connection in
:meth:`AsyncDatabase.scope`. Everything that runs for the request then shares
one connection: ``async def`` endpoints and dependencies, tasks they start,
and the sync ``def`` endpoints and dependencies that FastAPI/Starlette run in
their threadpool. A transaction belongs to the task that began it and the
threads it runs; sibling tasks never join it (see :meth:`AsyncDatabase.scope`).
A WebSocket holds a connection only while a transaction is open on it.

The connection is taken on the first query, so a request that fails
validation or never touches the database takes no pool slot. It goes back to
the pool when the request ends, however it ends (response sent, exception,
client gone, task cancelled), with any transaction left open rolled back.

It is a plain ASGI callable on purpose: Starlette's ``BaseHTTPMiddleware``
runs the endpoint in a second task, which would split the request's state in
two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from .core import as_databases, request_scope

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["ASGIApp", "DatabaseMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SCOPED_TYPES = frozenset({"http", "websocket"})


class DatabaseMiddleware:
    """Scope one or more databases to each HTTP request and WebSocket connection.

    With FastAPI or Starlette::

        app.add_middleware(DatabaseMiddleware, database=db)

    Or around any ASGI application: ``app = DatabaseMiddleware(app, db)``.
    Lifespan messages pass through untouched.
    """

    def __init__(self, app: ASGIApp, database: AsyncDatabase | Sequence[AsyncDatabase]) -> None:
        self.app = app
        self.databases = as_databases(database)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _SCOPED_TYPES:
            await self.app(scope, receive, send)
            return
        # A request keeps its connection from its first query to its end; a
        # WebSocket, which may idle for hours, only while a transaction is open.
        async with request_scope(self.databases, hold=scope["type"] == "http"):
            await self.app(scope, receive, send)
