"""The state of a thread with no event loop, and the per-database thread-local that holds it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..cursor import Cursor
from ..drivers.base import CopyRequest
from ..drivers.retry import may_retry
from ..errors import (
    translate_errors,
)
from .base import ConnectionState, logger

if TYPE_CHECKING:
    from ..drivers.base import Bulk, Connection, Params


class ThreadState(ConnectionState):
    """State of a thread with no event loop: real blocking I/O on the sync pool."""

    __slots__ = ()

    def __del__(self) -> None:
        # Freed with its thread's thread-local state: a thread that ended
        # holding a connection (a close hook skipped by an exception, or never
        # written) gives the slot back, as a task does when it ends. No lock or
        # I/O here: the pool closes it on its next use.
        conn = self.conn
        if conn is not None and conn.pool is not None:
            self.conn = None
            conn.pool.orphan(conn)

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """Run one statement from a thread (see :meth:`ConnectionState.execute`)."""
        skipped = self._lost_guard(sql, ending)
        if skipped is not None:
            return skipped
        conn = self.conn
        if conn is None and self.held:
            conn = self.conn = self.db._sync_pool_get().acquire()
        if conn is not None:
            return self._on_pinned(conn, sql, params, ending, bulk)
        pool = self.db._sync_pool_get()
        conn = pool.acquire()
        try:
            try:
                cursor = _run_sync(conn, sql, params, bulk)
            except Exception as exc:
                if not may_retry(conn, exc):
                    raise
                conn = pool.replace(conn)  # dead before it was sent: once more, on a new one
                cursor = _run_sync(conn, sql, params, bulk)
        except BaseException:
            self._return(conn)
            raise
        if self._keep_after_borrow(conn):
            self.conn = conn
        else:
            conn.pool.release(conn)
        return cursor

    def _on_pinned(
        self, conn: Connection, sql: str, params: Params, ending: bool, bulk: Bulk | None
    ) -> Cursor:
        try:
            cursor = _run_sync(conn, sql, params, bulk)
        except BaseException:
            if self._must_release(conn, ending, failed=True):
                self._return(self._detach())
            raise
        if self._must_release(conn, ending):
            self._return(self._detach())
        return cursor

    def _detach(self) -> Connection:
        conn = self.conn
        assert conn is not None
        self.conn = None
        return conn

    def _hold(self) -> None:
        if self.conn is None:
            self.conn = self.db._sync_pool_get().acquire()
        self.held = True

    def close(self) -> bool:
        """Give the held connection back; return whether one was open."""
        self._check_close()
        was_open = not self.closed
        conn = self._forget()
        if conn is not None:
            self._return(conn)
        return was_open

    def release(self) -> bool:
        """Give back everything held, whatever its state (the end of a request);
        return whether anything was held. An open transaction is rolled back."""
        if not self.busy:
            return False
        conn = self.conn
        if self.transactions or (conn is not None and not conn.broken and conn.in_transaction()):
            logger.warning(
                "%s: a transaction was left open at the end of a request; rolling it back",
                type(self.db).__name__,
            )
        conn = self._forget()
        if conn is not None:
            self._return(conn)
        return True

    def _return(self, conn: Connection) -> None:
        """Release ``conn`` to its pool, rolling back a transaction left open."""
        if not conn.broken and conn.usable() and conn.in_transaction():
            try:
                conn.rollback()
            except Exception:
                logger.warning("rollback before release failed; closing", exc_info=True)
                conn.broken = True
        conn.pool.release(conn)


def _run_sync(conn: Connection, sql: str, params: Params, bulk: Bulk | None) -> Cursor:
    """The driver operation for a statement from a thread: ``execute``, or with
    ``bulk`` rows ``executemany`` (a COPY has no sync driver)."""
    conn.note(sql)
    try:
        with translate_errors():
            if bulk is None:
                return conn.execute(sql, params)
            if isinstance(bulk, CopyRequest):
                raise TypeError(f"{type(conn).__name__} cannot COPY from a thread")
            return conn.executemany(sql, bulk)
    except BaseException as exc:
        conn.after_error(exc)
        raise


class ThreadStates(threading.local):
    """One :class:`ThreadState` per thread and database."""

    state: ThreadState | None = None
