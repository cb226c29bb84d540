"""Which failed statements may run again, once, on a fresh connection.

A connection the server closed is normally caught before it is handed out
(``Connection.usable_idle()``, and the pool's ping). What slips through is a
close the driver half-knows: asyncpg has read PostgreSQL's FATAL
"terminating connection" while idle but not yet the close that follows it a
few milliseconds later, and then refuses every command *before sending it*.
Such a statement never reached the server, so running it again on another
connection from the pool cannot run it twice.

The rule, all of it here:

- only a statement on a connection borrowed for it alone, outside any
  transaction of the caller (a transaction is never silently moved to
  another connection: that is :class:`~fastpeewee.TransactionLost`);
- only when the driver failed before writing the statement, because the
  connection was already dead (:func:`failed_before_sending`); never when
  it may have reached the server (a reply lost mid-statement, a timeout, a
  cancellation), whatever the statement;
- once, on a new connection: ``Pool.replace()`` / ``areplace()`` closes the
  dead one and opens a connection in its slot (an idle one might have died
  the same way); the retry's own failure reaches the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee

if TYPE_CHECKING:
    from .base import Connection

__all__ = ["NotSent", "failed_before_sending", "may_retry"]

# MySQL client error CR_SERVER_GONE_ERROR. asyncmy raises it from
# _write_bytes() when the transport is already closed, PyMySQL when the
# socket refuses the write: in both, before the packet left. (CR_SERVER_LOST,
# 2013, is the reply lost after sending: never retried.)
_SERVER_GONE = 2006


class NotSent(ConnectionError):
    """A driver refused a statement before sending it: the server had ended the session.

    Raised by a backend in place of a driver error that says less (asyncpg's
    ``InternalClientError``, see ``backends/postgres.py``), from that error.
    Callers see it as :class:`peewee.OperationalError`, the link being lost.
    """


def may_retry(conn: Connection, exc: BaseException) -> bool:
    """True when the statement that raised ``exc`` on ``conn`` may run again elsewhere.

    For a connection the caller took from the pool for this statement, outside
    any transaction of its own. ``exc`` is the driver's exception or the peewee
    error wrapping it. Example::

        except Exception as exc:
            if not may_retry(conn, exc):
                raise
            conn = await pool.areplace(conn)   # then run the statement once more
    """
    if not isinstance(exc, Exception):
        return False  # cancelled or interrupted: the statement's fate is unknown
    return failed_before_sending(exc)


def failed_before_sending(exc: BaseException) -> bool:
    """True when the driver raised ``exc`` before writing anything, the link being dead."""
    cause = exc.__cause__ if isinstance(exc, peewee.PeeweeException) else exc
    if cause is None:
        return False
    if isinstance(cause, NotSent):
        return True
    driver = type(cause).__module__.partition(".")[0]
    name = type(cause).__name__
    message = str(cause)
    if driver == "asyncpg":
        return _asyncpg_unsent(name, message)
    if driver in ("asyncmy", "pymysql"):
        return _mysql_unsent(name, cause, driver)
    return False


def _asyncpg_unsent(name: str, message: str) -> bool:
    # A FATAL read while idle, the close not yet: the backend raises NotSent.
    # Connection._check_open() / Protocol._check_state(): closed before the command.
    if name == "InterfaceError":
        return message in (
            "connection is closed",
            "cannot perform operation: connection is closed",
        )
    return False


def _mysql_unsent(name: str, exc: BaseException, driver: str) -> bool:
    args = exc.args
    code = args[0] if args and isinstance(args[0], int) else None
    if name == "OperationalError":
        return code == _SERVER_GONE
    if name != "InterfaceError" or code != 0:
        return False
    # _execute_command() of a connection already closed: PyMySQL says nothing
    # more; asyncmy says why ("Not connected", the close reason), and raises
    # InterfaceError(0, "") only from a LOAD DATA LOCAL transfer, after sending.
    message = args[1] if len(args) > 1 else ""
    return driver == "pymysql" or bool(message)
