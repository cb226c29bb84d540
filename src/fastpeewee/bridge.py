"""Running peewee's synchronous code from async code, on the event-loop thread.

``greenlet_spawn(fn)`` runs ``fn`` in a child greenlet. Whenever that code must
wait for I/O it calls ``await_(coro)``, which hands the coroutine to the parent
greenlet; the parent awaits it on the event loop and switches back with the
result. Peewee's query building, hydration and transaction logic therefore run
unchanged, while every wait happens on the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from greenlet import getcurrent, greenlet

from .errors import BRIDGE_HINT, MissingGreenletBridge

__all__ = ["await_", "greenlet_spawn", "in_bridge"]

T = TypeVar("T")


class _Bridge(greenlet):  # type: ignore[misc]
    """Marks greenlets started by :func:`greenlet_spawn`."""


def in_bridge() -> bool:
    """Return True when running inside :func:`greenlet_spawn`."""
    return isinstance(getcurrent(), _Bridge)


async def greenlet_spawn(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the sync callable ``fn`` so that its ``await_`` calls wait on the loop.

    Example::

        user = await greenlet_spawn(User.get_by_id, 1)
    """
    child = _Bridge(fn, getcurrent())
    # Share the caller's context so ContextVar reads and writes in `fn` are
    # those of the awaiting task.
    child.gr_context = getcurrent().gr_context
    value: Any = child.switch(*args, **kwargs)
    while not child.dead:
        try:
            result = await value
        except BaseException as exc:
            value = child.throw(exc)
        else:
            value = child.switch(result)
    return cast(T, value)


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from sync code running under :func:`greenlet_spawn`."""
    current = getcurrent()
    if not isinstance(current, _Bridge):
        if isinstance(awaitable, Coroutine):
            awaitable.close()  # no "never awaited" warning on top of our error
        raise MissingGreenletBridge("await_() called outside db.run(). " + BRIDGE_HINT)
    return cast(T, current.parent.switch(awaitable))
