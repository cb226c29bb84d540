"""``allow_sync`` of peewee-async, with the permission scoped to one asyncio task.

peewee-async lets sync queries through unless told otherwise and keeps the
switch on the database object, so ``with db.allow_sync():`` in one task opens
the door for every task on the loop. Here the permission lives in a
``ContextVar``: it covers the task that set it (and the tasks it starts
afterwards, which copy its context), never the others.

What it governs: a *sync* query made on the event-loop thread outside
``db.run()``, which blocks the loop. As in peewee-async it runs by default,
and here each call site is logged once (a warning naming the async call to
use instead: :data:`WARN_ONCE`); allowed silently with ``True``; allowed and
logged every time at that level with ``logging.ERROR`` or ``logging.WARNING``;
refused with ``False`` (:class:`SyncQueryNotAllowed`), the strict mode that
fastpeewee's own API always has. An allowed sync call
runs on a sync connection of the task's own, as in peewee-async: outside the
task's async transaction. Sync code in threads without an event loop is never
refused (as everywhere in fastpeewee).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import peewee
import playhouse

from ..bridge import in_bridge
from ..errors import BRIDGE_HINT, MissingGreenletBridge
from ..state import AsyncState, ConnectionState, ThreadState

if TYPE_CHECKING:
    from ..cursor import Cursor
    from ..drivers.base import Bulk, Params

__all__ = ["WARN_ONCE", "AllowSyncMixin", "SyncPolicy", "SyncQueryNotAllowed"]

logger = logging.getLogger("fastpeewee.compat.peewee_async")

_LOGGED_LEVELS = (logging.ERROR, logging.WARNING)

WARN_ONCE: Final = "warn-once"
"""The default ``allow_sync`` policy: sync queries on the loop run, and the first
one from each line of code logs a warning naming the async call to use."""

SyncPolicy = bool | int | str
"""An ``allow_sync`` value: False, True, ``logging.ERROR``, ``logging.WARNING``
or :data:`WARN_ONCE`."""

# Call sites already warned about, per database; bounded so that generated
# code cannot grow it without end.
_MAX_SITES = 1000


class SyncQueryNotAllowed(MissingGreenletBridge, AssertionError):
    """A sync query on the event-loop thread while ``allow_sync`` is off for this task.

    An ``AssertionError`` as in peewee-async, and a
    :class:`~fastpeewee.MissingGreenletBridge` as in the rest of fastpeewee. Example::

        with objects.allow_sync():          # this task only
            PageBlock.create_table(True)
    """


class AllowSyncMixin:
    """Per-task ``allow_sync`` / ``set_allow_sync`` for a fastpeewee database.

    Mixed in before the fastpeewee database class. Example::

        db.set_allow_sync(logging.WARNING)  # this task: allowed, with a warning
        with db.allow_sync():               # this task: allowed, silently
            Model.create_table(True)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._allow_sync_cv: contextvars.ContextVar[SyncPolicy] = contextvars.ContextVar(
            f"fastpeewee-allow-sync-{id(self):x}"
        )
        self._loop_sync_scopes: weakref.WeakKeyDictionary[asyncio.Task[Any], ThreadState] = (
            weakref.WeakKeyDictionary()
        )
        self._warned_sites: set[tuple[str, int]] = set()
        super().__init__(*args, **kwargs)

    # -- the switch -----------------------------------------------------------

    def sync_policy(self) -> SyncPolicy:
        """This task's setting: :data:`WARN_ONCE` (the default), False (refuse), True,
        ``logging.ERROR`` or ``logging.WARNING``."""
        return self._allow_sync_cv.get(WARN_ONCE)

    def set_allow_sync(self, value: SyncPolicy) -> None:
        """Allow (True; a logging level to log each call; :data:`WARN_ONCE` to log
        each call site once) or refuse (False) sync queries on the event loop.

        Applies to the current task and the tasks it starts afterwards; at
        module level, to the tasks started from the main thread's context.
        """
        self._allow_sync_cv.set(value)

    @contextmanager
    def allow_sync(self) -> Iterator[None]:
        """Allow sync queries for the current task inside the block.

        On exit the task's sync connection, if one is held, goes back to the
        pool. Example::

            with db.allow_sync():
                PageBlock.create_table(True)
        """
        token = self._allow_sync_cv.set(True)
        try:
            yield
        finally:
            try:
                self._close_sync_scope()
            finally:
                self._allow_sync_cv.reset(token)

    def __setattr__(self, name: str, value: Any) -> None:
        # peewee-async 0.6 documented `db.allow_sync = False | logging.ERROR`.
        if name == "allow_sync":
            self.set_allow_sync(value)
        else:
            super().__setattr__(name, value)

    # -- routing ----------------------------------------------------------------

    def _sync_on_loop(self) -> bool:
        return asyncio._get_running_loop() is not None and not in_bridge()

    def _current_state(self) -> ConnectionState:
        if self._sync_on_loop() and self.sync_policy():
            return self._loop_sync_scope()
        return super()._current_state()  # type: ignore[misc,no-any-return]

    def _async_state(self) -> AsyncState:
        scope = super()._current_state()  # type: ignore[misc]
        if not isinstance(scope, AsyncState):
            raise RuntimeError("this coroutine must run on the event loop that awaits it")
        return scope

    def _loop_sync_scope(self) -> ThreadState:
        """The current task's own sync connection state."""
        task = asyncio.current_task()
        if task is None:
            raise peewee.InterfaceError(
                "sync query on the event-loop thread outside any asyncio task"
            )
        scope = self._loop_sync_scopes.get(task)
        if scope is None:
            scope = self._loop_sync_scopes[task] = ThreadState(self)  # type: ignore[arg-type]
            task.add_done_callback(lambda _task: _release(scope))
        return scope

    def _existing_sync_scope(self) -> ThreadState | None:
        if asyncio._get_running_loop() is None:
            scope: ThreadState = self._thread_state()  # type: ignore[attr-defined]
            return scope
        task = asyncio.current_task()
        return self._loop_sync_scopes.get(task) if task is not None else None

    def _close_sync_scope(self) -> None:
        scope = self._existing_sync_scope()
        if scope is not None and not scope.transactions:
            scope.close()

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Hold a connection (sync code); on the event loop, only if allowed."""
        if self._sync_on_loop() and not self.sync_policy():
            raise SyncQueryNotAllowed(
                "sync connect() is not allowed on the event loop; use `async with db:` "
                "or `await db.aconnect()`, or allow sync calls for this task first"
            )
        return super().connect(reuse_if_open)  # type: ignore[misc,no-any-return]

    def close(self) -> bool:
        """Give back the held connection (sync code).

        Called on the event loop outside ``db.run()``, it closes the task's
        *sync* connection, if any, as peewee-async's ``close()`` closed the
        sync connection: the task's async connection is left to ``aclose()``.
        """
        if self._sync_on_loop():
            scope = self._existing_sync_scope()
            return scope.close() if scope is not None else False
        return super().close()  # type: ignore[misc,no-any-return]

    def _run(
        self,
        sql: str,
        params: Params,
        ending: bool = False,
        bulk: Bulk | None = None,
        observed: bool = False,
    ) -> Cursor:
        """The sync execution path (every statement, multi-row inserts and COPY
        included); on the event loop, only if allowed."""
        if not observed and self._sync_on_loop():
            self._check_sync(sql, params)
        return super()._run(sql, params, ending, bulk, observed)  # type: ignore[misc,no-any-return]

    def _check_sync(self, sql: str, params: Sequence[Any] | None) -> None:
        policy = self.sync_policy()
        if not policy:
            raise SyncQueryNotAllowed(
                f"sync query is not allowed on the event loop: {sql}. Use "
                "`with objects.allow_sync():` (or `db.set_allow_sync(True)`) for this "
                f"task, or the async API. {BRIDGE_HINT}"
            )
        if policy in _LOGGED_LEVELS:
            logger.log(int(policy), "sync query on the event loop: %s %r", sql, params)
        elif policy == WARN_ONCE:
            self._warn_once(sql)

    def _warn_once(self, sql: str) -> None:
        path, line, entry = _call_site()
        site = (path, line)
        if site in self._warned_sites or len(self._warned_sites) >= _MAX_SITES:
            return
        self._warned_sites.add(site)
        logger.warning(
            "sync query on the event loop at %s:%d blocks the loop while it runs (%s). "
            "Use %s; `db.set_allow_sync(False)` makes this an error, "
            "`with objects.allow_sync():` allows it silently. Logged once per call site.",
            path,
            line,
            sql.split(None, 1)[0] if sql else "?",
            _ASYNC_CALLS.get(entry, _DEFAULT_ASYNC_CALL),
        )


# The async call to name for the peewee method a sync call site entered.
_DEFAULT_ASYNC_CALL = "`await objects.execute(query)` or `await query.aio_execute()`"
_ASYNC_CALLS = {
    "create": "`await objects.create(Model, ...)` or `await Model.aio_create(...)`",
    "get": "`await objects.get(Model, ...)` or `await Model.aio_get(...)`",
    "get_or_none": "`await objects.get_or_none(Model, ...)` or `await Model.aio_get_or_none(...)`",
    "get_by_id": "`await objects.get(Model, id=...)` or `await Model.aio_get(id=...)`",
    "get_or_create": "`await objects.get_or_create(Model, ...)` or "
    "`await Model.aio_get_or_create(...)`",
    "save": "`await objects.update(obj)` or `await obj.aio_save()`",
    "delete_instance": "`await objects.delete(obj)` or `await obj.aio_delete_instance()`",
    "count": "`await objects.count(query)` or `await query.aio_count()`",
    "scalar": "`await objects.scalar(query)` or `await query.aio_scalar()`",
    "exists": "`await query.aio_exists()`",
    "create_table": "`await db.acreate_tables([Model])`",
    "create_tables": "`await db.acreate_tables(models)`",
    "drop_table": "`await db.adrop_tables([Model])`",
    "drop_tables": "`await db.adrop_tables(models)`",
}

# Frames in these are the library's, not the caller's: playhouse, fastpeewee, peewee.py.
_LIBRARY_DIRS = (
    os.path.dirname(playhouse.__file__) + os.sep,
    os.path.dirname(os.path.dirname(__file__)) + os.sep,
)
_PEEWEE_FILES = (peewee.__file__,)
# peewee's decorators (database_required, ...) wrap the method the user called.
_WRAPPERS = frozenset({"inner", "wrapper"})


def _call_site() -> tuple[str, int, str]:
    """Where user code made the sync call: (file, line, the peewee function it entered)."""
    frame = sys._getframe(3)
    entry = ""
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_LIBRARY_DIRS) and path not in _PEEWEE_FILES:
            return path, frame.f_lineno, entry
        if frame.f_code.co_name not in _WRAPPERS:
            entry = frame.f_code.co_name
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>", 0, entry


def _release(scope: ThreadState) -> None:
    """Give back a finished task's sync connection (rolled back if left in a transaction)."""
    conn = scope._forget()
    if conn is not None:
        scope._return(conn)
