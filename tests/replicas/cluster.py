"""A throwaway PostgreSQL primary with a streaming standby, for the replica and failover tests.

The standby is a ``pg_basebackup -R`` copy of the primary (which initdb
already sets up for it: ``wal_level=replica``, ``max_wal_senders=10`` and a
``replication`` line for 127.0.0.1 in ``pg_hba.conf``), started as a second
cluster on another free port, as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import ON_CI
from ..servers import PostgresServer, ServerUnavailable, _as_user, _check, free_port


@dataclass
class Pair:
    """A primary and its streaming standby."""

    primary: PostgresServer
    standby: PostgresServer

    def url(self, server: PostgresServer) -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/{server.database}"

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
