"""Connection state per owner: a thread, an asyncio task, or a ``db.scope()`` block.

A :class:`ConnectionState` is what peewee keeps in ``Database._state``: the
connection, the transaction stack, the ``connection_context`` stack and the
after-commit callbacks. :class:`ThreadState` serves a thread with no event
loop; :class:`TaskState` an asyncio task; :class:`SharedState` a
``db.scope()`` block (a request), with a :class:`PrivateState` for a thread
of it while somebody else's transaction holds the shared connection. The
rules, the same for every kind of state:

- A statement run outside an open connection borrows one from the pool and
  returns it straight after, unless the statement left a transaction open
  (``BEGIN``, a savepoint): then the state keeps the connection until that
  transaction ends.
- ``connect()`` / ``aconnect()`` (and ``with db``, ``async with db``,
  ``connection_context()``) hold a connection until ``close()``.
- A task's held connection goes back when the task ends; an open transaction
  is rolled back first.
- When the connection under an open transaction breaks, or a statement of it
  is interrupted (cancelled, timed out), the transaction is *lost*: every
  statement but a rollback raises :class:`TransactionLost` until the
  transaction block ends. There is never a silent reconnect inside it.
- A connection whose statement was interrupted is *unsettled*: its fate on the
  server is unknown (a ``BEGIN`` may still land), so it is never handed on
  before :meth:`Connection.asettle` brought it back to a known idle state, or
  it is closed.
- In a shared state (a request) a transaction belongs to whoever began it (a
  task, with the threads it runs): the others never run inside it, and use a
  state of their own while it is open.
"""

from .base import RELEASE_TIMEOUT, ConnectionState
from .shared import Reroute, SharedState
from .task import AsyncState, PrivateState, TaskState
from .thread import ThreadState, ThreadStates

__all__ = [
    "RELEASE_TIMEOUT",
    "AsyncState",
    "ConnectionState",
    "PrivateState",
    "Reroute",
    "SharedState",
    "TaskState",
    "ThreadState",
    "ThreadStates",
]
