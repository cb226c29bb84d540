"""The peewee internals fastpeewee relies on, gathered in one place.

Everything else uses peewee's public, typed surface. If a peewee release
moves one of these, this module is the one to change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import peewee

__all__ = [
    "DRIVER_ERRORS",
    "connect_sqlite",
    "load_tree",
    "log_query",
    "notify_hooks",
    "prepare_insert",
    "query_limit",
    "returns_models",
    "set_mysql_server_version",
]

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


def query_limit(query: Any) -> int | None:
    """The LIMIT set on a select query, if any."""
    return cast("int | None", query._limit)


def load_tree(query: Any) -> tuple[Any, ...]:
    """The ``Load`` nodes already set on a query by ``with_related``."""
    return tuple(query._load_tree or ())


def returns_models(query: Any) -> bool:
    """True when a model select hydrates model instances (not dicts or tuples)."""
    return bool(query._model_rows())


def set_mysql_server_version(db: peewee.MySQLDatabase, version: str) -> None:
    """Record a MySQL/MariaDB server version as peewee's ``connect()`` does.

    Besides ``server_version``, peewee then knows whether the server accepts
    parenthesised compound-select members (MariaDB 10.4+, MySQL 8.0.22+).
    """
    vars(peewee.MySQLDatabase)["_set_server_version"](db, _VersionInfo(version))


class _VersionInfo:
    """What peewee's ``_set_server_version`` reads from a connection."""

    def __init__(self, version: str) -> None:
        self.server_version = version


def prepare_insert(query: Any, db: Any) -> Any:
    """Do what ``Insert._execute`` does before running: return the new primary key
    (``RETURNING``) when the database supports it."""
    if query._returning is None and db.returning_clause:
        returning = query._pk_returning()
        if returning:
            query._returning = returning
            query._row_type = peewee.ROW.TUPLE
    return query
