"""The asyncpg internals fastpeewee relies on, gathered in one place.

Why private names at all:

- ``Connection._execute(query, args, limit, timeout, return_status=True)``
  runs a statement through asyncpg's statement cache and returns its rows
  *and* its command status ("UPDATE 3") in one round trip. The public API
  gives one or the other: ``execute()`` the status without rows, ``fetch()``
  rows without the status (so no rowcount). Both together would cost a second
  round trip or a prepared statement per call; ``_execute`` was chosen by
  measurement (see the README's benchmarks). Because it is private, tracing
  instrumentors that wrap asyncpg's public methods do not see these
  statements: fastpeewee's own execution path (``AsyncDatabase._arun``) is
  where statements are observed.
- ``Connection._transport``: the socket under the connection, polled at
  hand-out for what the server sent unasked (a FATAL, a close), and closed by
  hand when the connection's event loop is gone.
- The refusal asyncpg raises, before sending anything, once it has read the
  server's FATAL (an ``InternalClientError`` naming its protocol state).
- ``Connection._cancellations``: the tasks sending a connection's
  CancelRequests, which ``terminate()`` cancels (closing their sockets before
  the server answered). Behind PgBouncer they are taken out first and left to
  finish (:class:`fastpeewee.drivers.pooler.PooledAsyncpgConnection`).

Nothing falls back silently: :func:`check` runs when the first asyncpg
connection opens and raises :class:`AsyncpgContractError`, naming the
installed asyncpg version, when a name is gone or its shape changed;
``tests/contracts/test_asyncpg_contract.py`` pins the shapes used.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import peewee

__all__ = [
    "AsyncpgContractError",
    "check",
    "detach_cancellations",
    "executor",
    "refused_before_sending",
    "transport",
]

# The parameters of Connection._execute this module passes, in order, then by keyword.
EXECUTE_POSITIONAL = ("query", "args", "limit", "timeout")
EXECUTE_KEYWORDS = ("return_status",)
# asyncpg's message when its protocol is in PROTOCOL_ERROR_CONSUME (2): it read
# a FATAL while idle and refuses every command until the close arrives.
_REFUSED = "another operation (2) is in progress"

_checked = False


class AsyncpgContractError(peewee.ImproperlyConfigured):
    """The installed asyncpg lacks a private name fastpeewee uses, or its shape changed."""


def _version() -> str:
    import asyncpg

    return str(getattr(asyncpg, "__version__", "unknown"))


def _broken(what: str) -> AsyncpgContractError:
    return AsyncpgContractError(
        f"fastpeewee uses asyncpg's private {what}, which asyncpg {_version()} does not "
        "provide as expected; install an asyncpg version fastpeewee supports "
        "(see fastpeewee.contracts.asyncpg) or upgrade fastpeewee"
    )


def check(connection_class: Any) -> None:
    """Verify, once, that ``asyncpg.Connection`` still has ``_execute`` as used here.

    Raises :class:`AsyncpgContractError` naming the asyncpg version otherwise.
    """
    global _checked
    if _checked:
        return
    execute = getattr(connection_class, "_execute", None)
    if execute is None or not inspect.iscoroutinefunction(execute):
        raise _broken("coroutine Connection._execute")
    params = inspect.signature(execute).parameters
    names = list(params)[1 : 1 + len(EXECUTE_POSITIONAL)]
    if tuple(names) != EXECUTE_POSITIONAL or not all(k in params for k in EXECUTE_KEYWORDS):
        raise _broken(f"Connection._execute{inspect.signature(execute)}")
    if "_cancellations" not in getattr(connection_class, "__slots__", ()):
        raise _broken("Connection._cancellations")
    _checked = True


def executor(raw: Any) -> Callable[[str, Sequence[Any]], Awaitable[Any]]:
    """``raw``'s statement-cache execute, as ``executor(sql, args)``: it awaits to
    ``(rows, status, completed)``, ``status`` the command tag as bytes
    (``b"UPDATE 3"``). Made once per connection: a call costs no more than
    asyncpg's own."""
    return functools.partial(raw._execute, limit=0, timeout=None, return_status=True)


def transport(raw: Any) -> Any:
    """The asyncio transport of an asyncpg connection (None once it is closed)."""
    try:
        return raw._transport
    except AttributeError:
        raise _broken("Connection._transport") from None


def detach_cancellations(raw: Any) -> set[asyncio.Task[Any]]:
    """Take the CancelRequests asyncpg is still sending for ``raw`` out of its
    hands and return them: ``raw.terminate()`` then no longer cancels them (which
    closes their sockets at once); each ends when the server closes its socket,
    or at asyncpg's ``command_timeout``."""
    try:
        pending = raw._cancellations
    except AttributeError:
        raise _broken("Connection._cancellations") from None
    # asyncpg's own cancel task discards itself from whichever set is there when it ends.
    raw._cancellations = set()
    return {task for task in pending if not task.done()}


def refused_before_sending(exc: BaseException) -> bool:
    """True when asyncpg refused a command, sending nothing, because it had read
    the server's FATAL message and waits for the close."""
    return type(exc).__name__ == "InternalClientError" and _REFUSED in str(exc)
