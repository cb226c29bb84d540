"""The reference app under several worker processes on PostgreSQL (issue 13).

``uvicorn --workers 2`` and gunicorn with two ``UvicornWorker`` processes
(half of the starts with ``preload_app`` and a master that queried the
database before forking) are started several times in a row, each time on a
fresh database, so that both workers run ``CREATE TABLE IF NOT EXISTS`` for
the app's tables at the same moment. Every start must bring both workers up
(no failed start-up) and serve concurrent requests, and the server must never
see more sessions from a worker than its ``pool_size`` (so no more than
workers x pool_size in all). The sessions are told apart by worker from
outside, matching ``pg_stat_activity.client_port`` with each worker's sockets
in ``/proc``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.sql_app.main:app"
WORKERS = 2
POOL_SIZE = 3
STARTS = 4
SLOW = 0.3
READY = "Application startup complete"

pytestmark = [
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)"),
    pytest.mark.timeout(240),
]

# What each run saw, for the closing notes (printed at the end of the module).
FIGURES: list[dict[str, Any]] = []


def _command(server: str, port: int, preload: bool) -> list[str]:
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", APP, "--workers", str(WORKERS), *bind]
    worker = "uvicorn_worker.UvicornWorker"  # uvicorn.workers is deprecated
    command = [sys.executable, "-m", "gunicorn", APP, "-k", worker, "-w", str(WORKERS),
               "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]  # fmt: skip
    if preload:
        command += ["-c", "python:tests.app.gunicorn_preload"]
    return command


@contextmanager
def _fresh_database(server: Any, name: str) -> Iterator[dict[str, Any]]:
    admin = {**server.connect_params, "dbname": server.database}
    with psycopg.connect(autocommit=True, **admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield {**server.connect_params, "dbname": name}
    finally:
        with psycopg.connect(autocommit=True, **admin) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _children(pid: int) -> list[int]:
    """The worker processes of ``pid`` (multiprocessing's resource tracker left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            try:
                if b"resource_tracker" in (entry / "cmdline").read_bytes():
                    continue
            except OSError:
                continue
            found.append(int(entry.name))
    return found


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of ``pid``'s sockets."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Sessions:
    """Samples the database's client sessions from outside, by worker process."""

    def __init__(self, params: dict[str, Any], master: int) -> None:
        self.conn = psycopg.connect(autocommit=True, **params)
        self.master = master
        self.max_total = 0
        self.max_per_worker: dict[int, int] = {}

    def sample(self) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
        ports = {row[0] for row in rows}
        # A forked worker shares the sockets the master had open (never using them).
        own = ports - _local_ports(self.master)
        by_process = {pid: len(own & _local_ports(pid)) for pid in _children(self.master)}
        self.max_total = max(self.max_total, len(ports))
        for pid, count in by_process.items():
            self.max_per_worker[pid] = max(self.max_per_worker.get(pid, 0), count)
        return by_process

    def backend_pids(self) -> set[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
        return {row[0] for row in rows}


def _wait_for_workers(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        assert "startup failed" not in text and "Worker failed to boot" not in text, text
        if text.count(READY) >= WORKERS:
            return
        if process.poll() is not None:
            pytest.fail(f"the server exited during start-up:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"{WORKERS} workers did not start within 60 s:\n{log.read_text()}")


async def _load(base: str, run: int) -> list[int]:
    """Concurrent requests: slow reads holding connections, writes, plain reads."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def write(n: int) -> int:
            body = {"email": f"r{run}-{n}@example.com", "password": "12345678"}
            return (await http.post("/users/", json=body)).status_code

        replies = await asyncio.gather(
            *(http.get("/slowusers/") for _ in range(10)),
            *(http.get("/users/") for _ in range(6)),
        )
        writes = await asyncio.gather(*(write(n) for n in range(4)))
        return [r.status_code for r in replies] + list(writes)


def _stop(process: subprocess.Popen[bytes], server: str) -> int:
    process.send_signal(signal.SIGINT if server == "uvicorn" else signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
async def test_every_start_of_two_workers_on_a_fresh_database_succeeds(
    server, postgres_server, tmp_path
):
    for run in range(STARTS):
        preload = server == "gunicorn" and run % 2 == 1
        started = time.monotonic()
        await asyncio.to_thread(_one_start, server, postgres_server, tmp_path, run, preload)
        FIGURES[-1]["seconds"] = round(time.monotonic() - started, 1)
    print("\n" + "\n".join(str(f) for f in FIGURES if f["server"] == server))


def _one_start(server: str, postgres: Any, tmp_path: Path, run: int, preload: bool) -> None:
    with _fresh_database(postgres, f"workers_{server}_{run}") as params:
        url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "POOL_SIZE": str(POOL_SIZE),
            "SLOW_SECONDS": str(SLOW),
            "MASTER_SESSIONS": str(tmp_path / f"master-{run}"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        }
        log = tmp_path / f"{server}-{run}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                _command(server, port, preload), cwd=ROOT, env=env, stdout=out, stderr=out
            )
        try:
            _wait_for_workers(process, log)
            _serve_and_count(process, params, port, run, server, preload, tmp_path)
        finally:
            code = _stop(process, server)
        text = log.read_text(errors="replace")
        assert code == 0, text
        assert "Traceback" not in text and "startup failed" not in text, text


def _serve_and_count(
    process: subprocess.Popen[bytes],
    params: dict[str, Any],
    port: int,
    run: int,
    server: str,
    preload: bool,
    tmp_path: Path,
) -> None:
    sessions = Sessions(params, process.pid)
    try:
        workers = _children(process.pid)
        assert len(workers) == WORKERS, workers
        done = threading.Event()

        def sampler() -> None:
            while not done.is_set():
                sessions.sample()
                time.sleep(0.1)

        thread = threading.Thread(target=sampler)
        thread.start()
        try:
            statuses = asyncio.run(_load(f"http://127.0.0.1:{port}", run))
        finally:
            done.set()
            thread.join(10)
        assert all(200 <= s < 300 for s in statuses), statuses
        per_worker = {pid: sessions.max_per_worker.get(pid, 0) for pid in workers}
        # Each worker served with sessions of its own, never more than its pool.
        assert all(1 <= n <= POOL_SIZE for n in per_worker.values()), per_worker
        master_pids: set[int] = set()
        if preload:
            master_file = tmp_path / f"master-{run}"
            master_pids = {int(p) for p in master_file.read_text().split()}
            # The master's sessions outlived the fork and the workers' start-up.
            assert master_pids <= sessions.backend_pids(), master_pids
        limit = WORKERS * POOL_SIZE + (len(master_pids) if preload else 0)
        assert sessions.max_total <= limit, (sessions.max_total, limit)
        FIGURES.append({
            "server": server, "run": run, "preload": preload, "requests": len(statuses),
            "max_sessions": sessions.max_total, "per_worker_max": sorted(per_worker.values()),
        })  # fmt: skip
    finally:
        sessions.conn.close()
