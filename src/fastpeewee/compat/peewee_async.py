"""The API of peewee-async 0.6-0.12 on fastpeewee: ``Manager``, the module-level
functions, the database classes and ``AioModel``.

Old code keeps its spelling::

    import fastpeewee.compat.peewee_async as peewee_async

    database = peewee_async.PooledPostgresqlDatabase("test", max_connections=20)
    objects = peewee_async.Manager(database)
    user = await objects.get(User, id=1)

Differences from peewee-async, on purpose: each task holds its own pooled
connection (and transaction); ``allow_sync`` is per task; sync queries on
the event loop run as in peewee-async but each call site logs one warning
naming the async call to use (``db.set_allow_sync(False)`` refuses them);
sync code in threads always works; ``Manager.delete`` goes through the
model's ``delete_instance``; no DeprecationWarnings. See ``docs/migrating-from-peewee-async.md``.
"""

from __future__ import annotations

from ._aio_model import (
    AioModel,
    AioModelCompoundSelectQuery,
    AioModelDelete,
    AioModelInsert,
    AioModelRaw,
    AioModelSelect,
    AioModelUpdate,
    AioSelect,
    aio_prefetch,
)
from ._connection import ConnectionContext, ConnectionContextVar, HeldConnection
from ._databases import (
    MySQLDatabase,
    PeeweeAsyncDatabaseMixin,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PostgresqlDatabase,
    SqliteDatabase,
)
from ._functions import (
    atomic,
    count,
    create_object,
    delete_object,
    execute,
    get_object,
    prefetch,
    savepoint,
    scalar,
    transaction,
    update_object,
)
from ._manager import Manager
from ._sync_guard import WARN_ONCE, SyncQueryNotAllowed
from ._urls import register_schemes as _register_schemes

_register_schemes()  # playhouse.db_url: "postgresql+pool+async://...", as peewee-async did

connection_context = ConnectionContextVar()
"""Stand-in for peewee-async 0.12's ``connection_context`` variable (``.get()`` only)."""

__all__ = [
    "WARN_ONCE",
    "AioModel",
    "AioModelCompoundSelectQuery",
    "AioModelDelete",
    "AioModelInsert",
    "AioModelRaw",
    "AioModelSelect",
    "AioModelUpdate",
    "AioSelect",
    "ConnectionContext",
    "ConnectionContextVar",
    "HeldConnection",
    "Manager",
    "MySQLDatabase",
    "PeeweeAsyncDatabaseMixin",
    "PooledMySQLDatabase",
    "PooledPostgresqlDatabase",
    "PostgresqlDatabase",
    "SqliteDatabase",
    "SyncQueryNotAllowed",
    "aio_prefetch",
    "atomic",
    "connection_context",
    "count",
    "create_object",
    "delete_object",
    "execute",
    "get_object",
    "prefetch",
    "savepoint",
    "scalar",
    "transaction",
    "update_object",
]
