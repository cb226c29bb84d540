"""The reference app on aiohttp (examples/aiohttp_app): served on loopback on every
backend, and started by its own command (``python -m examples.aiohttp_app``) on SQLite."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from examples.aiohttp_app import main as aiohttp_main
from examples.sql_app import models as app_models

from ..conftest import make_database, settle
from ..models import MODELS as TEST_MODELS
from ..servers import free_port
from .test_sql_app import BAD_REQUESTS, SURROGATES

ROOT = Path(__file__).resolve().parents[2]


async def open_app(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> tuple[web.Application, Any]:
    db = make_database(backend, request, tmp_path, **options)
    db.bind([*TEST_MODELS, *app_models.MODELS])
    await db.adrop_tables([*TEST_MODELS, *app_models.MODELS], safe=True)
    await db.close_pool()
    return aiohttp_main.create_app(db), db


@pytest.fixture
async def http(backend, request, tmp_path) -> AsyncIterator[TestClient[web.Request, Any]]:
    app, db = await open_app(backend, request, tmp_path)
    async with TestClient(TestServer(app)) as client:
        yield client
        await settle(db)
        assert all(s.in_use == 0 for s in db.pool_stats())
        await db.adrop_tables(app_models.MODELS)
    assert db.pool_stats() == []  # the app's cleanup closed the pool
    db.close_all()


@pytest.fixture
def fast_slowusers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiohttp_main, "SLOW_SECONDS", 0.3)


async def test_every_route(http, fast_slowusers):
    created = await http.post("/users/", json={"email": "ann@example.com", "password": "pw-12345"})
    assert created.status == 201, await created.text()
    ann = await created.json()
    assert ann == {"id": ann["id"], "email": "ann@example.com", "is_active": True, "items": []}
    assert (await http.post("/users/", json={"email": "bob@x.com", "password": "12345678"})).ok
    again = await http.post("/users/", json={"email": "ann@example.com", "password": "other-pw"})
    assert again.status == 409
    assert await again.json() == {"detail": "Email already registered"}

    item = await http.post(f"/users/{ann['id']}/items/", json={"title": "pen", "description": "x"})
    assert item.status == 201, await item.text()
    pen = await item.json()
    assert pen == {"id": pen["id"], "title": "pen", "description": "x", "owner_id": ann["id"]}
    second = await http.post(f"/users/{ann['id']}/items/", json={"title": "ink"})
    assert (await second.json())["description"] is None
    missing_owner = await http.post("/users/999/items/", json={"title": "lost"})
    assert missing_owner.status == 404
    assert await missing_owner.json() == {"detail": "User not found"}

    one = await (await http.get(f"/users/{ann['id']}")).json()
    assert [i["title"] for i in one["items"]] == ["pen", "ink"]
    missing = await http.get("/users/999")  # User.DoesNotExist, answered by the middleware
    assert missing.status == 404
    assert await missing.json() == {"detail": "User not found"}

    users = await (await http.get("/users/")).json()
    assert [u["email"] for u in users] == ["ann@example.com", "bob@x.com"]
    assert [len(u["items"]) for u in users] == [2, 0]
    page = await (await http.get("/users/", params={"skip": 1, "limit": 1})).json()
    assert [u["email"] for u in page] == ["bob@x.com"]

    items = await (await http.get("/items/")).json()
    assert [i["title"] for i in items] == ["pen", "ink"]
    assert [i["title"] for i in await (await http.get("/items/?skip=1")).json()] == ["ink"]

    slow = await http.get("/slowusers/")
    assert slow.status == 200
    assert await slow.json() == users
    health = await (await http.get("/health")).json()
    assert [p["in_use"] for p in health["pools"] if "[sync]" not in p["name"]] == [0]
    unknown = await http.get("/no-such-page")
    assert unknown.status == 404
    assert await unknown.json() == {"detail": "Not Found"}


async def test_bad_input_gets_a_4xx_json_answer_never_a_500(http):
    owner = await http.post("/users/", json={"email": "o@example.com", "password": "12345678"})
    assert (await owner.json())["id"] == 1
    for method, path, kwargs in BAD_REQUESTS:
        options = {("data" if k == "content" else k): v for k, v in kwargs.items()}
        response = await http.request(method, path, **options)
        where = f"{method} {path} {kwargs}"
        assert 400 <= response.status < 500, f"{where}: {response.status}"
        assert "detail" in await response.json(), where
    for path, body, loc in SURROGATES:
        response = await http.post(path, data=body, headers={"content-type": "application/json"})
        assert response.status == 422, (body, await response.text())
        assert [e["loc"] for e in (await response.json())["detail"]] == [loc], body
    # Nothing half-written was left behind by the rejected requests.
    assert len(await (await http.get("/users/")).json()) == 1
    assert await (await http.get("/items/")).json() == []


async def test_n_slow_requests_on_a_pool_of_n_all_succeed(
    backend, request, tmp_path, fast_slowusers
):
    size = 3
    app, db = await open_app(backend, request, tmp_path, pool_size=size, acquire_timeout=0.2)
    async with TestClient(TestServer(app)) as http:
        await http.post("/users/", json={"email": "s@example.com", "password": "12345678"})
        responses = await asyncio.gather(*(http.get("/slowusers/") for _ in range(size)))
        assert [r.status for r in responses] == [200] * size
        # MySQL: plus the connection that took the schema lock, closed after it
        # (GET_LOCK changed its session).
        assert max(s.opened for s in db.pool_stats()) <= size + (backend == "mysql")
        # One more than the pool holds: each request keeps its one connection
        # through the slow step, so the last one waits past acquire_timeout.
        responses = await asyncio.gather(*(http.get("/slowusers/") for _ in range(size + 1)))
        codes = sorted(r.status for r in responses)
        assert codes == [200] * size + [503], codes
        busy = next(r for r in responses if r.status == 503)
        assert busy.headers["Retry-After"] == "1"
        await settle(db)
        assert all(s.in_use == 0 for s in db.pool_stats())
        await db.adrop_tables(app_models.MODELS)
    db.close_all()


@pytest.mark.backends("sqlite")
def test_the_start_command_serves_the_app(backend, tmp_path):
    port = free_port()
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "POOL_SIZE": "3",
           "PYTHONPATH": path}  # fmt: skip
    command = [sys.executable, "-m", "examples.aiohttp_app", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        created = httpx.post(f"{base}/users/", json={"email": "a@x.com", "password": "12345678"})
        assert created.status_code == 201, created.text
        assert httpx.get(f"{base}/users/").json()[0]["email"] == "a@x.com"
        assert httpx.get(f"{base}/users/2").status_code == 404
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
