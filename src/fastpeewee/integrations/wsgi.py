"""WSGI middleware for the sync frameworks: Flask, Django, Bottle, Falcon, Pyramid, CherryPy.

A fastpeewee database needs no per-request hooks in a worker thread: a
statement outside a transaction borrows a pooled connection and gives it back
at once, and a transaction keeps one until it ends. What a request can still
leave behind is a connection kept by ``db.connect()`` with no ``db.close()``
(peewee's classic request hooks, when the close hook is skipped) or a
transaction begun and never ended. :class:`WSGIDatabaseMiddleware` cleans both
up when the response is done, so the thread's next request starts clean; with
``atomic=True`` it runs each request in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from .core import ErrorResponse, as_databases, commits

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["WSGIApp", "WSGIDatabaseMiddleware"]

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WSGIDatabaseMiddleware:
    """Clean each request's database state up when its response is done.

    ``app.wsgi_app = WSGIDatabaseMiddleware(app.wsgi_app, db)`` (Flask), or
    around any WSGI application. After the response body is sent (or the
    application raised), the thread's held connection goes back to the pool
    and a transaction left open is rolled back (see
    :meth:`AsyncDatabase.release_thread`).

    ``atomic=True`` runs each request in one transaction per database. It
    commits when the application starts a response with a status below 400,
    before the response is sent (a failed commit is an error, never a false
    success), and rolls back on an exception or an error status (4xx, 5xx):
    the rule of every adapter (:func:`~fastpeewee.integrations.core.commits`).
    """

    def __init__(
        self,
        app: WSGIApp,
        database: AsyncDatabase | Sequence[AsyncDatabase],
        *,
        atomic: bool = False,
    ) -> None:
        self.app = app
        self.databases = as_databases(database)
        self.atomic = atomic

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        transaction = ExitStack()
        try:
            if self.atomic:
                for db in self.databases:
                    transaction.enter_context(db.atomic())
                start_response = self._ending(transaction, start_response)
            body = self.app(environ, start_response)
        except BaseException as exc:
            try:
                transaction.__exit__(type(exc), exc, exc.__traceback__)
            finally:
                self._release()
            raise
        return _Body(body, lambda: self._finish(transaction))

    def _ending(self, transaction: ExitStack, start_response: StartResponse) -> StartResponse:
        def ending(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if not commits(int(status[:3])):
                _end(transaction, ErrorResponse(status))
            else:
                transaction.close()  # commits; raises (to the app) if the commit fails
            return start_response(status, headers, *exc_info)

        return ending

    def _finish(self, transaction: ExitStack) -> None:
        # A response the app never started (an app that returned without
        # calling start_response) is not a success: roll back.
        try:
            _end(transaction, ErrorResponse("no response"))
        finally:
            self._release()

    def _release(self) -> None:
        # Every database is released even when one of them fails to; the
        # first failure is raised after the others are done.
        failure: BaseException | None = None
        for db in self.databases:
            try:
                db.release_thread()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


def _end(transaction: ExitStack, exc: BaseException) -> None:
    """Leave ``transaction`` as if ``exc`` had been raised in it (a rollback);
    no-op when it is already closed."""
    transaction.__exit__(type(exc), exc, None)


class _Body:
    """The application's response body, with ``close()`` calling ``on_close``
    after the application's own (PEP 3333: the server always calls it)."""

    __slots__ = ("_body", "_on_close")

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
