"""The reference app's tests the way an app's own suite would write them: each test in one
transaction rolled back at its end (fastpeewee's pytest plugin), no table ever emptied.

Tables are created once per database (``safe=True``) before the test transaction opens;
every test then starts from the same empty tables because nothing it wrote was committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from examples.sql_app import main as async_main
from examples.sql_app import models as app_models
from examples.sql_app_sync import main as sync_main

from fastpeewee_pytest import fastpeewee_transaction

from ..conftest import make_database
from ..harness import Outside

__all__ = ["fastpeewee_transaction"]  # the plugin's fixture, used by the tests below

FLAVOURS = {"async": async_main, "sync": sync_main}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fastpeewee_database(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    app_models.bind(db)
    db.create_tables(app_models.MODELS, safe=True)  # before the test transaction opens
    yield db
    db.close_all()


@pytest.fixture
async def app(flavour, fastpeewee_database) -> AsyncIterator[Any]:
    app = FLAVOURS[flavour].create_app(fastpeewee_database)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(app, fastpeewee_transaction) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def outside(fastpeewee_database):
    view = Outside(fastpeewee_database)
    yield view
    view.close()


def committed_users(outside: Outside) -> int:
    table = app_models.User._meta.table_name
    quoted = f"`{table}`" if outside.kind == "mysql" else f'"{table}"'
    return int(outside.query(f"SELECT count(*) FROM {quoted}")[0][0])


@pytest.mark.parametrize("round", range(2))
async def test_the_same_user_in_every_test(http, round, outside):
    # A unique email: a second round would get 409 if the first had left its row.
    created = await http.post("/users/", json={"email": "ann@example.com", "password": "pw-12345"})
    assert created.status_code == 201, created.text
    ann = created.json()
    item = await http.post(f"/users/{ann['id']}/items/", json={"title": "pen"})
    assert item.status_code == 201
    users = (await http.get("/users/")).json()
    assert [(u["email"], len(u["items"])) for u in users] == [("ann@example.com", 1)]
    again = await http.post("/users/", json={"email": "ann@example.com", "password": "other-pw-1"})
    assert again.status_code == 409
    # The test's own code sees the app's rows, from its task and from a thread.
    assert await app_models.database().count(app_models.User.select()) == 1
    assert await asyncio.to_thread(lambda: app_models.Item.select().count()) == 1
    assert committed_users(outside) == 0  # the server has committed none of it


async def test_starts_empty(http, outside):
    assert (await http.get("/users/")).json() == []
    assert committed_users(outside) == 0
