"""The state every owner shares: the connection, the transaction stack, the release rules."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import peewee

from ..cursor import Cursor
from ..errors import (
    TransactionLost,
)

if TYPE_CHECKING:
    from ..database import AsyncDatabase
    from ..drivers.base import Bulk, Connection, Params


logger = logging.getLogger("fastpeewee.state")

# Bound on the rollback run when a connection goes back with a transaction open.
RELEASE_TIMEOUT = 5.0


class ConnectionState:
    """The connection and transaction state of one owner (peewee's ``_state``)."""

    __slots__ = ("commit_callbacks", "conn", "ctx", "db", "held", "lost", "transactions")

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.conn: Connection | None = None
        self.held = False  # connect() was called: keep a connection until close()
        self.lost = False  # the connection under an open transaction broke
        self.transactions: list[Any] = []
        self.ctx: list[Any] = []
        self.commit_callbacks: list[Any] = []

    @property
    def closed(self) -> bool:
        """True when this state holds no connection (peewee's ``_state.closed``)."""
        return self.conn is None and not self.held

    @property
    def busy(self) -> bool:
        """True while anything is open here: a connection, a transaction, a lost one."""
        return (
            self.conn is not None
            or self.held
            or self.lost
            or bool(self.transactions)
            or bool(self.ctx)
        )

    def set_connection(self, conn: Any) -> None:
        raise peewee.InterfaceError("fastpeewee databases manage their own connections")

    def connect(self, reuse_if_open: bool) -> bool:
        """Hold a connection until :meth:`close` (peewee's ``connect``); False when
        one is held already and ``reuse_if_open``."""
        if not self.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        self._hold()
        return True

    def _hold(self) -> None:
        """Take a connection and keep it until :meth:`close`."""
        raise NotImplementedError

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """Run one statement on this state's connection, or on a borrowed one.

        ``ending``: the statement ends the transaction (COMMIT, ROLLBACK).
        ``bulk``: rows to run ``sql`` for (executemany), or a COPY to run
        instead (see :func:`_run_sync` and :func:`_run_async`).
        """
        raise NotImplementedError

    def close(self) -> bool:
        """Give the held connection back; return whether one was open."""
        raise NotImplementedError

    # -- decisions shared by the sync and async states --------------------------

    def _lost_guard(self, sql: str, ending: bool) -> Cursor | None:
        """In a lost transaction, turn rollbacks into no-ops and refuse the rest."""
        if not self.lost:
            return None
        if sql.startswith("ROLLBACK"):
            if ending and not self.transactions:
                self.lost = False  # the transaction block is over
            return Cursor()
        if sql.startswith("BEGIN") and not self.transactions:
            self.lost = False  # a fresh transaction after the lost one
            return None
        raise TransactionLost(
            "the connection under this transaction broke (cancelled, timed out or "
            "killed by the server); the server rolled the transaction back, so nothing "
            "of it was committed. Leave the transaction block and retry it."
        )

    def _keep_after_borrow(self, conn: Connection) -> bool:
        """A borrowed connection stays with the state while it is in a transaction."""
        return not conn.broken and not conn.unsettled and conn.in_transaction()

    def _must_release(self, conn: Connection, ending: bool, failed: bool = False) -> bool:
        """After a statement on the state's connection, return True to let it go.

        Marks the transaction lost when the connection broke or its transaction
        vanished without a COMMIT/ROLLBACK of ours. On MySQL a statement that
        succeeds may commit implicitly (DDL): the connection then stays, as in
        peewee; one that fails and ends the transaction (a deadlock) loses it.
        """
        if conn.broken or conn.unsettled:
            self.lost = self.lost or bool(self.transactions)
            return True
        in_txn = conn.in_transaction()
        vanished = self.transactions and not in_txn and not ending
        if vanished and (failed or not conn.implicit_commits):
            self.lost = True
            return True
        return not in_txn and not self.held and not self.transactions

    def _forget(self) -> Connection | None:
        conn, self.conn = self.conn, None
        self.held = False
        self.lost = False
        self.ctx = []
        self.transactions = []
        self.commit_callbacks = []
        return conn

    def _check_close(self) -> None:
        if self.transactions:
            raise peewee.OperationalError(
                "Attempting to close database while transaction is open."
            )
