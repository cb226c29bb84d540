"""The server side of the soak: the app under uvicorn, PostgreSQL's faults, and samples of both.

``AppProcess`` runs the reference app (examples/sql_app) in its own uvicorn
process; ``PgSide`` is the soak's own connection to PostgreSQL, through which
it watches ``pg_stat_activity`` and kills the app's backends; ``inject`` plays
the fault plan and records each fault's window.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.servers import PostgresServer, free_port

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.sql_app.main:app"
# Every wait of the soak's own connection is bounded: a query on a server that
# is shutting down must not stall the sampler.
SIDE_TIMEOUT = 3.0
_CHAINED = ("The above exception was the direct cause", "During handling of the above")


@dataclass
class AppProcess:
    """The reference app under uvicorn on a free loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, database_url: str, workdir: Path, *, pool_size: int,
              slow_seconds: float) -> AppProcess:  # fmt: skip
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "POOL_SIZE": str(pool_size),
               "SLOW_SECONDS": str(slow_seconds),
               # A fixed mmap threshold, so RSS measures live memory: each sign-up's
               # scrypt takes 16 MiB, which glibc would otherwise keep cached in the
               # arena of every thread that ever hashed (up to ~16 MiB each).
               "MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}  # fmt: skip
        # A long keep-alive: a client reusing a connection the server is closing
        # gets a reset, which the soak would count against the app.
        argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log",
                "--timeout-keep-alive", "120"]  # fmt: skip
        log = workdir / "uvicorn.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
        app = cls(process, port, log)
        try:
            app._wait_until_up()
        except BaseException:
            app.stop()
            raise
        return app

    def _wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited early:\n{self.log.read_text()}")
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code != 200:  # the soak reads the pool's counters there
                raise RuntimeError(f"GET /health answered {response.status_code}")
            return
        log = self.log.read_text()
        raise RuntimeError(f"uvicorn did not start within {timeout:.0f} s:\n{log}")

    def rss_bytes(self) -> int | None:
        """The server process's resident set (VmRSS), or None once it is gone."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    async def pool_stats(self, http: httpx.AsyncClient) -> list[dict[str, Any]] | None:
        """The app's pool counters from ``GET /health``, or None when it does not answer."""
        try:
            response = await http.get(f"{self.base_url}/health", timeout=SIDE_TIMEOUT)
            pools: list[dict[str, Any]] = response.json()["pools"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return pools

    def stop(self) -> int:
        """Stop uvicorn as Ctrl-C does (lifespan shutdown closes the pool); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
            return -9

    def logged_errors(self) -> list[str]:
        """What the server logged, one line an entry: uvicorn's records with the
        exception each traceback ended with, and the app's own warnings."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return parse_log(text)


def parse_log(text: str) -> list[str]:
    """One entry a log record: its first line, and for a traceback (chained ones
    included) `` -> `` the exception it ended with."""
    entries: list[str] = []
    headline, raised, in_frames = "", "", False

    def flush() -> None:
        if headline:
            entries.append(f"{headline} -> {raised}" if raised else headline)

    for line in text.splitlines():
        if not line.strip() or line.startswith(_CHAINED):
            continue
        if line.startswith("Traceback (most recent call last):"):
            in_frames = True
        elif in_frames and line.startswith(" "):
            continue  # a frame
        elif in_frames:
            raised, in_frames = line.strip(), False  # the exception (a chained one may follow)
        else:
            flush()
            headline, raised = line.strip(), ""
    flush()
    return entries


@dataclass(frozen=True)
class Backend:
    """One of the app's sessions on the server, from ``pg_stat_activity``."""

    pid: int
    state: str
    query: str


class PgSide:
    """The soak's own view of PostgreSQL: the app's backends, and the faults.

    Its connection goes to the ``postgres`` database, so it is never one of the
    app's backends (which are those on ``server.database``).
    """

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._conn: Any = None
        self._lock = asyncio.Lock()  # the sampler and the faults share the connection

    async def _fetch(self, sql: str, *args: Any) -> list[Any] | None:
        """Rows of ``sql``, or None while the server cannot be reached."""
        async with self._lock:
            try:
                if self._conn is None:
                    params = self.server.connect_params
                    self._conn = await asyncpg.connect(
                        host=params["host"], port=params["port"], user=params["user"],
                        database="postgres", timeout=SIDE_TIMEOUT,
                    )  # fmt: skip
                rows: list[Any] = await self._conn.fetch(sql, *args, timeout=SIDE_TIMEOUT)
            # Refused, reset, "the database system is starting up", timed out: a
            # sample is simply missing; the next one reconnects.
            except Exception:
                self._drop()
                return None
        return rows

    async def backends(self) -> list[Backend] | None:
        """The app's sessions now, or None while the server cannot be reached."""
        rows = await self._fetch(
            "SELECT pid, coalesce(state, '') AS state, left(query, 100) AS query "
            "FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() ORDER BY pid",
            self.server.database,
        )  # fmt: skip
        if rows is None:
            return None
        return [Backend(row["pid"], row["state"], row["query"]) for row in rows]

    async def terminate_app_backends(self) -> str:
        """``pg_terminate_backend`` every session of the app; say what they were doing."""
        backends = await self.backends()
        pids = [b.pid for b in backends or ()]
        rows = await self._fetch(
            "SELECT pid FROM unnest($1::int[]) AS pid WHERE pg_terminate_backend(pid)", pids
        )
        if backends is None or rows is None:
            return "server unreachable, nothing terminated"
        states = Counter(b.state for b in backends)
        return f"killed {len(rows)} of {len(pids)} sessions ({_counts(states)})"

    async def restart(self, down_seconds: float) -> str:
        """Restart the server. A fast shutdown writes out everything committed
        (even with ``synchronous_commit=off``), so every acknowledged write must
        survive it."""
        self._drop()
        await asyncio.to_thread(self.server.restart, down_seconds)
        return f"pg_ctl -m fast stop, down {down_seconds:.1f} s, start"

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never wait on a connection that may be dead


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key or '?'} {n}" for key, n in sorted(counter.items())) or "none"


@dataclass(frozen=True)
class FaultWindow:
    """When a fault was being injected (from its start to the end of its action)."""

    kind: str
    start: float
    end: float
    detail: str


def fault_plan(seconds: float, rng: random.Random, *, first_at: float, restart_down: float,
               grace: float) -> list[tuple[float, str]]:  # fmt: skip
    """When to inject what: terminations every 5-10 s from ``first_at``, one restart.

    Nothing after 75% of the run, so every run ends with a stretch with no
    fault, where any 503 fails.
    """
    last, restart_at = 0.75 * seconds, max(0.45 * seconds, first_at + 4.0)
    plan = [(restart_at, "restart")]
    busy = (restart_at - 3.0, restart_at + restart_down + grace)
    at = first_at
    while at < last:
        if not busy[0] <= at <= busy[1]:
            plan.append((at, "terminate"))
        at += rng.uniform(5.0, 10.0)
    return sorted(plan)


async def inject(plan: list[tuple[float, str]], pg: PgSide, clock: Callable[[], float],
                 windows: list[FaultWindow], *, restart_down: float) -> None:  # fmt: skip
    """Play ``plan``, appending each fault's window to ``windows`` as it ends."""
    for at, kind in plan:
        await asyncio.sleep(max(0.0, at - clock()))
        start = clock()
        if kind == "restart":
            detail = await pg.restart(restart_down)
        else:
            detail = await pg.terminate_app_backends()
        windows.append(FaultWindow(kind, start, clock(), detail))


@dataclass(frozen=True)
class Sample:
    """The app and its sessions at one moment."""

    at: float
    rss: int | None
    pools: list[dict[str, Any]] | None
    states: dict[str, int] | None


@dataclass
class Sampler:
    """Samples RSS, the pool counters and the app's sessions every ``every`` seconds."""

    app: AppProcess
    pg: PgSide
    clock: Callable[[], float]
    every: float = 1.0
    samples: list[Sample] = field(default_factory=list)

    async def take(self, http: httpx.AsyncClient) -> Sample:
        pools = await self.app.pool_stats(http)
        backends = await self.pg.backends()
        states = None if backends is None else dict(Counter(b.state for b in backends))
        sample = Sample(self.clock(), self.app.rss_bytes(), pools, states)
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        async with httpx.AsyncClient() as http:
            while True:
                started = time.monotonic()
                await self.take(http)
                await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))
