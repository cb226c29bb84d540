"""What every port of examples/sql_app to another ASGI framework must answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.sql_app import models as app_models

from ..conftest import make_database, settle
from ..models import MODELS as TEST_MODELS


@asynccontextmanager
async def serve(
    create_app: Callable[[Any], Any],
    lifespan: Callable[[Any], AbstractAsyncContextManager[None]],
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app on a fresh database, its lifespan running; yields a client and the db."""
    db = make_database(backend, request, tmp_path)
    db.bind([*TEST_MODELS, *app_models.MODELS])
    await db.adrop_tables([*TEST_MODELS, *app_models.MODELS], safe=True)
    app = create_app(db)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, db
        await settle(db)
        assert all(s.in_use == 0 for s in db.pool_stats())
        await db.adrop_tables(app_models.MODELS)
    assert db.pool_stats() == []  # the lifespan closed the pool
    db.close_all()


async def check_every_route(http: httpx.AsyncClient) -> None:
    """examples/sql_app's routes and status codes."""
    created = await http.post("/users/", json={"email": "ann@example.com", "password": "pw-12345"})
    assert created.status_code == 201, created.text
    ann = created.json()
    assert ann == {"id": ann["id"], "email": "ann@example.com", "is_active": True, "items": []}
    again = await http.post("/users/", json={"email": "ann@example.com", "password": "other-pw"})
    assert (again.status_code, again.json()) == (409, {"detail": "Email already registered"})
    bad = await http.post("/users/", json={"email": "not-an-email", "password": "x"})
    assert bad.status_code == 422 and "password" in bad.text and "detail" in bad.json()
    # Concurrent sign-ups each get their own connection and all land.
    many = await asyncio.gather(
        *(http.post("/users/", json={"email": f"u{i}@example.com", "password": "12345678"})
          for i in range(4))
    )  # fmt: skip
    assert [r.status_code for r in many] == [201] * 4

    item = await http.post(f"/users/{ann['id']}/items/", json={"title": "pen", "description": "x"})
    assert item.status_code == 201, item.text
    assert item.json() == {
        "id": item.json()["id"], "title": "pen", "description": "x", "owner_id": ann["id"]
    }  # fmt: skip
    assert (await http.post(f"/users/{ann['id']}/items/", json={"title": ""})).status_code == 422
    lost = await http.post("/users/999/items/", json={"title": "lost"})
    assert (lost.status_code, lost.json()) == (404, {"detail": "User not found"})

    one = await http.get(f"/users/{ann['id']}")
    assert [i["title"] for i in one.json()["items"]] == ["pen"]
    missing = await http.get("/users/999")
    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})
    assert (await http.get("/users/0")).status_code == 422

    users = (await http.get("/users/")).json()
    assert [u["email"] for u in users][:1] == ["ann@example.com"] and len(users) == 5
    page = (await http.get("/users/", params={"skip": 1, "limit": 1})).json()
    assert len(page) == 1 and page[0]["email"].startswith("u")
    assert (await http.get("/users/", params={"limit": 0})).status_code == 422
    assert [i["title"] for i in (await http.get("/items/")).json()] == ["pen"]
    assert (await http.get("/items/", params={"skip": 1})).json() == []

    health = await http.get("/health")
    assert health.status_code == 200
    assert [p["in_use"] for p in health.json()["pools"]] == [0] * len(health.json()["pools"])
    for response in (created, again, item, one):
        assert "hashed_password" not in response.text and "pw-12345" not in response.text
