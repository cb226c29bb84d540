"""Fork safety: a child process never uses a connection it inherited.

A process that forks (gunicorn with ``preload_app``, multiprocessing's
``'fork'`` start method, ``os.fork``) gives its children copies of every open
socket. Two processes speaking on one connection corrupt each other's
protocol stream, so in the child, right after the fork, every live database
forgets its pools and the connection state of its tasks and threads
(:func:`os.register_at_fork`); its next query opens fresh connections.

The inherited connections are left alone: never used and never closed, since
closing one sends the server a goodbye on the parent's session (PostgreSQL's
Terminate, MySQL's ``COM_QUIT``) or runs SQLite's close-time checkpoint. They
are kept referenced, so that no finalizer closes them either; their file
descriptors stay open in the child until it exits (at most ``pool_size`` a
pool), and the parent's sessions end only when both processes have let go.
Fork before opening connections where you can (gunicorn without
``preload_app``, or ``db.close_all()`` before forking).
"""

from __future__ import annotations

import contextvars
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .state import ThreadStates

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["forget_connections", "track"]

_live: weakref.WeakSet[AsyncDatabase] = weakref.WeakSet()
# What children inherited: kept so that no finalizer ever closes a parent's connection.
_inherited: list[Any] = []


def track(db: AsyncDatabase) -> None:
    """Have ``db`` forget its connections in a forked child (every database does)."""
    _live.add(db)


def forget_connections(db: AsyncDatabase) -> None:
    """Drop ``db``'s pools and connection state without closing anything.

    What a forked child does to every live database; the next query opens a
    fresh pool. Only for a process that must not touch the connections it
    holds (use ``close_pool()``/``close_all()`` otherwise).
    """
    _inherited.append((db._sync_pool, db._async_pool, db._threads, db._releasing, db._cv))
    # A lock another thread of the parent held at the fork stays locked for ever here.
    db._pools_lock = threading.Lock()
    db._sync_pool = db._async_pool = None
    db._async_loop = None
    db._releasing = set()
    db._threads = ThreadStates()
    # The forking thread's context may still carry a task's or scope's state.
    db._cv = contextvars.ContextVar(f"fastpeewee-{id(db):x}")
    db._who = contextvars.ContextVar(f"fastpeewee-who-{id(db):x}")
    replicas = db._replicas
    if replicas is not None:  # the replica databases themselves are tracked on their own
        replicas.forget_checks()


def _after_fork_in_child() -> None:
    for db in list(_live):
        forget_connections(db)


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
