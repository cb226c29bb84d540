"""The exceptions fastpeewee adds to peewee's own tree, driver-error translation,
and which errors mean the database is unavailable.

Every pool error subclasses :class:`peewee.OperationalError`, so existing
``except peewee.OperationalError`` blocks keep catching them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import peewee

from .contracts.peewee import DRIVER_ERRORS

__all__ = [
    "MissingGreenletBridge",
    "PoolBackoff",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "TooManyWaiters",
    "TransactionLost",
    "UnloadedRelation",
    "is_unavailable",
    "mask_password",
    "translate_errors",
    "wrap_driver_error",
]

BRIDGE_HINT = (
    "Hint: in async code use the async API, e.g. `await Model.aget(...)`, "
    "`await query.aexecute()`, `await db.list(query)`, or run sync code with "
    "`await db.run(fn)`; for a lazy foreign key use `await obj.afetch(Model.field)`; "
    "for rows with the relations a pydantic schema reads use "
    "`await fastpeewee.afetch(query, Schema)`."
)


class MissingGreenletBridge(RuntimeError):
    """A blocking peewee call was made on the event-loop thread outside ``db.run``.

    Example::

        await User.aget(User.id == 1)      # not: User.get(User.id == 1)
    """


class PoolError(peewee.OperationalError):
    """Base class of the errors raised by a fastpeewee connection pool."""


class PoolTimeout(PoolError):
    """No connection became free within ``acquire_timeout`` seconds."""


class PoolBackoff(PoolError):
    """Connecting failed just now: the pool makes no new attempt until its back-off ends.

    Raised at once, without touching the network, in place of a connect
    while the pool backs off (see ``PoolConfig.connect_backoff``); raised
    ``from`` the last connect error. An outage: :func:`is_unavailable` is True.
    """


class TooManyWaiters(PoolError):
    """The pool's wait queue already holds ``max_waiting`` callers."""


class PoolClosed(PoolError, peewee.InterfaceError):
    """The pool was closed while the caller used or waited for it."""


class TransactionLost(peewee.OperationalError):
    """The connection holding an open transaction broke (cancelled, killed or timed out).

    The server rolled the transaction back; nothing of it was committed.
    """


# Names peewee's own table does not know, walked along the exception's MRO.
_EXTRA_NAMES: dict[str, type[peewee.PeeweeException]] = {
    "ConnectionDoesNotExistError": peewee.OperationalError,
    "ConnectionFailureError": peewee.OperationalError,
    "CannotConnectNowError": peewee.OperationalError,
    "TooManyConnectionsError": peewee.OperationalError,
    "InvalidAuthorizationSpecificationError": peewee.OperationalError,
    "InvalidCatalogNameError": peewee.OperationalError,
    "QueryCanceledError": peewee.OperationalError,
    # asyncpg's bases of SQLSTATE classes 08, 57 and 53, OperationalError in
    # psycopg too: a backend terminated (57P01) is the same error on both sides.
    "PostgresConnectionError": peewee.OperationalError,
    "OperatorInterventionError": peewee.OperationalError,
    "InsufficientResourcesError": peewee.OperationalError,
    "PostgresError": peewee.DatabaseError,
    "MySQLError": peewee.DatabaseError,  # PyMySQL's and asyncmy's base class
}
_NAMES: dict[str, type[peewee.PeeweeException]] = {**DRIVER_ERRORS, **_EXTRA_NAMES}
_NETWORK = (OSError, EOFError, asyncio.TimeoutError)


def peewee_error_for(exc: BaseException) -> type[peewee.PeeweeException] | None:
    """Return the peewee exception class matching a driver exception, if any."""
    if isinstance(exc, peewee.PeeweeException):
        return None
    for klass in type(exc).__mro__:
        target = _NAMES.get(klass.__name__)
        if target is not None:
            return target
    if isinstance(exc, _NETWORK):
        return peewee.OperationalError
    return None


def wrap_driver_error(
    target: type[peewee.PeeweeException], exc: BaseException
) -> peewee.PeeweeException:
    """``target`` for the driver exception ``exc``, built as peewee builds it
    (``exc`` first, then its arguments), with a message when ``exc`` has none."""
    if exc.args:
        return target(exc, *exc.args)
    if isinstance(exc, asyncio.TimeoutError):
        reason = (
            "timed out: the server did not answer within the driver's timeout "
            "(command_timeout / read_timeout, or the connect timeout)"
        )
    else:
        reason = f"{type(exc).__name__} from the database driver"
    return target(exc, reason)


# Words of a message, between blanks and quotes: a URL is one of them.
_WORD = re.compile(r"""[^\s'"]+""")
# ``password=...`` in a query string or a libpq conninfo (``sslpassword``,
# MySQL's ``passwd`` too), and ``'password': '...'`` in a dict's repr. The
# value is quoted (libpq escapes with a backslash) or runs to the next
# separator; a quoted one is cut at 1024 characters, so that a message full of
# unclosed quotes costs linear time, not quadratic.
_KEY_PASSWORD = re.compile(
    r"""(\b\w*(?:password|passwd|pwd)['"]?\s*[:=]\s*)"""
    r"""(?:'(?:\\.|[^'\\]){0,1024}'?|"(?:\\.|[^"\\]){0,1024}"?|[^\s&#'"]+)""",
    re.IGNORECASE,
)


def mask_password(text: str) -> str:
    """Hide every password in a DSN (or a message quoting one).

    Example::

        mask_password("postgresql://ann:pw@host/db")       # postgresql://ann:***@host/db
        mask_password("postgresql://ann@host/db?password=pw")  # ...?password=***
        mask_password("host=h password=pw dbname=db")      # host=h password=*** dbname=db
    """
    text = _WORD.sub(_mask_userinfo, text) if "://" in text else text
    return _KEY_PASSWORD.sub(r"\1***", text)


def _mask_userinfo(word: re.Match[str]) -> str:
    """A URL's user-info password: from the ':' after the user name to the last
    '@' of the word, since a careless URL leaves '/' or '@' unescaped in it."""
    url = word[0]
    start = url.find("://") + 3
    at = url.rfind("@")
    colon = url.find(":", start, at) if start > 2 and at > start else -1
    if colon < 0 or any(c in url[start:colon] for c in "/?#@"):
        return url
    return f"{url[: colon + 1]}***{url[at:]}"


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver exceptions as the matching peewee exception (``from`` the original)."""
    try:
        yield
    except Exception as exc:
        target = peewee_error_for(exc)
        if target is None:
            raise
        raise wrap_driver_error(target, exc) from exc


class UnloadedRelation(MissingGreenletBridge):
    """A schema touched a relation that was not loaded, in async code.

    Loading it there would be a blocking query on the event loop (and one
    query per row). Load rows with their relations instead::

        users = await fastpeewee.afetch(User.select(), UserRead)
    """


# -- is the database unavailable? ------------------------------------------------
# "Retry later" (an HTTP 503) versus "this is a bug" (a 500): only failures of
# the link to the server, or of the server as a whole, count. A syntax error or
# a missing table is an OperationalError on SQLite, and a wrong password or
# database name will not heal by retrying: those are not outages.

# PostgreSQL SQLSTATEs (asyncpg's and psycopg's errors carry them). Class 08 is
# "connection exception", but for 08P01, a protocol violation: a bug.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08"})
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: pg_terminate_backend(), or a fast shutdown
        "57P02",  # crash_shutdown: another backend crashed
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "57P05",  # idle_session_timeout (PostgreSQL 14+)
        "25P03",  # idle_in_transaction_session_timeout: the session was ended
        "53300",  # too_many_connections
        "25006",  # read_only_sql_transaction: a write reached a standby (failover)
    }
)
_AVAILABLE_SQLSTATES = frozenset({"08P01"})
# MySQL and MariaDB error numbers (args[0] of PyMySQL's and asyncmy's errors).
_UNAVAILABLE_MYSQL_CODES = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN
        1077, 1078, 1079, 1080,  # normal shutdown, got signal, shutdown complete, forcing close
        1152, 1184,  # ER_ABORTING_CONNECTION, ER_NEW_ABORTING_CONNECTION
        1158, 1159, 1160, 1161,  # ER_NET_READ_ERROR ... ER_NET_WRITE_INTERRUPTED
        1203,  # ER_TOO_MANY_USER_CONNECTIONS
        1927,  # ER_CONNECTION_KILLED (MariaDB's KILL)
        2002, 2003, 2005,  # client: cannot connect (socket, TCP), unknown host
        2006, 2013, 2055,  # client: server gone away, connection lost
        3169,  # ER_SESSION_WAS_KILLED (MySQL 8)
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    }
)  # fmt: skip
# SQLite primary result codes: the file is locked by another writer, cannot be
# read or cannot be opened. SQLITE_LOCKED (6) is a conflict inside one
# connection: a bug, like a syntax error.
_UNAVAILABLE_SQLITE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)
# A driver's InterfaceError for an operation on a connection that is closed
# (asyncpg, psycopg); its other InterfaceErrors are misuse.
_CLOSED_MESSAGES = ("connection is closed", "connection already closed")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot serve now, so a retry later may work.

    The server is down or refusing connections, the connection was killed or
    lost, the pool is exhausted or closed, or the transaction was lost. False
    for everything else, programming errors included. Framework-neutral::

        except peewee.DatabaseError as exc:
            status = 503 if is_unavailable(exc) else 500
    """
    if isinstance(exc, (PoolError, TransactionLost)):
        return True
    return any(_link_failed(cause) for cause in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from (peewee's ``.orig``, ``__cause__``).

    Never ``__context__``: an error raised while another was being handled
    was not caused by it.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8 and all(current is not c for c in chain):
        chain.append(current)
        orig = getattr(current, "orig", None)  # set by peewee only when it wrapped one
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def _link_failed(exc: BaseException) -> bool:
    """Whether one driver exception (not peewee's wrapper) is an outage."""
    if isinstance(exc, peewee.PeeweeException):
        return False  # peewee's own errors are misuse; a wrapped driver error decides
    if isinstance(exc, _NETWORK):  # refused, reset, timed out, unknown host
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in _UNAVAILABLE_SQLITE_CODES
    names = {klass.__name__ for klass in type(exc).__mro__}
    if "MySQLError" in names:
        code = exc.args[0] if exc.args else None
        closed = code == 0 and "InterfaceError" in names  # PyMySQL's "(0, '')"
        return closed or code in _UNAVAILABLE_MYSQL_CODES
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str):
        return _sqlstate_unavailable(sqlstate)
    if "OperationalError" in names:
        return True  # psycopg's with no SQLSTATE: the server never answered
    message = str(exc)
    return "InterfaceError" in names and any(m in message for m in _CLOSED_MESSAGES)


def _sqlstate_unavailable(sqlstate: str) -> bool:
    if sqlstate in _AVAILABLE_SQLSTATES:
        return False
    return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
