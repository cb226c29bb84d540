"""The reference app on Flask (examples/flask_app): every route, bad input,
concurrency through a real server; on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.flask_app.main import create_app
from examples.sql_app import models as app_models
from flask.testing import FlaskClient

from ..conftest import make_database
from ..integrations.sync.helpers import assert_clean, get_many, in_use, serve
from ..models import MODELS as TEST_MODELS
from .test_sql_app import BAD_REQUESTS


@pytest.fixture
def app_db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    db = make_database(backend, request, tmp_path, pool_size=6)
    db.bind([*TEST_MODELS, *app_models.MODELS])
    db.drop_tables([*TEST_MODELS, *app_models.MODELS], safe=True)
    try:
        yield db
        assert_clean(db)
        db.drop_tables(app_models.MODELS)
    finally:
        db.close_all()


@pytest.fixture
def http(app_db: Any) -> FlaskClient:
    return create_app(app_db).test_client()


def test_every_route(http, app_db):
    created = http.post("/users/", json={"email": "ann@example.com", "password": "pw-12345"})
    assert created.status_code == 201, created.text
    ann = created.json
    assert ann == {"id": ann["id"], "email": "ann@example.com", "is_active": True, "items": []}
    assert http.post("/users/", json={"email": "bob@example.com", "password": "12345678"})
    again = http.post("/users/", json={"email": "ann@example.com", "password": "other-pw"})
    assert again.status_code == 409
    assert again.json == {"detail": "Email already registered"}

    item = http.post(f"/users/{ann['id']}/items/", json={"title": "pen", "description": "x"})
    assert item.status_code == 201, item.text
    assert item.json == {"id": item.json["id"], "title": "pen", "description": "x",
                         "owner_id": ann["id"]}  # fmt: skip
    assert http.post(f"/users/{ann['id']}/items/", json={"title": "ink"}).status_code == 201
    missing_owner = http.post("/users/999/items/", json={"title": "lost"})
    assert missing_owner.status_code == 404
    assert missing_owner.json == {"detail": "User not found"}

    one = http.get(f"/users/{ann['id']}").json
    assert [i["title"] for i in one["items"]] == ["pen", "ink"]
    missing = http.get("/users/999")
    assert missing.status_code == 404
    assert missing.json == {"detail": "User not found"}  # DoesNotExist through error_reply

    users = http.get("/users/").json
    assert [u["email"] for u in users] == ["ann@example.com", "bob@example.com"]
    page = http.get("/users/", query_string={"skip": 1, "limit": 1}).json
    assert [u["email"] for u in page] == ["bob@example.com"]
    assert [i["title"] for i in http.get("/items/?skip=1").json] == ["ink"]

    health = http.get("/health").json
    assert all(p["in_use"] == 0 for p in health["pools"])
    assert in_use(app_db) == 0


def test_a_duplicate_that_slips_past_the_check_is_a_409(http, monkeypatch):
    # The race the email check cannot close: the unique index answers, as a 409.
    from examples.sql_app_sync import crud

    app_models.User.create(email="race@example.com", hashed_password="x")
    monkeypatch.setattr(crud, "email_taken", lambda email: False)
    response = http.post("/users/", json={"email": "race@example.com", "password": "12345678"})
    assert response.status_code == 409
    assert "INSERT" not in response.text and "race@example.com" not in response.text


def test_bad_input_gets_a_4xx_json_answer_never_a_500(http):
    owner = http.post("/users/", json={"email": "o@example.com", "password": "12345678"})
    assert owner.json["id"] == 1
    for method, path, kwargs in BAD_REQUESTS:
        options = dict(kwargs)
        if "content" in options:
            options["data"] = options.pop("content")
        if "params" in options:
            options["query_string"] = options.pop("params")
        response = http.open(path, method=method, **options)
        where = f"{method} {path} {kwargs}"
        assert 400 <= response.status_code < 500, f"{where}: {response.status_code}"
        assert "detail" in response.json, where
    assert len(http.get("/users/").json) == 1
    assert http.get("/items/").json == []


def test_concurrent_requests_through_waitress(app_db, monkeypatch):
    from examples.flask_app import main

    monkeypatch.setattr(main, "SLOW_SECONDS", 0.5)
    app = create_app(app_db)
    app.test_client().post("/users/", json={"email": "c@example.com", "password": "12345678"})
    with serve(app, threads=4) as url:
        started = time.monotonic()
        responses = get_many([url + "/slowusers/"] * 4 + [url + "/health"])
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 5
    assert all(r.json()[0]["email"] == "c@example.com" for r in responses[:4])
    assert elapsed < 1.5  # side by side: one after the other would take 2 s
    # A sync view borrows a connection per statement: none is held while it
    # sleeps, so the slow requests never exhausted the pool.
    assert sum(s.timeouts for s in app_db.pool_stats()) == 0
