"""What every backend provides: a pooled connection wrapper and a way to open one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cursor import Cursor, StreamCursor
from ..session import changes_session

__all__ = ["Connection", "close_socket"]

Params = Sequence[Any]


class Connection:
    """One driver connection with the bookkeeping the pool and the scopes need.

    Sync methods (``execute``, ``ping``, ``rollback``) serve threads; async
    twins (``aexecute``, ...) serve tasks. A backend implements the side(s)
    its driver supports; the SQLite backend implements both.
    """

    __slots__ = ("broken", "created_at", "dirty", "pool", "raw", "released_at")

    # True when a statement that succeeds may end the open transaction
    # (MySQL commits implicitly before DDL); False when only COMMIT/ROLLBACK do.
    implicit_commits = False

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.pool: Any = None  # set by the pool that opened it; releases go there
        self.created_at = 0.0
        self.released_at = 0.0
        self.broken = False
        self.dirty = False  # ran a statement that changes the session: close, never reuse

    def note(self, sql: str) -> None:
        """Mark the connection dirty when ``sql`` may change its session."""
        if not self.dirty and changes_session(sql):
            self.dirty = True

    # -- both sides ---------------------------------------------------------

    def usable(self) -> bool:
        """Cheap check, no I/O: False once the driver knows the link is gone."""
        raise NotImplementedError

    def in_transaction(self) -> bool:
        """True while the server holds an open (or failed) transaction for us."""
        raise NotImplementedError

    def close(self) -> None:
        """Close at once, without waiting for the server."""
        raise NotImplementedError

    def after_error(self, exc: BaseException) -> None:
        """Mark the connection broken when ``exc`` left it unusable or in doubt.

        A driver timeout (``command_timeout``) leaves the statement's fate
        unknown and the driver busy cancelling it: never hand that on.
        """
        if isinstance(exc, TimeoutError) or not self.usable():
            self.broken = True

    # -- sync side ----------------------------------------------------------

    def execute(self, sql: str, params: Params) -> Cursor:
        raise TypeError(f"{type(self).__name__} cannot be used from a thread")

    def ping(self) -> None:
        self.execute("SELECT 1", ())

    def rollback(self) -> None:
        self.execute("ROLLBACK", ())

    # -- async side ---------------------------------------------------------

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        raise TypeError(f"{type(self).__name__} cannot be used from asyncio")

    async def aping(self) -> None:
        await self.aexecute("SELECT 1", ())

    async def arollback(self) -> None:
        await self.aexecute("ROLLBACK", ())

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        """Run ``sql`` and return a cursor that fetches ``batch_size`` rows at a time.

        ``disposable``: the connection serves only this stream, so a stream
        left early may drop the connection rather than read off the rest.
        """
        raise NotImplementedError


def close_socket(raw: Any) -> None:
    """Close the socket of an asyncio-based driver connection whose event loop is gone.

    asyncio transports close through their loop; with the loop closed, only
    the socket itself is left to close (else it leaks and warns at exit).
    asyncpg and asyncmy both keep their transport as ``_transport``.
    """
    transport = getattr(raw, "_transport", None)
    sock = getattr(transport, "_sock", None)
    if transport is not None and sock is not None:
        sock.close()
        transport._sock = None
