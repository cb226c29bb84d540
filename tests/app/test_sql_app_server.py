"""The reference app served by a real uvicorn process: the tutorial's "ten tabs" scenario."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from .. import pgbouncer
from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
APPS = {"async": "examples.sql_app.main:app", "sync": "examples.sql_app_sync.main:app"}
TABS = 10
SLOW = 1.0


def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    if backend == "mysql":
        maria = request.getfixturevalue("mariadb_server")
        p = maria.connect_params
        return (
            f"mysql://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{maria.database}"
            "?ssl_disabled=true"
        )
    pooled = pgbouncer.requested(request)  # PostgreSQL behind the test PgBouncer
    server = request.getfixturevalue("pgbouncer_server" if pooled else "postgres_server")
    p = server.connect_params
    url = f"postgresql://{p['user']}@{p['host']}:{p['port']}/{server.database}"
    return url + ("?pooler=transaction" if pooled else "")


@pytest.fixture(params=sorted(APPS))
def served(request, backend, tmp_path) -> Iterator[str]:
    """Start ``uvicorn`` on a free loopback port; yield its base URL; stop it with SIGINT."""
    url = database_url(backend, request, tmp_path)
    if backend != "sqlite":
        _drop_app_tables(url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "SLOW_SECONDS": str(SLOW), "POOL_SIZE": "10"}
    command = [sys.executable, "-m", "uvicorn", APPS[request.param],
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        if backend != "sqlite":
            _drop_app_tables(url)  # leave the shared server as the other tests expect
        output = log.read_text()
        assert code == 0, output
        assert "Traceback" not in output, output


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"uvicorn did not start within 30 s:\n{log.read_text()}")


def _drop_app_tables(url: str) -> None:
    """Earlier tests may have left tables of the same names on the shared PostgreSQL."""
    from fastpeewee.db_url import connect

    from ..conftest import AnyDatabase

    db = cast("AnyDatabase", connect(url))  # connect() is typed AsyncDatabase
    try:
        cascade = " CASCADE" if url.startswith("postgres") else ""
        left, right = db.quote  # type: ignore[str-unpack]  # the backend's identifier quotes
        for table in ("item", "tweet", "user"):
            db.execute_sql(f"DROP TABLE IF EXISTS {left}{table}{right}{cascade}")
    finally:
        db.close_all()


async def test_ten_slow_tabs_and_concurrent_writes_all_succeed(served):
    async with httpx.AsyncClient(base_url=served, timeout=30) as http:
        first = await http.post(
            "/users/", json={"email": "tab@example.com", "password": "12345678"}
        )
        assert first.status_code == 201, first.text
        owner = first.json()["id"]

        async def write(n: int) -> list[Any]:
            user = await http.post("/users/", json={"email": f"w{n}@example.com",
                                                    "password": "12345678"})  # fmt: skip
            item = await http.post(f"/users/{owner}/items/", json={"title": f"item {n}"})
            return [user.status_code, item.status_code]

        started = time.monotonic()
        slow, writes = await asyncio.gather(
            asyncio.gather(*(http.get("/slowusers/") for _ in range(TABS))),
            asyncio.gather(*(write(n) for n in range(TABS))),
        )
        elapsed = time.monotonic() - started
        assert [r.status_code for r in slow] == [200] * TABS
        assert all(r.json()[0]["email"] == "tab@example.com" for r in slow)
        assert writes == [[201, 201]] * TABS
        # The tabs waited side by side, not one after another.
        assert elapsed < SLOW * TABS * 0.8, elapsed

        users = (await http.get("/users/", params={"limit": 100})).json()
        assert len(users) == TABS + 1
        assert len(users[0]["items"]) == TABS
        bad = await http.get("/users/", params={"limit": 10**9})
        assert bad.status_code == 422

        # Oversized bodies: refused with 413 before being buffered, whether the
        # length is declared or the body comes in chunks; the server goes on.
        big = await http.post("/users/", content=b"x" * 10_000_000,
                              headers={"content-type": "application/json"})  # fmt: skip
        assert big.status_code == 413 and "detail" in big.json()

        async def chunks() -> Any:
            for _ in range(100):
                yield b" " * 10_000  # 1 MB in all, no Content-Length

        chunked = await http.post("/users/", content=chunks(),
                                  headers={"content-type": "application/json"})  # fmt: skip
        assert chunked.status_code == 413
        after = await http.post("/users/", json={"email": "after@example.com",
                                                 "password": "12345678"})  # fmt: skip
        assert after.status_code == 201
