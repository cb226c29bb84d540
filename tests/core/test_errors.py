"""Driver errors become peewee's; messages carry numbers and never passwords."""

from __future__ import annotations

import sqlite3

import peewee
import pytest

from fastpeewee import AsyncPostgresqlDatabase, PoolTimeout
from fastpeewee.errors import mask_password, peewee_error_for, translate_errors


def test_driver_errors_map_to_peewee_classes():
    assert peewee_error_for(sqlite3.IntegrityError("x")) is peewee.IntegrityError
    assert peewee_error_for(sqlite3.OperationalError("x")) is peewee.OperationalError
    assert peewee_error_for(ConnectionResetError()) is peewee.OperationalError
    assert peewee_error_for(ValueError()) is None
    assert peewee_error_for(peewee.IntegrityError()) is None  # already translated


def test_mysql_driver_errors_map_to_peewee_classes():
    asyncmy_errors = pytest.importorskip("asyncmy.errors")
    pymysql = pytest.importorskip("pymysql")
    for errors in (asyncmy_errors, pymysql.err):
        assert peewee_error_for(errors.IntegrityError(1062, "dup")) is peewee.IntegrityError
        assert peewee_error_for(errors.OperationalError(2013, "lost")) is peewee.OperationalError
        assert peewee_error_for(errors.ProgrammingError(1064, "syntax")) is peewee.ProgrammingError
        assert peewee_error_for(errors.InterfaceError(0, "")) is peewee.InterfaceError
        assert peewee_error_for(errors.DataError(1406, "too long")) is peewee.DataError
        assert peewee_error_for(errors.InternalError(1, "x")) is peewee.InternalError
        assert peewee_error_for(errors.NotSupportedError(1, "x")) is peewee.NotSupportedError
        assert peewee_error_for(errors.MySQLError("base")) is peewee.DatabaseError


def test_translation_keeps_the_original_as_cause():
    with pytest.raises(peewee.IntegrityError) as caught, translate_errors():
        raise sqlite3.IntegrityError("UNIQUE constraint failed")
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert caught.value.orig is caught.value.__cause__  # type: ignore[attr-defined]
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("not a driver error")


def test_pool_timeout_is_an_operational_error():
    assert issubclass(PoolTimeout, peewee.OperationalError)


def test_passwords_are_masked_in_pool_names():
    assert (
        mask_password("postgresql://ann:s3cret@db:5432/app") == "postgresql://ann:***@db:5432/app"
    )
    assert mask_password("postgresql://ann@db/app") == "postgresql://ann@db/app"
    db = AsyncPostgresqlDatabase("postgresql://ann:s3cret@127.0.0.1:1/app")
    assert "s3cret" not in db._pool_name()
