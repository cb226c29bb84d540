"""The peewee internals fastpeewee relies on, gathered in one place.

Everything else uses peewee's public, typed surface. If a peewee release
moves one of these, this module is the one to change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import peewee

__all__ = ["DRIVER_ERRORS", "connect_sqlite", "log_query", "notify_hooks", "prepare_insert"]

# Driver exception class name -> peewee exception class (peewee.EXCEPTIONS).
DRIVER_ERRORS = cast(dict[str, type[peewee.PeeweeException]], vars(peewee)["EXCEPTIONS"])


def connect_sqlite(db: peewee.SqliteDatabase) -> sqlite3.Connection:
    """Open a sqlite3 connection with the database's pragmas, functions and attachments."""
    return cast(sqlite3.Connection, vars(peewee.SqliteDatabase)["_connect"](db))


def log_query(db: Any, sql: str, params: Sequence[Any]) -> None:
    """Log a statement on the ``peewee`` logger, as peewee itself does."""
    vars(peewee.Database)["_log_query"](db, sql, params)


def notify_hooks(
    db: Any, sql: str, params: Sequence[Any], start: float, exc: Exception | None
) -> None:
    """Call the database's ``query_hooks`` with a ``QueryEvent``."""
    vars(peewee.Database)["_notify_hooks"](db, sql, params, start, exc)


def prepare_insert(query: Any, db: Any) -> Any:
    """Do what ``Insert._execute`` does before running: return the new primary key
    (``RETURNING``) when the database supports it."""
    if query._returning is None and db.returning_clause:
        returning = query._pk_returning()
        if returning:
            query._returning = returning
            query._row_type = peewee.ROW.TUPLE
    return query
