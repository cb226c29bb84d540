"""The SQLite driver adapter: the standard library's ``sqlite3``, for threads and tasks alike.

One pool of ``sqlite3`` connections serves both worlds: a thread runs its
statement directly, a task sends the whole statement (execute, fetch, close)
to the connection's own worker thread (:class:`~fastpeewee.drivers.worker.Worker`)
in one hop; a task's SELECT is first tried on the loop thread itself, within a
2 ms budget and without waiting for locks, and so is a plain ``BEGIN`` (or
``SAVEPOINT``), which takes no lock. A ``:memory:`` database is one
connection, so sync and async code see the same tables. A wait for a lock is
spent in short slices, so that a cancelled task or a closing pool ends it; a
connection whose file was replaced is never reused.

SQLite's busy timeout is switched only when the kind of statement changes:
0 for reads on the loop thread (a locked file makes them fail at once, and a
worker reruns them), one slice (:data:`BUSY_SLICE_MS`) for statements that may
wait. The connection remembers which is set, so a run of inline reads (or of
writes) pays no ``PRAGMA`` at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..cursor import Cursor, StreamCursor
from .base import Connection, Params
from .worker import Worker

__all__ = ["INLINE_BUDGET", "SqliteConnection"]

T = TypeVar("T")


# A SELECT from a task first runs on the loop thread itself: most finish in
# microseconds, far below the cost of a hop to a worker thread. It may take at
# most this long (checked every 1,000 SQLite VM steps) and never waits for a
# lock; otherwise it is abandoned and rerun in a worker thread.
INLINE_BUDGET = 0.002
_INLINE_GIVE_UP = ("interrupted", "locked", "busy")

# SQLite's busy handler sleeps inside sqlite3_step() until the lock is free or
# busy_timeout has passed, and neither interrupt() nor a progress handler
# reaches it: a statement waiting for a lock could not be cancelled for 5 s.
# So SQLite waits in slices this long, and the rest of the configured timeout
# is a loop here, which an interrupt (a cancellation, close()) ends.
BUSY_SLICE_MS = 50
_SQLITE_BUSY = 5  # the plain code: not BUSY_SNAPSHOT, which waiting cannot cure
# How often a cancelled task repeats its interrupt while its statement runs
# (an interrupt sent before the statement began is lost).
SETTLE_POLL = 0.05


class SqliteConnection(Connection):
    """A ``sqlite3`` connection, used from the caller's thread or a worker thread.

    It watches three things the pool relies on: the file it opened (a file
    replaced underneath, e.g. restored from a backup, makes it unusable), the
    statement running on it (``close()`` interrupts it and closes once it
    returned), and the configured busy timeout (spent in interruptible slices).
    """

    __slots__ = (
        "_busy_timeout",
        "_closing",
        "_file",
        "_identity",
        "_inline_ok",
        "_raw_busy_ms",
        "_running",
        "_slice_ms",
        "_stop",
        "_whole_database",
        "_worker",
    )

    def __init__(
        self,
        raw: sqlite3.Connection,
        worker: Worker,
        inline_ok: Callable[[], bool] = lambda: False,
        whole_database: bool = False,
    ) -> None:
        super().__init__(raw)
        self._worker = worker  # runs this connection's statements for tasks
        self._inline_ok = inline_ok
        # ":memory:": this one connection is the database, so it is never
        # closed for having changed its session (there is no other to share it).
        self._whole_database = whole_database
        self._running = False  # a statement runs (in whichever thread): close() defers
        self._closing = False
        self._stop = False  # interrupted: stop waiting for a lock, run nothing more
        self._busy_timeout = 0.0  # seconds a statement may wait for a lock in all
        self._slice_ms = 0  # of which SQLite's busy handler waits this much at a time
        self._raw_busy_ms: int | None = None  # what SQLite has now (None: unknown)
        try:
            self._set_busy_timeout(int(raw.execute("PRAGMA busy_timeout").fetchone()[0]))
            self._file, self._identity = _file_identity(raw)
        except BaseException:
            raw.close()
            raise

    def note(self, sql: str) -> None:
        if not self._whole_database:
            super().note(sql)

    def usable(self) -> bool:
        try:
            self.raw.total_changes  # noqa: B018 (raises once closed)
        except sqlite3.ProgrammingError:
            return False
        return True

    def usable_idle(self) -> bool:
        path = self._file
        return self.usable() and (path is None or self._same_file(path))

    def _same_file(self, path: str) -> bool:
        """Is the file at ``path`` still the one we opened (not deleted, not replaced)?

        A connection keeps the file it opened: after a restore from a backup
        (or a delete and re-create) it would read the old rows and fail every
        write with "attempt to write a readonly database". One ``stat`` at each
        hand-out, a few microseconds; not rate-limited, since a file replaced
        within any skipped interval would be read stale.
        """
        try:
            st = os.stat(path)
        except OSError:
            return False  # deleted: a fresh connection re-creates it, as SQLite would
        return (st.st_ino, st.st_dev) == self._identity

    def in_transaction(self) -> bool:
        try:
            return bool(self.raw.in_transaction)
        except sqlite3.ProgrammingError:
            return False

    def close(self) -> None:
        """Close now; while a statement runs, interrupt it and close once it returned.

        Closing a ``sqlite3`` connection under a statement running in another
        thread blocks on SQLite's mutex until the statement ends, and can crash
        the interpreter when it does.
        """
        # With _guarded(), a handshake without a lock (the GIL orders the
        # steps): each side sets its own flag, then reads the other's. So either
        # the statement sees _closing and never starts, or close() sees
        # _running and leaves the closing to the statement's end; at worst both
        # close, which sqlite3 makes harmless.
        self._closing = True
        if self._running:
            self.interrupt()
        else:
            self.raw.close()
        self._worker.stop()  # after what it was given: a running statement closes the link

    def interrupt(self) -> None:
        """Stop the running statement, or its wait for a lock, as soon as possible."""
        self._stop = True
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile: nothing runs
            self.raw.interrupt()

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (statement work, in any thread) marked as running, for close()."""
        self._running = True
        try:
            if self._closing:
                raise sqlite3.OperationalError(
                    "the connection was closed while in use (its pool was closed); retry"
                )
            if self._stop:  # interrupted before the worker got to it
                raise sqlite3.OperationalError("interrupted")
            return fn(*args)
        finally:
            self._running = False
            if self._closing:
                self.raw.close()

    def execute(self, sql: str, params: Params) -> Cursor:
        self._stop = False
        return self._guarded(self._statement, sql, params)

    def _statement(self, sql: str, params: Params) -> Cursor:
        if sql[:6].upper() == "PRAGMA" and "BUSY_TIMEOUT" in sql.upper():
            return self._busy_timeout_pragma(sql, params)
        return self._patiently(self._execute, sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        self._stop = False
        cursor: Cursor = self._guarded(self._patiently, self._executemany, sql, rows)
        return cursor

    def _execute(self, sql: str, params: Params) -> Cursor:
        cur = self.raw.execute(sql, params)
        try:
            rows = cur.fetchall()
            return Cursor(rows, cur.rowcount, cur.lastrowid, cur.description)
        finally:
            cur.close()

    def _executemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """Run ``sql`` for every row inside a savepoint: all rows or none."""
        raw = self.raw
        raw.execute("SAVEPOINT fastpeewee_many")
        try:
            cur = raw.executemany(sql, rows)
            count = cur.rowcount
            cur.close()
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK TO SAVEPOINT fastpeewee_many")
                raw.execute("RELEASE SAVEPOINT fastpeewee_many")
            raise
        raw.execute("RELEASE SAVEPOINT fastpeewee_many")
        # What cursor.lastrowid gives after peewee's one multi-row INSERT.
        lastrowid = raw.execute("SELECT last_insert_rowid()").fetchone()[0]
        return Cursor((), count, lastrowid, None)

    # -- waiting for locks --------------------------------------------------

    def _patiently(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn``, waiting for a lock up to the busy timeout, one slice at a time.

        A BUSY that SQLite's handler waited a slice for is retried (the
        statement failed whole, having changed nothing); one SQLite returns at
        once is passed on, as SQLite would: a read transaction that wants to
        write while another connection writes would deadlock by waiting.
        """
        self._busy_ms(self._slice_ms)  # an inline read before may have left 0
        begun = attempt = time.monotonic()
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                # SQLite's handler sleeps the whole slice before it gives up;
                # a BUSY it returns without waiting comes back in microseconds.
                waited = now - attempt >= self._slice_ms / 2000  # half a slice, in s
                if not waited or getattr(exc, "sqlite_errorcode", None) != _SQLITE_BUSY:
                    raise
                if now - begun >= self._busy_timeout:
                    raise
                if self._stop:
                    raise sqlite3.OperationalError("interrupted") from exc
                attempt = now

    def _busy_ms(self, ms: int) -> None:
        """Give SQLite's busy handler ``ms``, unless that is what it has already."""
        if self._raw_busy_ms != ms:
            self._raw_busy_ms = None  # unknown should the PRAGMA fail halfway
            self.raw.execute(f"PRAGMA busy_timeout = {ms}")
            self._raw_busy_ms = ms

    def _set_busy_timeout(self, ms: int) -> None:
        """Make ``ms`` the budget of a wait for a lock; SQLite gets one slice of it."""
        self._busy_timeout = ms / 1000
        self._slice_ms = min(ms, BUSY_SLICE_MS)
        self._raw_busy_ms = None  # the caller may have set anything: set it again
        self._busy_ms(self._slice_ms)

    def _busy_timeout_pragma(self, sql: str, params: Params) -> Cursor:
        """Run a PRAGMA that reads or sets busy_timeout against the configured value."""
        raw = self.raw
        self._raw_busy_ms = None  # from here on, whatever the PRAGMA leaves
        raw.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")
        try:
            return self._execute(sql, params)
        finally:
            self._set_busy_timeout(int(raw.execute("PRAGMA busy_timeout").fetchone()[0]))

    # -- tasks --------------------------------------------------------------

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        if sql.startswith("SELECT"):
            if self._inline_ok():
                cursor = self._inline(sql, params)
                if cursor is not None:
                    return cursor
        elif (sql == "BEGIN" or sql.startswith("SAVEPOINT ")) and self._inline_ok():
            # On the loop thread too: a deferred BEGIN (or a SAVEPOINT, which
            # begins one outside a transaction) only leaves autocommit; SQLite
            # takes a lock, and touches the file, at the first read or write.
            self._stop = False
            return self._guarded(self._execute, sql, params)
        return await self._offload(self._statement, sql, params)

    def _inline(self, sql: str, params: Params) -> Cursor | None:
        """Run a read on the loop thread within :data:`INLINE_BUDGET`; None: not done."""
        self._stop = False
        try:
            return self._guarded(self._try_inline, sql, params)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc) for word in _INLINE_GIVE_UP):
                return None  # too long, or it would wait for a lock: a worker does it
            raise

    def _try_inline(self, sql: str, params: Params) -> Cursor:
        raw = self.raw
        # No waiting for a lock on the loop: 0 stays set until a statement that
        # may wait (_patiently) sets a slice again. Before the progress handler,
        # which could otherwise interrupt this PRAGMA itself.
        self._busy_ms(0)
        deadline = time.perf_counter() + INLINE_BUDGET
        raw.set_progress_handler(lambda: time.perf_counter() > deadline, 1000)
        try:
            return self._execute(sql, params)
        finally:
            raw.set_progress_handler(None, 0)

    async def aexecutemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        return await self._offload(self._patiently, self._executemany, sql, rows)

    async def aping(self) -> None:
        await self._offload(self._statement, "SELECT 1", ())

    async def arollback(self) -> None:
        await self._offload(self._statement, "ROLLBACK", ())

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        # A cancellation that comes as the worker opens the cursor must still
        # close it: left open, it keeps a statement active on the connection
        # (its read snapshot, and a pending interrupt for the next statement).
        cur = await self._offload(
            self._patiently, self.raw.execute, sql, params, abandoned=sqlite3.Cursor.close
        )

        async def fetch(n: int) -> Sequence[Any]:
            rows: list[Any] = await self._offload(cur.fetchmany, n)
            return rows

        async def cleanup() -> None:
            await self._offload(cur.close)

        return StreamCursor(fetch, cleanup, cur.description, batch_size)

    async def _offload(
        self,
        fn: Callable[..., T],
        *args: Any,
        abandoned: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``fn`` in the worker thread; on cancellation interrupt it and wait for it.

        ``abandoned`` undoes a result that a cancelled caller will never see.
        """
        self._stop = False
        fut: _Running[T] = _Running(self)
        if self._worker.submit(self._guarded, fn, *args, future=fut) is None:
            return self._guarded(fn, *args)  # closed: refused at once, SQLite untouched
        try:
            # A cancellation of the caller does not cancel fut (see _Running):
            # it interrupts the statement, and arrives here once fut is done.
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: no "exception was never retrieved" noise
                if abandoned is not None:
                    self._undo(fut, abandoned)
            raise

    def _undo(self, fut: asyncio.Future[T], abandoned: Callable[[T], object]) -> None:
        """Undo what the worker produced for a caller that was cancelled meanwhile."""
        if fut.cancelled() or fut.exception() is not None:
            return
        self._stop = False  # the worker is done: this cleanup itself must run
        with contextlib.suppress(sqlite3.Error):
            self._guarded(abandoned, fut.result())


class _Running(asyncio.Future[T]):
    """The outcome of a statement in the worker thread, which cancelling cannot abandon.

    ``cancel()`` (what ``task.cancel()`` and ``asyncio.timeout`` call on the
    future a task waits for) interrupts the statement instead, again every
    :data:`SETTLE_POLL` seconds until it returned (an interrupt sent before
    the statement began is lost), and refuses: the task then gets its
    ``CancelledError`` once the worker is done, so the connection never goes
    back while a statement runs on it. Cheaper than ``asyncio.shield``, which
    costs the awaiting task one more turn of the loop on every statement.
    """

    def __init__(self, conn: SqliteConnection) -> None:
        super().__init__()
        self._conn = conn
        self._again: asyncio.TimerHandle | None = None

    def cancel(self, msg: Any = None) -> bool:
        if not self.done():
            self._conn.interrupt()
            if self._again is None:
                self._again = self.get_loop().call_later(SETTLE_POLL, self._interrupt_again)
        return False

    def _interrupt_again(self) -> None:
        self._again = None
        self.cancel()


def _file_identity(raw: sqlite3.Connection) -> tuple[str | None, tuple[int, int] | None]:
    """The main database's file and its (inode, device); (None, None) in memory.

    SQLite's own resolved path: right for relative paths and URI filenames
    alike, and empty for ``:memory:``, ``mode=memory`` and temporary databases.
    The file was opened just before: one replaced in between goes unnoticed.
    """
    path = raw.execute("PRAGMA database_list").fetchone()[2]
    if not path:
        return None, None
    st = os.stat(path)
    return path, (st.st_ino, st.st_dev)
