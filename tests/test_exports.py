"""The public surface: exactly what __all__ lists, sorted, documented."""

from __future__ import annotations

import inspect

import fastpeewee


def test_all_is_sorted_and_importable():
    assert fastpeewee.__all__ == sorted(fastpeewee.__all__)
    for name in fastpeewee.__all__:
        assert hasattr(fastpeewee, name), name


def test_public_names_match_all():
    public = {
        name
        for name, value in vars(fastpeewee).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(fastpeewee.__all__)


def test_every_public_name_has_a_docstring():
    for name in fastpeewee.__all__:
        assert inspect.getdoc(getattr(fastpeewee, name)), name


def test_pwasyncio_names_exist_on_the_databases():
    names = [
        "aconnect",
        "aclose",
        "is_closed",
        "close_pool",
        "aexecute_sql",
        "acreate_tables",
        "adrop_tables",
        "aexecute",
        "get",
        "first",
        "list",
        "scalar",
        "count",
        "exists",
        "aprefetch",
        "iterate",
        "run",
        "Model",
        "atomic",
        "transaction",
        "savepoint",
        "__aenter__",
        "__aexit__",
    ]
    databases = (
        fastpeewee.AsyncSqliteDatabase,
        fastpeewee.AsyncPostgresqlDatabase,
        fastpeewee.AsyncMySQLDatabase,
    )
    for cls in databases:
        for name in names:
            assert hasattr(cls, name), (cls.__name__, name)
    model_names = [
        "acreate",
        "aget",
        "aget_or_none",
        "aget_by_id",
        "aget_or_create",
        "aset_by_id",
        "adelete_by_id",
        "abulk_create",
        "abulk_update",
        "asave",
        "adelete_instance",
        "afetch",
    ]
    for name in model_names:
        assert hasattr(fastpeewee.AsyncModel, name), name
