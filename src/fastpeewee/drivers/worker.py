"""A thread of one's own: runs one connection's calls for the event loop, in order.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs about 50 µs a round
trip on CPython 3.11 (measured: ``benchmarks/profile/sqlite_ab.py``); a thread
that waits on a ``SimpleQueue`` and answers with ``call_soon_threadsafe`` costs
about 18 µs. A SQLite statement from a task takes one such round trip, so the
SQLite driver gives each connection a :class:`Worker`: statements of one
connection never run concurrently anyway (the pool hands a connection to one
user at a time), and aiosqlite does the same.

The thread starts with the first call and ends once :meth:`Worker.stop` was
called and the calls queued before it ran; a call after ``stop`` is refused
(``submit`` returns None), never left waiting. The threads are daemon threads,
stopped and joined at interpreter exit (before that, like a
``ThreadPoolExecutor``'s, they would keep the process alive), so a pool never
closed does not hang the exit, and a statement still running then finishes
first.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Worker"]

T = TypeVar("T")

_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]
]

_live: weakref.WeakSet[Worker] = weakref.WeakSet()


class Worker:
    """One thread running calls submitted from event loops, one at a time, in order."""

    __slots__ = ("__weakref__", "_lock", "_name", "_queue", "_stopped", "_thread")

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(
        self, fn: Callable[..., T], *args: Any, future: asyncio.Future[T] | None = None
    ) -> asyncio.Future[T] | None:
        """Run ``fn(*args)`` in the thread; a future of the running loop for its
        outcome (``future`` if given), or None once :meth:`stop` was called
        (nothing was queued)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future() if future is None else future
        with self._lock:
            if self._stopped:
                return None
            if self._thread is None:
                self._start()
            self._queue.put((loop, fut, fn, args))
        return fut

    def stop(self) -> None:
        """End the thread once the calls queued so far ran; refuse later ones."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread is not None:
                self._queue.put(None)

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`stop`)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        thread = threading.Thread(target=_run, args=(self._queue,), name=self._name, daemon=True)
        thread.start()
        self._thread = thread
        _live.add(self)
        # A worker dropped without stop() (its connection leaked) ends its thread too.
        weakref.finalize(self, self._queue.put, None)


def _run(calls: queue.SimpleQueue[_Call | None]) -> None:
    """The thread: run each call and hand its outcome to its loop, until None."""
    while True:
        call = calls.get()
        if call is None:
            return
        loop, fut, fn, args = call
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, as an executor does
            _answer(loop, fut.set_exception, fut, exc)
        else:
            _answer(loop, fut.set_result, fut, result)
        # Nothing of a finished call stays referenced while the thread waits.
        call = loop = fut = fn = args = result = None  # type: ignore[assignment]


def _answer(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[Any], None],
    fut: asyncio.Future[Any],
    value: Any,
) -> None:
    # RuntimeError: the loop was closed meanwhile; nobody awaits the outcome any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, settle, fut, value)


def _settle(settle: Callable[[Any], None], fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():  # a future cancelled meanwhile keeps its cancellation
        settle(value)


@atexit.register
def _stop_all() -> None:
    """At interpreter exit: let every worker finish what it runs, then end it."""
    workers = list(_live)
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join()
