"""Backends for the suite: a SQLite file per test, one throwaway PostgreSQL cluster
and one throwaway MariaDB server (the ``mysql`` backend).

``FASTPEEWEE_BACKENDS=sqlite`` (comma-separated) limits the backends. With
``CI=true`` a server that cannot start fails the run; locally its tests skip
with a loud message. ``FASTPEEWEE_TEST_POSTGRES_URL`` and
``FASTPEEWEE_TEST_MYSQL_URL`` use an existing server instead of a throwaway one
(see tests/servers.py); tests marked ``own_server`` skip on it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
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

from . import pgbouncer
from .models import MODELS, bind_models
from .servers import (
    URL_VARIABLES,
    ExistingServer,
    MariaDBServer,
    PostgresServer,
    ServerUnavailable,
)

# What make_database returns: an AsyncDatabase that is also a peewee Database.
AnyDatabase = AsyncSqliteDatabase | AsyncPostgresqlDatabase | AsyncMySQLDatabase

ALL_BACKENDS = ("sqlite", "postgres", "mysql")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_unavailable: dict[str, str] = {}


def selected_backends() -> list[str]:
    wanted = os.environ.get("FASTPEEWEE_BACKENDS")
    if not wanted:
        return [*ALL_BACKENDS, "pgbouncer"]
    known = (*ALL_BACKENDS, "pgbouncer")
    return [b.strip() for b in wanted.split(",") if b.strip() in known]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("backends")
        selected = selected_backends()
        names = [b for b in selected if b != "pgbouncer" and (only is None or b in only.args)]
        # PostgreSQL behind PgBouncer (tests/pgbouncer.py), for the suites opted in.
        allowed = only is None or {"postgres", "pgbouncer"} & set(only.args)
        if "pgbouncer" in selected and allowed and pgbouncer.opted_in(metafunc.definition.nodeid):
            names.append("pgbouncer")
        metafunc.parametrize("backend", names, indirect=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, reason in _unavailable.items():
        terminalreporter.write_sep("!", f"{name.upper()} TESTS SKIPPED: {reason}", red=True)


# Tests that rely on what only a server the suite started gives, by node id
# prefix. They belong in an ``@pytest.mark.own_server(reason)`` in their module;
# this table marks them meanwhile.
OWN_SERVER_TESTS = {
    "tests/core/test_dsn_masking.py::test_pool_timeouts_and_logs_never_show_the_password": (
        "trust authentication: it connects with a made-up password",
        ("postgres",),
    ),
    "tests/faults/test_reliability.py::test_s10_a_stopped_database_answers_503_without_secrets": (
        "trust authentication: it connects with a made-up password",
        ("postgres",),
    ),
    "tests/faults/test_soak.py::test_a_30_second_soak": (
        "it restarts PostgreSQL: benchmarks.soak starts a cluster of its own",
        ("postgres",),
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    for kind in URL_VARIABLES:
        try:
            ExistingServer.from_environment(kind)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    _write_passfile(config)


def _write_passfile(config: pytest.Config) -> None:
    """Give the PostgreSQL URL's password to every libpq and asyncpg connection.

    Some tests pick ``host``, ``port`` and ``user`` out of ``connect_params`` to
    open a connection of their own (the throwaway cluster needs no password); a
    password file matching only this server and user serves those too, and an
    explicit password still wins over it.
    """
    server = ExistingServer.from_environment("postgres")
    if server is None or server.password is None:
        return
    fd, path = tempfile.mkstemp(prefix="fastpeewee-pgpass-")
    with os.fdopen(fd, "w") as passfile:  # mkstemp: mode 0600, as libpq requires
        passfile.write(server.passfile_line() + "\n")
    config.stash[_PASSFILE] = (path, os.environ.get("PGPASSFILE"))
    os.environ["PGPASSFILE"] = path


_PASSFILE = pytest.StashKey[tuple[str, str | None]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    path, before = config.stash.get(_PASSFILE, (None, None))
    if path is None:
        return
    os.unlink(path)
    if before is None:
        os.environ.pop("PGPASSFILE", None)
    else:
        os.environ["PGPASSFILE"] = before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for prefix, (reason, kinds) in OWN_SERVER_TESTS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.own_server(reason, kinds=kinds))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip an ``own_server`` test whose backend's server was given as a URL, and
    a test that cannot run behind PgBouncer on the pgbouncer backend."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "pgbouncer":
        reason = pgbouncer.not_applicable(item.nodeid)
        if reason is not None:
            pytest.skip(f"not behind PgBouncer in transaction mode: {reason}")
    marker = item.get_closest_marker("own_server")
    if marker is None:
        return
    kinds = marker.kwargs.get("kinds") or tuple(URL_VARIABLES)
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("backend") if callspec is not None else None
    if backend is not None:
        kinds = [backend] if backend in kinds else []
    for kind in kinds:
        server = ExistingServer.from_environment(kind)
        if server is not None:
            pytest.skip(f"needs a server the suite started ({marker.args[0]}); "
                        f"{URL_VARIABLES[kind]} gives {server!r}")  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExistingServer]:
    existing = ExistingServer.from_environment("postgres")
    if existing is not None:
        yield existing
        return
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
def pgbouncer_server(
    postgres_server: PostgresServer | ExistingServer,
) -> Iterator[pgbouncer.PgBouncer]:
    """PgBouncer in transaction mode in front of the test PostgreSQL (tests/pgbouncer.py)."""
    try:
        bouncer = pgbouncer.PgBouncer.start(postgres_server)
    except ServerUnavailable as exc:
        if ON_CI:
            pytest.fail(f"PgBouncer must run on CI: {exc}", pytrace=False)
        _unavailable["pgbouncer"] = str(exc)
        pytest.skip(f"PgBouncer unavailable: {exc}")
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer | ExistingServer]:
    existing = ExistingServer.from_environment("mysql")
    if existing is not None:
        yield existing
        return
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
    """The server kind: "sqlite", "postgres" or "mysql". The "pgbouncer" parameter is
    PostgreSQL behind PgBouncer, so it gives "postgres" (SQL, drivers and views are
    PostgreSQL's); ``pgbouncer.requested(request)`` tells the two apart."""
    return "postgres" if request.param == "pgbouncer" else str(request.param)


def make_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> AnyDatabase:
    """A fresh database object for ``backend`` with small, fast-failing pools."""
    options = {"pool_size": 4, "acquire_timeout": 2.0, **options}
    if backend == "sqlite":
        return AsyncSqliteDatabase(str(tmp_path / "test.db"), **options)
    if backend == "mysql":
        maria: MariaDBServer | ExistingServer = request.getfixturevalue("mariadb_server")
        # The test server has no TLS; PyMySQL would otherwise build a TLS
        # context (~60 ms) for every connection only to find that out.
        options.setdefault("ssl_disabled", True)
        return AsyncMySQLDatabase(maria.database, **maria.connect_params, **options)
    if pgbouncer.requested(request):
        bouncer: pgbouncer.PgBouncer = request.getfixturevalue("pgbouncer_server")
        options.setdefault("pooler", "transaction")
        return AsyncPostgresqlDatabase(bouncer.database, **bouncer.connect_params, **options)
    server: PostgresServer | ExistingServer = request.getfixturevalue("postgres_server")
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
    try:
        yield database
        await settle(database)
        assert_no_leaks(database)
    finally:
        # Also when the test failed: its connections would otherwise be
        # collected during a later test, whose run their warnings would fail.
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
