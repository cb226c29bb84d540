"""Backends for the suite: a SQLite file per test, one throwaway PostgreSQL cluster
and one throwaway MariaDB server (the ``mysql`` backend).

``FASTPEEWEE_BACKENDS=sqlite`` (comma-separated) limits the backends. With
``CI=true`` a server that cannot start fails the run; locally its tests skip
with a loud message.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import peewee
import pytest

from fastpeewee import (
    AsyncDatabase,
    AsyncMySQLDatabase,
    AsyncPostgresqlDatabase,
    AsyncSqliteDatabase,
)

from .models import MODELS, bind_models
from .servers import MariaDBServer, PostgresServer, ServerUnavailable

ALL_BACKENDS = ("sqlite", "postgres", "mysql")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_unavailable: dict[str, str] = {}


def selected_backends() -> list[str]:
    wanted = os.environ.get("FASTPEEWEE_BACKENDS")
    if not wanted:
        return list(ALL_BACKENDS)
    return [b.strip() for b in wanted.split(",") if b.strip() in ALL_BACKENDS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("backends")
        names = [b for b in selected_backends() if only is None or b in only.args]
        metafunc.parametrize("backend", names, indirect=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, reason in _unavailable.items():
        terminalreporter.write_sep("!", f"{name.upper()} TESTS SKIPPED: {reason}", red=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        if ON_CI:
            pytest.fail(f"PostgreSQL must run on CI: {exc}", pytrace=False)
        _unavailable["postgres"] = str(exc)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    try:
        server = MariaDBServer.start()
    except ServerUnavailable as exc:
        if ON_CI:
            pytest.fail(f"MariaDB must run on CI: {exc}", pytrace=False)
        _unavailable["mysql"] = str(exc)
        pytest.skip(f"MariaDB unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> AsyncDatabase:
    """A fresh database object for ``backend`` with small, fast-failing pools."""
    options = {"pool_size": 4, "acquire_timeout": 2.0, **options}
    if backend == "sqlite":
        return AsyncSqliteDatabase(str(tmp_path / "test.db"), **options)
    if backend == "mysql":
        maria: MariaDBServer = request.getfixturevalue("mariadb_server")
        # The test server has no TLS; PyMySQL would otherwise build a TLS
        # context (~60 ms) for every connection only to find that out.
        options.setdefault("ssl_disabled", True)
        return AsyncMySQLDatabase(maria.database, **maria.connect_params, **options)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return AsyncPostgresqlDatabase(server.database, **server.connect_params, **options)


def assert_no_leaks(db: AsyncDatabase) -> None:
    """Every connection went back to its pool."""
    for stats in db.pool_stats():
        assert stats.in_use == 0, f"leaked connection(s): {stats}"
        assert stats.waiting == 0, f"stuck waiter(s): {stats}"


async def settle(db: AsyncDatabase) -> None:
    """Let releases scheduled by finished tasks run."""
    for _ in range(100):
        if not db._releasing and all(s.in_use == 0 for s in db.pool_stats()):
            return
        await asyncio.sleep(0.01)


@asynccontextmanager
async def model_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> AsyncIterator[Any]:
    """A database with fresh tables for the test models, checked for leaks at the end."""
    database = make_database(backend, request, tmp_path, **options)
    bind_models(database)
    await asyncio.to_thread(_reset_tables, database)
    yield database
    await settle(database)
    try:
        assert_no_leaks(database)
    finally:
        await database.close_pool()
        database.close_all()


@pytest.fixture
async def busy_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Any]:
    """A database for heavy concurrent tests: 5 connections, patient acquires, WAL on SQLite."""
    options: dict[str, Any] = {"pool_size": 5, "acquire_timeout": 30.0}
    if backend == "sqlite":
        options["pragmas"] = {"journal_mode": "wal"}
    async with model_database(backend, request, tmp_path, **options) as database:
        yield database


@pytest.fixture
async def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """The backend's database with the test models' tables, checked for leaks afterwards."""
    async with model_database(backend, request, tmp_path) as database:
        yield database


def _reset_tables(database: peewee.Database) -> None:
    if isinstance(database, AsyncMySQLDatabase) and _truncate_mysql_tables(database):
        return
    database.drop_tables(MODELS, safe=True)
    database.create_tables(MODELS)
    if isinstance(database, AsyncMySQLDatabase):
        _mysql_schema[database.database] = _schema_of(database)


# MySQL DDL costs ~20-40 ms a statement; TRUNCATE of known-good tables is ~3 ms.
_mysql_schema: dict[str, object] = {}


def _schema_of(database: peewee.Database) -> object:
    sql = (
        "SELECT table_name, column_name, column_type FROM information_schema.columns "
        "WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position"
    )
    return tuple(tuple(row) for row in database.execute_sql(sql).fetchall())


def _truncate_mysql_tables(database: peewee.Database) -> bool:
    """Empty the model tables in place when the schema is the one last created."""
    expected = _mysql_schema.get(database.database)
    with database.connection_context():
        if expected is None or _schema_of(database) != expected:
            return False
        database.execute_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for model in MODELS:
                database.execute_sql(f"TRUNCATE TABLE `{model._meta.table_name}`")
        finally:
            database.execute_sql("SET FOREIGN_KEY_CHECKS = 1")
    return True


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Surface unclosed-resource warnings in the test that caused them."""
    yield
    gc.collect()
