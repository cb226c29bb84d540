"""Tornado integration: a ``RequestHandler`` mixin giving each request its own
connection state (optionally one transaction), JSON answers to database
errors, and a lifespan for the server's start-up and shutdown::

    class UserHandler(DatabaseHandlerMixin, tornado.web.RequestHandler):
        async def get(self, user_id):
            self.write({"name": (await User.aget_by_id(int(user_id))).username})

    app = tornado.web.Application([(r"/users/(\\d+)", UserHandler)], database=db)
    async with lifespan(app, [User]):
        app.listen(8888, "127.0.0.1")
        await asyncio.Event().wait()

Tornado runs each request in an asyncio task of its own (``prepare()``, the
verb method and ``finish()``/``on_finish()`` all run in it, one context), so a
scope entered in ``prepare()`` is seen by the verb method, the tasks it starts
and the sync code it sends to threads. ``on_finish()`` is a sync callback (and
runs inside the verb when it calls ``self.finish()`` itself), so the scope
cannot be left there: the mixin wraps the verb methods of its subclasses
(``__init_subclass__``) and leaves the scope when the verb returns or raises,
in the request's task, before Tornado finishes the response. When
``prepare()`` raises or finishes the request itself, the scope is left right
after ``prepare()``. When the client disconnects mid-request,
``on_connection_close()`` cancels the request's task (``cancel_on_disconnect``),
which leaves the scope with the transaction rolled back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from inspect import isawaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import peewee
import tornado.web

from . import core
from .core import ErrorReply, ErrorResponse, as_databases, commits, error_reply

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["DatabaseHandlerMixin", "lifespan"]

logger = logging.getLogger("fastpeewee.tornado")

_VERBS = tuple(m.lower() for m in tornado.web.RequestHandler.SUPPORTED_METHODS)
_WRAPPED = "__fastpeewee_scoped__"


def _settings_databases(settings: dict[str, Any]) -> tuple[AsyncDatabase, ...]:
    database = settings.get("database")
    if database is None:
        raise LookupError(
            "no database for this handler: set `database = db` on the handler class "
            "or pass `database=db` to tornado.web.Application(...)"
        )
    return as_databases(database)


class DatabaseHandlerMixin:
    """Mix into a ``tornado.web.RequestHandler`` (before it in the bases) to scope
    each request's database work.

    - ``database``: the database (or a list of them); when None, the
      application setting ``database`` is used.
    - ``atomic``: run ``prepare()`` and the verb method in one transaction per
      database, committed when the verb returns (before the response is
      finished: a failed commit becomes the error response) and rolled back
      when it raises (``HTTPError`` included) or leaves an error status (4xx, 5xx). The
      application setting ``database_atomic`` sets it for every handler. Do not
      call ``self.finish()``/``self.flush()`` inside an atomic verb: what is
      flushed is sent before the commit.
    - ``retry_after``: the ``Retry-After`` seconds of a 503.
    - ``cancel_on_disconnect``: cancel the request's task when the client goes
      away, so its connection goes back to the pool at once.

    Database errors become JSON ``{"detail": ...}`` answers (404, 409, 422,
    503 with ``Retry-After``; see
    :func:`~fastpeewee.integrations.core.error_reply`) through ``write_error``;
    other errors keep Tornado's own answer. Handlers with
    ``@stream_request_body`` open the scope in the verb method, not in
    ``prepare()``.
    """

    database: ClassVar[AsyncDatabase | Sequence[AsyncDatabase] | None] = None
    atomic: ClassVar[bool | None] = None
    retry_after: ClassVar[int] = 1
    cancel_on_disconnect: ClassVar[bool] = True

    _database_stack: AsyncExitStack | None = None
    _database_task: asyncio.Task[Any] | None = None
    _database_depth: int = 0
    _database_finished: bool = False
    _database_reply: tuple[BaseException, ErrorReply | None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("prepare", *_VERBS):
            method = getattr(cls, name, None)
            if method is None or getattr(method, _WRAPPED, False):
                continue
            if method is getattr(tornado.web.RequestHandler, "_unimplemented_method", None):
                continue
            if name == "prepare":
                setattr(cls, name, _scoped_prepare(method))
            else:
                setattr(cls, name, _scoped_verb(method))

    # -- the scope ------------------------------------------------------------------

    def _database_handler(self) -> tornado.web.RequestHandler:
        if not isinstance(self, tornado.web.RequestHandler):
            raise TypeError("DatabaseHandlerMixin goes with tornado.web.RequestHandler")
        return self

    def _databases(self) -> tuple[AsyncDatabase, ...]:
        if self.database is not None:
            return as_databases(self.database)
        return _settings_databases(self._database_handler().settings)

    def _atomic(self) -> bool:
        if self.atomic is not None:
            return self.atomic
        return bool(self._database_handler().settings.get("database_atomic", False))

    async def _enter_database_scope(self) -> None:
        if self._database_stack is not None:
            return
        stack = AsyncExitStack()
        await stack.enter_async_context(
            core.request_scope(self._databases(), atomic=self._atomic())
        )
        self._database_stack = stack
        self._database_task = asyncio.current_task()

    async def _leave_database_scope(self, failure: BaseException | None = None) -> None:
        stack, self._database_stack = self._database_stack, None
        if stack is None:
            return
        status = self._database_handler().get_status()
        if failure is None and not commits(status):
            failure = ErrorResponse(status)
        if failure is None:
            await stack.aclose()  # a failed commit raises: the error answer follows
            return
        try:
            await stack.__aexit__(type(failure), failure, failure.__traceback__)
        except Exception:
            logger.exception("rolling back a request's transaction failed")

    # -- RequestHandler hooks ---------------------------------------------------------

    async def prepare(self) -> None:
        """Enter the request's database scope (the wrapped ``prepare`` does it)."""

    def finish(self, chunk: Any = None) -> Any:
        """``RequestHandler.finish``, noting that the request is over."""
        self._database_finished = True
        return super().finish(chunk)  # type: ignore[misc]

    def on_connection_close(self) -> None:
        """Cancel the request's task when the client left mid-request."""
        super().on_connection_close()  # type: ignore[misc]
        task = self._database_task
        if (
            self.cancel_on_disconnect
            and self._database_stack is not None
            and task is not None
            and not task.done()
        ):
            task.cancel()

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log a database error once, through the mapping; others as Tornado does."""
        if value is not None:
            reply = self._map(value)
            self._database_reply = (value, reply)
            if reply is not None:
                return
        super().log_exception(typ, value, tb)  # type: ignore[misc]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer a database error with its JSON reply; others as Tornado does."""
        handler = self._database_handler()
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if exc is not None and isinstance(exc, Exception):
            remembered = self._database_reply
            reply = remembered[1] if remembered and remembered[0] is exc else self._map(exc)
            if reply is not None:
                handler.set_status(reply.status)
                for name, value in reply.headers.items():
                    handler.set_header(name, value)
                handler.finish(reply.body)
                return
        super().write_error(status_code, **kwargs)  # type: ignore[misc]

    def _map(self, exc: BaseException) -> ErrorReply | None:
        if isinstance(exc, tornado.web.HTTPError):
            return None
        request = self._database_handler().request
        return error_reply(
            exc,
            retry_after=self.retry_after,
            request=f"{request.method} {request.path}",
            log=logger,
        )


def _mixin(handler: Any) -> DatabaseHandlerMixin:
    if not isinstance(handler, DatabaseHandlerMixin):
        raise TypeError("scoped methods belong to DatabaseHandlerMixin subclasses")
    return handler


def _scoped_prepare(prepare: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(prepare)
    async def scoped_prepare(self: Any, *args: Any, **kwargs: Any) -> None:
        handler = _mixin(self)
        # @stream_request_body handlers wait for the body between prepare() and
        # the verb, and skip the verb when the client goes: their scope opens in
        # the verb. (Tornado has no public spelling of this check; the decorator
        # runs after the class is made, hence the check at request time.)
        if not tornado.web._has_stream_request_body(type(self)):
            await handler._enter_database_scope()
        try:
            result = prepare(self, *args, **kwargs)
            if isawaitable(result):
                await result
        except BaseException as exc:
            await handler._leave_database_scope(exc)
            raise
        if handler._database_finished:  # prepare() answered: no verb will run
            await handler._leave_database_scope()

    setattr(scoped_prepare, _WRAPPED, True)
    return scoped_prepare


def _scoped_verb(verb: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(verb)
    async def scoped_verb(self: Any, *args: Any, **kwargs: Any) -> None:
        handler = _mixin(self)
        handler._database_depth += 1
        failure: BaseException | None = None
        try:
            await handler._enter_database_scope()
            result = verb(self, *args, **kwargs)
            if isawaitable(result):
                await result
        except BaseException as exc:
            failure = exc
            raise
        finally:
            handler._database_depth -= 1
            if handler._database_depth == 0:
                await handler._leave_database_scope(failure)

    setattr(scoped_verb, _WRAPPED, True)
    return scoped_verb


def lifespan(
    app: tornado.web.Application,
    models: Iterable[type[peewee.Model]] = (),
    *,
    database: AsyncDatabase | Sequence[AsyncDatabase] | None = None,
    safe: bool = True,
    warm: bool = True,
) -> AbstractAsyncContextManager[None]:
    """The database's lifespan around a Tornado server: ``models``' tables
    created and the pools warmed on entry, the pools closed on exit.

    The database is ``database``, or else the application setting
    ``database``. See :func:`~fastpeewee.integrations.core.database_lifespan`.
    """
    databases = as_databases(database) if database is not None else None
    if databases is None:
        databases = _settings_databases(app.settings)
    return core.database_lifespan(databases, models, safe=safe, warm=warm)(app)
