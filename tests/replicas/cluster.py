"""Throwaway primaries with a replica, for the replica and failover tests.

PostgreSQL (:class:`Pair`): the standby is a ``pg_basebackup -R`` copy of the
primary (which initdb already sets up for it: ``wal_level=replica``,
``max_wal_senders=10`` and a ``replication`` line for 127.0.0.1 in
``pg_hba.conf``), started as a second cluster on another free port, as the
``postgres`` user.

MariaDB (:class:`MariaDBPair`): two fresh servers started side by side, the
primary with a binary log, the replica ``read_only`` and replicating from it
by GTID (``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos``) as a user with
nothing but ``REPLICATION SLAVE``. Both pairs answer the same questions
(:meth:`~Pair.query`, :meth:`~Pair.wait_replayed`, stop and start the replica,
pause its replay) so the replica tests run unchanged on either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import peewee
import pytest

from fastpeewee import AsyncMySQLDatabase, AsyncPostgresqlDatabase

from ..conftest import ON_CI
from ..servers import (
    MariaDBServer,
    PostgresServer,
    ServerUnavailable,
    _as_user,
    _check,
    free_port,
)


class Server(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def database(self) -> str: ...
    @property
    def connect_params(self) -> dict[str, Any]: ...


class ReplicaPair(Protocol):
    """What the replica tests ask of a pair, PostgreSQL's or MariaDB's."""

    kind: ClassVar[str]  # "postgres" or "mysql", as the suite's backends are named
    database_class: ClassVar[type[Any]]
    where_sql: ClassVar[str]
    port: ClassVar[Any]

    @property
    def primary(self) -> Server: ...
    @property
    def standby(self) -> Server: ...
    def url(self, server: Any) -> str: ...
    def query(self, server: Any, sql: str) -> str: ...
    def wait_replayed(self) -> None: ...
    def stop_standby(self) -> None: ...
    def start_standby(self) -> None: ...
    def pause_replay(self) -> None: ...
    def resume_replay(self) -> None: ...
    def kill_standby_sessions(self, running: str) -> int: ...


@dataclass
class Pair:
    """A primary and its streaming standby."""

    kind: ClassVar[str] = "postgres"
    database_class: ClassVar[type[Any]] = AsyncPostgresqlDatabase
    # Where a statement ran, from the server that ran it: its port, and whether it is a replica.
    where_sql: ClassVar[str] = "SELECT inet_server_port(), pg_is_in_recovery()"
    port: ClassVar[Any] = peewee.fn.inet_server_port()  # the same port, in an ORM query
    primary: PostgresServer
    standby: PostgresServer

    def url(self, server: PostgresServer) -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/{server.database}"

    def query(self, server: PostgresServer, sql: str) -> str:
        """The first value ``sql`` returns on ``server``, as text (outside the library)."""
        return psql(server, sql)

    def wait_replayed(self) -> None:
        wait_replayed(self)

    def stop_standby(self) -> None:
        stop_server(self.standby)

    def start_standby(self) -> None:
        start_server(self.standby)

    def pause_replay(self) -> None:
        """Make the standby fall more than 1 s behind the next write on the primary."""
        psql(self.standby, "SELECT pg_wal_replay_pause()")
        time.sleep(1.2)  # the last transaction it replayed is now > 1 s old

    def resume_replay(self) -> None:
        psql(self.standby, "SELECT pg_wal_replay_resume()")

    def kill_standby_sessions(self, running: str) -> int:
        """Terminate the standby's sessions whose statement contains ``running``."""
        return int(
            psql(
                self.standby,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE query LIKE '%{running}%' AND pid <> pg_backend_pid()",
            )
        )

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()


def start_standby(primary: PostgresServer) -> PostgresServer:
    """Copy ``primary`` with ``pg_basebackup -R`` and start the copy as its hot standby."""
    tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-pg-standby-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    standby = PostgresServer(port=free_port(), datadir=tmp / "data", bindir=primary.bindir)
    backup = [
        str(primary.bindir / "pg_basebackup"),
        "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", str(standby.datadir), "-R", "-X", "stream", "--no-sync", "-c", "fast",
    ]  # fmt: skip
    _check(_as_user("postgres", backup), "pg_basebackup")
    standby._pg_ctl_start()
    return standby


def start_pair() -> Pair:
    """A fresh primary and its standby; skips (fails on CI) when PostgreSQL cannot run."""
    if os.environ.get("FASTPEEWEE_TEST_POSTGRES_URL"):
        pytest.skip("needs a PostgreSQL cluster the suite started (pg_basebackup, promote)")
    try:
        primary = PostgresServer.start()
    except ServerUnavailable as exc:
        if ON_CI:
            pytest.fail(f"PostgreSQL must run on CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        standby = start_standby(primary)
    except ServerUnavailable as exc:
        primary.stop()
        if ON_CI:
            pytest.fail(f"a PostgreSQL standby must start on CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL standby unavailable: {exc}")
    return Pair(primary, standby)


def psql(server: PostgresServer, sql: str, database: str | None = None) -> str:
    """Run ``sql`` with psql on ``server`` (outside the library); return its output."""
    argv = [
        str(server.bindir / "psql"), "-h", "127.0.0.1", "-p", str(server.port),
        "-U", "postgres", "-d", database or server.database, "-Atc", sql,
    ]  # fmt: skip
    return _check(argv, "psql").strip()


def wait_replayed(pair: Pair, timeout: float = 10.0) -> None:
    """Wait until the standby has replayed everything the primary wrote so far."""
    lsn = psql(pair.primary, "SELECT pg_current_wal_insert_lsn()")  # commits are async here
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = psql(pair.standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        if done == "t":
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {lsn} within {timeout} s")


def stop_server(server: PostgresServer, mode: str = "immediate") -> None:
    """Stop ``server`` (keeping its data directory)."""
    argv = [str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-m", mode, "-w", "stop"]
    subprocess.run(_as_user("postgres", argv), capture_output=True, timeout=60, check=True)


def start_server(server: PostgresServer) -> None:
    """Start ``server`` again on its port and data directory."""
    server._pg_ctl_start()


# -- MariaDB --------------------------------------------------------------------------

_REPLICATION_USER, _REPLICATION_PASSWORD = "repl", "fastpeewee-repl"
_PRIMARY_OPTIONS = (
    "--log-bin=binlog",  # after MARIADB_OPTIONS' --skip-log-bin, so it wins
    "--server-id=1",
    "--log-bin-trust-function-creators=1",  # the tests create a function that writes
)
_REPLICA_OPTIONS = ("--server-id=2", "--read-only", "--relay-log=relay")


@dataclass
class MariaDBPair:
    """A MariaDB primary and its replica (GTID replication), same interface as :class:`Pair`."""

    kind: ClassVar[str] = "mysql"
    database_class: ClassVar[type[Any]] = AsyncMySQLDatabase
    where_sql: ClassVar[str] = "SELECT @@port, @@read_only"
    port: ClassVar[Any] = peewee.SQL("@@port")
    primary: MariaDBServer
    standby: MariaDBServer

    def url(self, server: MariaDBServer) -> str:
        return (
            f"mysql://{server.user}:{server.password}@127.0.0.1:{server.port}/{server.database}"
            "?ssl_disabled=true"
        )

    def query(self, server: MariaDBServer, sql: str) -> str:
        """The first value ``sql`` returns on ``server``, as text (PyMySQL, not the library)."""
        rows = mysql(server, sql)
        return "" if not rows or rows[0][0] is None else str(rows[0][0])

    def wait_replayed(self, timeout: float = 10.0) -> None:
        """Wait until the replica has applied everything the primary wrote so far."""
        position = self.query(self.primary, "SELECT @@gtid_binlog_pos")
        waited = self.query(self.standby, f"SELECT MASTER_GTID_WAIT('{position}', {timeout})")
        if waited != "0":
            status = mysql(self.standby, "SHOW SLAVE STATUS", dicts=True)
            raise AssertionError(f"the replica did not apply {position} in {timeout} s: {status}")

    def stop_standby(self) -> None:
        """Kill the replica's mariadbd (SIGKILL, a crash); its data stays."""
        process = self.standby.process
        assert process is not None
        process.kill()
        process.wait(timeout=30)

    def start_standby(self) -> None:
        """Start the replica again on its port and data; it resumes replicating."""
        if not self.standby._start_process(shutil.which("mariadbd") or "/usr/sbin/mariadbd"):
            raise ServerUnavailable(f"mariadbd could not bind port {self.standby.port} again")

    def pause_replay(self) -> None:
        """Stop the replica applying what it receives (its SQL thread): it falls behind."""
        mysql(self.standby, "STOP SLAVE SQL_THREAD")

    def resume_replay(self) -> None:
        mysql(self.standby, "START SLAVE SQL_THREAD")

    def kill_standby_sessions(self, running: str) -> int:
        """``KILL CONNECTION`` the replica's sessions whose statement contains ``running``."""
        found = mysql(
            self.standby,
            "SELECT id FROM information_schema.processlist "
            f"WHERE info LIKE '%{running}%' AND id <> CONNECTION_ID()",
        )
        for (session,) in found:
            mysql(self.standby, f"KILL CONNECTION {session}")
        return len(found)

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()


def mysql(server: MariaDBServer, sql: str, dicts: bool = False) -> list[Any]:
    """Run ``sql`` on ``server`` as its test user with PyMySQL; return the rows."""
    import pymysql

    conn = pymysql.connect(
        database=server.database,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor if dicts else pymysql.cursors.Cursor,
        **server.connect_params,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        conn.close()


def start_mariadb_pair() -> MariaDBPair:
    """A fresh MariaDB primary and its replica; skips (fails on CI) when MariaDB cannot run."""
    if os.environ.get("FASTPEEWEE_TEST_MYSQL_URL"):
        pytest.skip("needs MariaDB servers the suite started (a replica is configured)")
    with ThreadPoolExecutor(2) as pool:  # two installs side by side: half the start-up
        options = (_PRIMARY_OPTIONS, _REPLICA_OPTIONS)
        started = [pool.submit(MariaDBServer.start, *o) for o in options]
        errors = [f.exception() for f in started]
    servers = [f.result() for f, e in zip(started, errors, strict=True) if e is None]
    try:
        if any(errors):
            raise next(e for e in errors if e is not None)
        pair = MariaDBPair(*servers)
        _replicate(pair)
    except (ServerUnavailable, AssertionError, OSError) as exc:
        for server in servers:
            server.stop()
        if ON_CI:
            pytest.fail(f"a MariaDB primary and replica must run on CI: {exc}", pytrace=False)
        pytest.skip(f"MariaDB replica unavailable: {exc}")
    return pair


def _replicate(pair: MariaDBPair) -> None:
    """Make ``pair.standby`` replicate ``pair.primary`` from now on, and wait until it does."""
    user = f"'{_REPLICATION_USER}'@'127.0.0.1'"
    pair.primary.sql_as_root(
        f"CREATE USER {user} IDENTIFIED BY '{_REPLICATION_PASSWORD}'",
        f"GRANT REPLICATION SLAVE ON *.* TO {user}",
    )
    # Both servers were installed alike (test user, database): replicate what the
    # primary writes from here on, not its installation.
    position = pair.query(pair.primary, "SELECT @@gtid_binlog_pos")
    replica_user = f"'{pair.standby.user}'@'127.0.0.1'"
    pair.standby.sql_as_root(
        # Without READ_ONLY ADMIN the app user meets read_only as an application would.
        f"REVOKE READ_ONLY ADMIN ON *.* FROM {replica_user}",
        f"SET GLOBAL gtid_slave_pos = '{position}'",
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={pair.primary.port}, "
        f"MASTER_USER='{_REPLICATION_USER}', MASTER_PASSWORD='{_REPLICATION_PASSWORD}', "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
        "START SLAVE",
    )
    mysql(pair.primary, "CREATE TABLE replication_check (id int PRIMARY KEY)")
    pair.wait_replayed()
    mysql(pair.primary, "DROP TABLE replication_check")
