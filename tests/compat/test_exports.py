"""The compat modules' public surfaces: sorted, importable, documented, complete."""

from __future__ import annotations

import inspect

import pytest

import fastpeewee.compat.peewee_async as peewee_async
import fastpeewee.compat.peewee_asyncext as peewee_asyncext

MODULES = [peewee_async, peewee_asyncext]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_documented_and_complete(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    # ruff's order (RUF022): CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"
    }
    assert public == set(names)
    for name in names:
        assert inspect.getdoc(getattr(module, name)), name


def test_the_documented_peewee_async_names_exist() -> None:
    documented = [
        "Manager",
        "execute",
        "get_object",
        "create_object",
        "delete_object",
        "update_object",
        "prefetch",
        "count",
        "scalar",
        "atomic",
        "transaction",
        "savepoint",
        "PostgresqlDatabase",
        "PooledPostgresqlDatabase",
        "MySQLDatabase",
        "PooledMySQLDatabase",
        "AioModel",
        "aio_prefetch",
        "connection_context",
    ]
    for name in documented:
        assert hasattr(peewee_async, name), name
    manager = [
        "get",
        "get_or_none",
        "create",
        "update",
        "delete",
        "get_or_create",
        "create_or_get",
        "execute",
        "prefetch",
        "count",
        "scalar",
        "connect",
        "close",
        "atomic",
        "transaction",
        "savepoint",
        "allow_sync",
        "database",
    ]
    for name in manager:
        assert hasattr(peewee_async.Manager, name), name
    database = [
        "connect_async",
        "close_async",
        "atomic_async",
        "transaction_async",
        "savepoint_async",
        "allow_sync",
        "set_allow_sync",
        "aio_connect",
        "aio_close",
        "aio_atomic",
        "aio_execute",
        "is_connected",
        "connection_context",
    ]
    classes = [
        peewee_async.PostgresqlDatabase,
        peewee_async.PooledPostgresqlDatabase,
        peewee_async.MySQLDatabase,
        peewee_async.PooledMySQLDatabase,
        peewee_asyncext.PostgresqlExtDatabase,
        peewee_asyncext.PooledPostgresqlExtDatabase,
    ]
    for cls in classes:
        for name in database:
            assert hasattr(cls, name), (cls.__name__, name)
    aio = [
        "aio_get",
        "aio_get_or_none",
        "aio_create",
        "aio_get_or_create",
        "aio_save",
        "aio_delete_instance",
    ]
    for name in aio:
        assert hasattr(peewee_async.AioModel, name), name
    for name in [
        "aio_execute",
        "aio_get",
        "aio_scalar",
        "aio_count",
        "aio_exists",
        "aio_prefetch",
    ]:
        assert hasattr(peewee_async.AioModelSelect, name), name
