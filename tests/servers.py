"""Throwaway database servers for the test suite, on loopback in temp directories.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user. Each server listens on a free port of 127.0.0.1 and is
removed when the session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find_pg_bin() -> Path:
    for pattern in ("/usr/lib/postgresql/*/bin",):
        found = sorted(glob.glob(pattern), key=lambda p: int(Path(p).parent.name))
        if found:
            return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServerUnavailable("PostgreSQL is not installed (apt-get install postgresql)")


def _as_user(user: str, argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", user, "--", *argv]


@dataclass
class PostgresServer:
    """A PostgreSQL cluster started for the tests."""

    port: int
    datadir: Path
    bindir: Path
    user: str = "postgres"
    database: str = "fastpeewee_test"

    @property
    def connect_params(self) -> dict[str, object]:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user}

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = _find_pg_bin()
        tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-pg-"))
        datadir = tmp / "data"
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        server = cls(port=free_port(), datadir=datadir, bindir=bindir)
        run = _as_user("postgres", [str(bindir / "initdb"), "-D", str(datadir), "-A", "trust",
                                    "-U", "postgres", "-E", "UTF8", "--no-sync"])
        _check(run, "initdb")
        options = (f"-p {server.port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        start = _as_user("postgres", [str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options,
                                      "-l", str(tmp / "log"), "-w", "-t", "60", "start"])
        _check(start, "pg_ctl start", tmp / "log")
        server._psql(f"CREATE DATABASE {server.database}")
        return server

    def _psql(self, sql: str) -> str:
        argv = [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                self.user, "-d", "postgres", "-Atc", sql]
        return _check(argv, "psql")

    def stop(self) -> None:
        stop = _as_user("postgres", [str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                                     "-m", "immediate", "-w", "stop"])
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _check(argv: list[str], what: str, log: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerUnavailable(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        if log is not None and log.exists():
            detail += "\n" + log.read_text()[-2000:]
        raise ServerUnavailable(f"{what} failed ({done.returncode}): {detail}")
    return done.stdout


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False
