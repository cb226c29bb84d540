"""Database servers for the test suite: throwaway ones on loopback in temp
directories, or existing ones given as URLs.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user, and MariaDB's server runs as the ``mysql`` user. Each
throwaway server listens on a free port of 127.0.0.1 and is removed when the
session ends.

``FASTPEEWEE_TEST_POSTGRES_URL`` (``postgresql://user:pass@host:port/db``) and
``FASTPEEWEE_TEST_MYSQL_URL`` (``mysql://user:pass@host:port/db``) name an
existing server to use instead (:class:`ExistingServer`): it is never started,
stopped or restarted, and the tests that need more than its URL grants skip.
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit


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

    controlled: ClassVar[bool] = True  # trust authentication, restartable
    port: int
    datadir: Path
    bindir: Path
    user: str = "postgres"
    database: str = "fastpeewee_test"

    @property
    def connect_params(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user}

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = _find_pg_bin()
        tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-pg-"))
        datadir = tmp / "data"
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        server = cls(port=free_port(), datadir=datadir, bindir=bindir)
        run = _as_user(
            "postgres",
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        _check(run, "initdb")
        server._pg_ctl_start()
        server._psql(f"CREATE DATABASE {server.database}")
        return server

    def _pg_ctl_start(self) -> None:
        tmp = self.datadir.parent
        options = (
            f"-p {self.port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        start = _as_user(
            "postgres",
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-l",
                str(tmp / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        _check(start, "pg_ctl start", tmp / "log")

    def restart(self, down_seconds: float = 1.0) -> None:
        """Stop the cluster as an operator would (``pg_ctl -m fast``: sessions are
        terminated, the data is kept), stay down ``down_seconds``, then start it
        again on the same port and data directory."""
        stop = _as_user(
            "postgres",
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
        _check(stop, "pg_ctl stop", self.datadir.parent / "log")
        time.sleep(down_seconds)
        self._pg_ctl_start()

    def _psql(self, sql: str) -> str:
        argv = [
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "postgres",
            "-Atc",
            sql,
        ]
        return _check(argv, "psql")

    def stop(self) -> None:
        stop = _as_user(
            "postgres",
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
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


# Settings for a disposable server: no durability, no binary log, small caches.
MARIADB_OPTIONS = (
    "--no-defaults",
    "--skip-log-bin",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=0",
    "--loose-innodb-doublewrite=0",
    "--loose-innodb-flush-method=nosync",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--max-connections=300",
)


@dataclass
class MariaDBServer:
    """A MariaDB server started for the tests, with one test user and database."""

    controlled: ClassVar[bool] = True  # root over the socket, stoppable
    port: int
    tmp: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    user: str = "fastpeewee"
    password: str = "fastpeewee-test"
    database: str = "fastpeewee_test"
    options: tuple[str, ...] = ()  # more mariadbd arguments, after MARIADB_OPTIONS

    @property
    def socket(self) -> Path:
        return self.tmp / "mysqld.sock"

    @property
    def connect_params(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "password": self.password,
        }

    @classmethod
    def start(cls, *options: str) -> MariaDBServer:
        """Install and start a server; ``options`` are more mariadbd arguments
        (``--log-bin``, ``--server-id=2``, ...), given after the defaults."""
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install_db = shutil.which("mariadb-install-db")
        if not (install_db and Path(mariadbd).exists()):
            raise ServerUnavailable("MariaDB is not installed (apt-get install mariadb-server)")
        tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-mariadb-"))
        if os.geteuid() == 0:
            shutil.chown(tmp, "mysql", "mysql")
        server = cls(port=free_port(), tmp=tmp, options=options)
        try:
            server._install(install_db)
            server._run(mariadbd)
            server._create_user()
        except BaseException:
            server.stop()
            raise
        return server

    def _install(self, install_db: str) -> None:
        argv = [
            install_db,
            *MARIADB_OPTIONS,
            f"--datadir={self.tmp / 'data'}",
            f"--tmpdir={self.tmp}",  # not the shared /tmp: see _start_process
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=mysql")
        _check(_as_user("mysql", argv), "mariadb-install-db")

    def _run(self, mariadbd: str) -> None:
        """Start mariadbd; on a lost race for the free port, try another port."""
        for _ in range(3):
            if self._start_process(mariadbd):
                return
            self.port = free_port()
        raise ServerUnavailable(f"mariadbd could not bind a port: {self._log_tail()}")

    def _start_process(self, mariadbd: str) -> bool:
        argv = [
            mariadbd,
            *MARIADB_OPTIONS,
            f"--datadir={self.tmp / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.tmp / 'mysqld.pid'}",
            f"--log-error={self.tmp / 'error.log'}",
            # Its own temp files (information_schema queries make some) in its
            # own directory: a shared /tmp being cleaned made them vanish mid-query.
            f"--tmpdir={self.tmp}",
            "--skip-networking=0",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            *self.options,
        ]
        if os.geteuid() == 0:
            argv.append("--user=mysql")  # mariadbd drops root for the mysql user itself
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        process = self.process
        if not wait_until(lambda: self._accepting() or process.poll() is not None, 60):
            raise ServerUnavailable("mariadbd did not accept connections within 60 s")
        if process.poll() is None:
            return True
        if "Bind on TCP/IP port" in self._log_tail():
            return False
        raise ServerUnavailable(f"mariadbd exited ({process.returncode}): {self._log_tail()}")

    def _accepting(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def _log_tail(self) -> str:
        log = self.tmp / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def _create_user(self) -> None:
        self.sql_as_root(
            f"CREATE DATABASE {self.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'",
            f"GRANT ALL ON *.* TO '{self.user}'@'127.0.0.1'",
        )

    def sql_as_root(self, *statements: str) -> None:
        """Run statements as the server's root user, over its socket."""
        client = shutil.which("mariadb") or "mariadb"
        # Socket authentication: the OS user that ran mariadb-install-db is an admin.
        os_user = "mysql" if os.geteuid() == 0 else getpass.getuser()
        argv = [
            client,
            "--no-defaults",
            f"--socket={self.socket}",
            f"-u{os_user}",
            "-e",
            ";".join(statements),
        ]
        _check(_as_user("mysql", argv), "mariadb client")

    def restart(self, down_seconds: float = 1.0) -> None:
        """Shut mariadbd down (SIGTERM, as an operator would), stay down
        ``down_seconds``, then start it again on the same port and data."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        time.sleep(down_seconds)
        if not self._start_process(shutil.which("mariadbd") or "/usr/sbin/mariadbd"):
            raise ServerUnavailable(f"mariadbd could not bind port {self.port} again")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()  # nothing here is worth a clean shutdown
            process.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


URL_VARIABLES = {"postgres": "FASTPEEWEE_TEST_POSTGRES_URL", "mysql": "FASTPEEWEE_TEST_MYSQL_URL"}
_SCHEMES = {"postgres": ("postgresql", "postgres"), "mysql": ("mysql", "mariadb")}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


class NotControlled(ServerUnavailable):
    """The test needs a server the suite started; this one was given as a URL."""


@dataclass
class ExistingServer:
    """A server given as a URL: used as it is, never started, stopped or restarted.

    Example::

        server = ExistingServer.from_url("postgres", "postgresql://ann:pw@db:5432/scratch")
        AsyncPostgresqlDatabase(server.database, **server.connect_params)

    The suite drops and creates its tables in ``database``: give it a scratch one.
    """

    controlled: ClassVar[bool] = False
    kind: str
    host: str
    port: int
    user: str
    password: str | None
    database: str

    @classmethod
    def from_url(cls, kind: str, url: str) -> ExistingServer:
        """Parse ``url`` (a scheme of ``kind``, user, optional password, host, port, database)."""
        parts = urlsplit(url)
        variable = URL_VARIABLES[kind]
        if parts.scheme not in _SCHEMES[kind]:
            raise ValueError(f"{variable}: scheme {parts.scheme!r} is not one of "
                             f"{', '.join(_SCHEMES[kind])}")  # fmt: skip
        database = unquote(parts.path.lstrip("/"))
        if not (parts.hostname and parts.username and database):
            raise ValueError(f"{variable} needs a user, a host and a database: "
                             f"{kind}://user:password@host:port/database")  # fmt: skip
        password = None if parts.password is None else unquote(parts.password)
        return cls(kind=kind, host=parts.hostname, port=parts.port or _DEFAULT_PORTS[kind],
                   user=unquote(parts.username), password=password, database=database)  # fmt: skip

    @classmethod
    def from_environment(cls, kind: str) -> ExistingServer | None:
        """The server named by ``kind``'s URL variable, or None when it is unset."""
        url = os.environ.get(URL_VARIABLES[kind], "").strip()
        return cls.from_url(kind, url) if url else None

    @property
    def connect_params(self) -> dict[str, object]:
        params: dict[str, object] = {"host": self.host, "port": self.port, "user": self.user}
        if self.password is not None:
            params["password"] = self.password
        return params

    def __repr__(self) -> str:  # never the password, in a test id or a failure
        return (f"ExistingServer({self.kind}://{self.user}@{self.host}:{self.port}/"
                f"{self.database})")  # fmt: skip

    def passfile_line(self) -> str:
        """This server's line for a libpq password file (``PGPASSFILE``)."""

        def field(value: object) -> str:
            return str(value).replace("\\", "\\\\").replace(":", "\\:")

        return ":".join(field(v) for v in (self.host, self.port, "*", self.user, self.password))

    def sql_as_root(self, *statements: str) -> None:
        """Run statements as the URL's user (the MySQL stand-in for the throwaway
        server's root); a statement it has no privilege for skips the test."""
        import pymysql
        import pytest

        conn = pymysql.connect(database=self.database, autocommit=True, **self.connect_params)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        except pymysql.err.MySQLError as exc:
            if exc.args[0] not in _MYSQL_ACCESS_DENIED:
                raise
            pytest.skip(f"{self!r} refused a statement this test needs: {exc.args[1]}")
        finally:
            conn.close()

    def restart(self, down_seconds: float = 1.0) -> None:
        """A server given as a URL is not the suite's to restart."""
        raise NotControlled(f"{self!r} was given as a URL: the suite does not restart it")

    def stop(self) -> None:
        """Nothing to do: the server outlives the session."""


# ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR,
# ER_SPECIFIC_ACCESS_DENIED_ERROR
_MYSQL_ACCESS_DENIED = frozenset({1044, 1045, 1142, 1227})
