"""Open a fastpeewee database from a URL, like ``playhouse.db_url.connect``.

``connect("sqlite:///app.db")``, ``connect("postgresql://user:pw@host:5432/db")``,
``connect("mysql://user:pw@host:3306/db")``.
Query-string arguments become constructor arguments
(``?pool_size=20&acquire_timeout=2.5``); keyword arguments override them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playhouse.db_url import parse

from .backends.mysql import AsyncMySQLDatabase
from .backends.postgres import AsyncPostgresqlDatabase
from .backends.sqlite import AsyncSqliteDatabase
from .database import AsyncDatabase

__all__ = ["connect", "schemes"]

# URL scheme -> database class; add an entry to open a subclass of your own.
schemes: dict[str, type[AsyncDatabase]] = {
    "sqlite": AsyncSqliteDatabase,
    "postgres": AsyncPostgresqlDatabase,
    "postgresql": AsyncPostgresqlDatabase,
    "mysql": AsyncMySQLDatabase,
    "mariadb": AsyncMySQLDatabase,
}
# Query-string values playhouse would turn into numbers, booleans or None when
# they look like one; these are credentials, kept as the text written.
_TEXT_PARAMS = frozenset({"user", "password", "passwd"})


def connect(url: str, **kwargs: Any) -> AsyncDatabase:
    """Return the fastpeewee database a URL describes (nothing is opened yet).

    User names and passwords are percent-decoded, so ``p%40ss`` means ``p@ss``.
    """
    scheme = url.split(":", 1)[0].lower()
    database_class = schemes.get(scheme)
    if database_class is None:
        known = ", ".join(sorted(schemes))
        raise ValueError(f"unsupported database URL scheme {scheme!r}; known: {known}")
    params: dict[str, Any] = parse(url, unquote_password=True, unquote_user=True)
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key in _TEXT_PARAMS:
            params[key] = value
    if "passwd" in params:  # playhouse renames it for MySQL; both drivers take password
        params["password"] = params.pop("passwd")
    params.update(kwargs)
    database = params.pop("database")
    return database_class(database, **params)
