"""PgBouncer in transaction mode in front of the test PostgreSQL: the ``pgbouncer`` backend.

:class:`PgBouncer` starts ``pgbouncer`` (as the ``postgres`` user when run as
root: PgBouncer refuses root) on a free loopback port, in transaction mode,
with a server pool (``default_pool_size=3``) smaller than the tests' client
pools, so server sessions are handed from one client connection to another
all the time, as in production. Authentication goes through a userlist
(``auth_file``) holding the test server's user (``trust`` for the throwaway
cluster, ``md5`` with the URL's password for an existing server).

The ``pgbouncer`` backend value is opt-in: only the suites listed in
``SUITES`` (core, cancellation, streaming, bulk/COPY, the apps) run on it,
so the whole suite does not run twice; the tests in ``NOT_APPLICABLE`` need
what a transaction pooler cannot give and skip on it with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .servers import ExistingServer, PostgresServer, ServerUnavailable, free_port, wait_until

# Server sessions per (database, user) pair: smaller than any test's client pool.
POOL_SIZE = 3

# Test files and directories (node id prefixes) that also run on the pgbouncer backend.
SUITES = (
    "tests/core/",
    "tests/fast/test_bulk.py",
    "tests/app/",
    "tests/drivers/test_pgbouncer.py",
    "tests/faults/test_cancel_every_step.py",
    "tests/faults/test_interleavings_cancel.py",
)

# Node id prefixes of tests that need what transaction pooling does not give.
NOT_APPLICABLE: dict[str, str] = {
    "tests/core/test_dsn_masking.py::test_pool_timeouts_and_logs_never_show_the_password": (
        "it builds its URLs from postgres_server: it would test PostgreSQL directly again"
    ),
    "tests/core/test_forks.py::test_a_forked_child_opens_its_own_connections": (
        "it tells connections apart by backend pid, and PgBouncer hands one server "
        "session to any client"
    ),
}

# Running bouncers by listening port, so a test's own view of the server
# (tests.harness.Outside) can go to PostgreSQL directly.
_RUNNING: dict[int, PgBouncer] = {}


def upstream_params(database: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The database name and connection keywords that reach PostgreSQL itself:
    those of the server behind our PgBouncer when ``params`` name it, else as given."""
    bouncer = _RUNNING.get(params.get("port"))  # type: ignore[arg-type]
    if bouncer is None:
        return database, params
    return bouncer.upstream.database, dict(bouncer.upstream.connect_params)


def not_applicable(nodeid: str) -> str | None:
    """Why the test ``nodeid`` cannot run behind a transaction pooler, or None."""
    for prefix, reason in NOT_APPLICABLE.items():
        if nodeid.startswith(prefix):
            return reason
    return None


def requested(request: Any) -> bool:
    """True when the test of ``request`` runs with the ``pgbouncer`` backend parameter
    (its ``backend`` fixture then says "postgres")."""
    callspec = getattr(request.node, "callspec", None)
    return callspec is not None and callspec.params.get("backend") == "pgbouncer"


def opted_in(nodeid: str) -> bool:
    """True when the test ``nodeid`` belongs to a suite that runs on PgBouncer."""
    return nodeid.startswith(SUITES)


@dataclass
class PgBouncer:
    """A PgBouncer started for the tests, in transaction mode, in front of ``upstream``."""

    upstream: PostgresServer | ExistingServer
    port: int
    tmp: Path
    pool_size: int = POOL_SIZE
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def database(self) -> str:
        return self.upstream.database

    @property
    def user(self) -> str:
        return self.upstream.user

    @property
    def password(self) -> str | None:
        return getattr(self.upstream, "password", None)

    @property
    def connect_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "user": self.user}
        if self.password is not None:
            params["password"] = self.password
        return params

    @classmethod
    def start(cls, upstream: PostgresServer | ExistingServer) -> PgBouncer:
        """Start PgBouncer on a free port; ServerUnavailable when it is missing or fails."""
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise ServerUnavailable("PgBouncer is not installed (apt-get install pgbouncer)")
        tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-pgbouncer-"))
        bouncer = cls(upstream=upstream, port=free_port(), tmp=tmp)
        try:
            bouncer._write_config()
            bouncer._run(binary)
        except BaseException:
            bouncer.stop()
            raise
        _RUNNING[bouncer.port] = bouncer
        return bouncer

    def _write_config(self) -> None:
        up = self.upstream
        host = up.connect_params["host"]
        auth = "trust" if self.password is None else "md5"
        password = self.password or ""
        (self.tmp / "userlist.txt").write_text(f'"{self.user}" "{password}"\n')
        (self.tmp / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.database} = host={host} port={up.port} dbname={up.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = {auth}\nauth_file = {self.tmp / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 500\nmax_db_connections = 0\n"
            f"admin_users = {self.user}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.tmp / 'pgbouncer.log'}\npidfile = {self.tmp / 'pgbouncer.pid'}\n"
            "log_connections = 0\nlog_disconnections = 0\n"
            "server_login_retry = 1\nquery_wait_timeout = 30\n"
        )
        if os.geteuid() == 0:
            for path in (self.tmp, *self.tmp.iterdir()):
                shutil.chown(path, "postgres", "postgres")

    def _run(self, binary: str) -> None:
        argv = [binary, str(self.tmp / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        process = self.process
        if not wait_until(lambda: self._accepting() or process.poll() is not None, 30):
            raise ServerUnavailable(f"pgbouncer did not listen within 30 s: {self.log_tail()}")
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise ServerUnavailable(f"pgbouncer exited ({process.returncode}): {err}"
                                    f"{self.log_tail()}")  # fmt: skip

    def _accepting(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def log_tail(self) -> str:
        log = self.tmp / "pgbouncer.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def admin(self, command: str) -> list[dict[str, str]]:
        """Run ``command`` (``SHOW POOLS``, ``SHOW SERVERS``) on the admin console.

        The console speaks the simple query protocol only: libpq's ``exec_``.
        """
        import psycopg

        conn = psycopg.connect(dbname="pgbouncer", autocommit=True, **self.connect_params)
        try:
            result = conn.pgconn.exec_(command.encode())
            names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
            return [
                {
                    name: (result.get_value(row, col) or b"").decode()
                    for col, name in enumerate(names)
                }
                for row in range(result.ntuples)
            ]
        finally:
            conn.close()

    def server_sessions(self) -> int:
        """Server connections PgBouncer holds for the test database, active or idle."""
        return sum(1 for row in self.admin("SHOW SERVERS") if row["database"] == self.database)

    def stop(self) -> None:
        _RUNNING.pop(self.port, None)
        # As root the process is runuser, which cannot pass a SIGKILL on: kill
        # PgBouncer itself by its pid file, or it outlives the test session.
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((self.tmp / "pgbouncer.pid").read_text().strip()), signal.SIGKILL)
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()  # nothing here is worth a clean shutdown
            process.wait(timeout=30)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
