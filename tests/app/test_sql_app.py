"""The reference app (examples/sql_app and examples/sql_app_sync), in process, on every backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.sql_app import main as async_main
from examples.sql_app import models as app_models
from examples.sql_app.security import verify_password
from examples.sql_app_sync import main as sync_main

from ..conftest import make_database, settle
from ..models import MODELS as TEST_MODELS

FLAVOURS = {"async": async_main, "sync": sync_main}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def open_app(
    flavour: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> tuple[Any, Any]:
    db = make_database(backend, request, tmp_path, **options)
    # drop_tables acts on each model's own database: bind them all here first.
    db.bind([*TEST_MODELS, *app_models.MODELS])
    await db.adrop_tables([*TEST_MODELS, *app_models.MODELS], safe=True)
    return FLAVOURS[flavour].create_app(db), db


@pytest.fixture
async def app(flavour, backend, request, tmp_path) -> AsyncIterator[Any]:
    app, db = await open_app(flavour, backend, request, tmp_path)
    async with app.router.lifespan_context(app):
        yield app
        await settle(db)
        assert all(s.in_use == 0 for s in db.pool_stats())
        await db.adrop_tables(app_models.MODELS)
    db.close_all()


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def fast_slowusers(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in FLAVOURS.values():
        monkeypatch.setattr(module, "SLOW_SECONDS", 0.3)


async def test_every_route(http, fast_slowusers):
    created = await http.post("/users/", json={"email": "ann@example.com", "password": "pw-12345"})
    assert created.status_code == 201, created.text
    ann = created.json()
    assert ann == {"id": ann["id"], "email": "ann@example.com", "is_active": True, "items": []}
    assert await http.post("/users/", json={"email": "bob@example.com", "password": "12345678"})
    again = await http.post("/users/", json={"email": "ann@example.com", "password": "other-pw"})
    assert again.status_code == 409  # as a lost race gets from the IntegrityError
    assert again.json() == {"detail": "Email already registered"}

    item = await http.post(f"/users/{ann['id']}/items/", json={"title": "pen", "description": "x"})
    assert item.status_code == 201, item.text
    assert item.json() == {
        "id": item.json()["id"], "title": "pen", "description": "x", "owner_id": ann["id"]
    }  # fmt: skip
    second = await http.post(f"/users/{ann['id']}/items/", json={"title": "ink"})
    assert second.json()["description"] is None
    missing_owner = await http.post("/users/999/items/", json={"title": "lost"})
    assert missing_owner.status_code == 404
    assert missing_owner.json() == {"detail": "User not found"}

    one = (await http.get(f"/users/{ann['id']}")).json()
    assert [i["title"] for i in one["items"]] == ["pen", "ink"]
    assert (await http.get("/users/999")).status_code == 404

    users = (await http.get("/users/")).json()
    assert [u["email"] for u in users] == ["ann@example.com", "bob@example.com"]
    assert [len(u["items"]) for u in users] == [2, 0]
    page = (await http.get("/users/", params={"skip": 1, "limit": 1})).json()
    assert [u["email"] for u in page] == ["bob@example.com"]

    items = (await http.get("/items/")).json()
    assert [i["title"] for i in items] == ["pen", "ink"]
    assert [i["title"] for i in (await http.get("/items/?skip=1")).json()] == ["ink"]

    slow = await http.get("/slowusers/")
    assert slow.status_code == 200
    assert slow.json() == users

    docs = await http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await http.get("/openapi.json")).json()
    assert {"/users/", "/users/{user_id}", "/users/{user_id}/items/", "/items/"} <= set(
        spec["paths"]
    )


async def test_passwords_are_hashed_with_a_salt_and_never_returned(http):
    for email in ("a@example.com", "b@example.com"):
        response = await http.post("/users/", json={"email": email, "password": "same-secret"})
        assert "same-secret" not in response.text and "password" not in response.text
    listing = await http.get("/users/")
    assert "password" not in listing.text
    stored = await app_models.database().list(app_models.User.select())
    hashes = [u.hashed_password for u in stored]
    assert hashes[0] != hashes[1]  # a salt per user
    assert all(h.startswith("scrypt$") and "same-secret" not in h for h in hashes)
    assert verify_password("same-secret", hashes[0])
    assert not verify_password("wrong-secret", hashes[0])


BIG = [2**31, 2**63 - 1, 2**63, 2**64, 10**40]
BAD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/users/", {"content": b'{"email": "x@example.com", "password": '}),
    ("POST", "/users/", {"content": b"not json at all"}),
    ("POST", "/users/", {"json": {"email": 5, "password": ["a"]}}),
    ("POST", "/users/", {"json": {}}),
    ("POST", "/users/", {"json": {"email": "not-an-email", "password": "12345678"}}),
    ("POST", "/users/", {"json": {"email": "a" * 300 + "@example.com", "password": "12345678"}}),
    ("POST", "/users/", {"json": {"email": "c@example.com", "password": "p" * 1000}}),
    ("POST", "/users/", {"json": {"email": "c@example.com", "password": "short"}}),
    ("POST", "/users/", {"json": ["email", "password"]}),
    ("POST", "/users/", {"content": b"email=c@example.com&password=12345678",
                         "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ("POST", "/users/", {"content": b'{"email": "c@example.com", "password": "12345678"}',
                         "headers": {"content-type": "text/plain"}}),
    ("POST", "/users/", {"content": b'{"email": "' + b"a" * 100_000 + b'"}',
                         "headers": {"content-type": "application/json"}}),  # 413
    ("POST", "/users/1/items/", {"json": {"title": "t" * 201}}),
    ("POST", "/users/1/items/", {"json": {"title": ""}}),
    ("POST", "/users/1/items/", {"json": {"title": "nul\x00byte"}}),
    ("POST", "/users/1/items/", {"content": b'{"title": NaN}',
                                 "headers": {"content-type": "application/json"}}),
    ("POST", "/users/1/items/", {"content": b'{"title": "x", "description": NaN}',
                                 "headers": {"content-type": "application/json"}}),
    ("POST", "/users/1/items/", {"json": {"title": 12}}),
    ("POST", "/users/-1/items/", {"json": {"title": "x"}}),
    ("POST", f"/users/{2**63}/items/", {"json": {"title": "x"}}),
    ("GET", "/users/-1", {}),
    ("GET", "/users/0", {}),
    ("GET", "/users/abc", {}),
    ("GET", "/users/1.5", {}),
    *[("GET", f"/users/{n}", {}) for n in BIG],
    ("GET", "/users/", {"params": {"skip": -1}}),
    ("GET", "/users/", {"params": {"skip": 10**20}}),
    ("GET", "/users/", {"params": {"limit": 0}}),
    ("GET", "/users/", {"params": {"limit": -5}}),
    ("GET", "/users/", {"params": {"limit": 101}}),
    ("GET", "/users/", {"params": {"limit": 10**30}}),
    ("GET", "/users/", {"params": {"limit": "NaN"}}),
    ("GET", "/items/", {"params": {"skip": 2**63}}),
    ("GET", "/slowusers/", {"params": {"limit": 10**6}}),
]  # fmt: skip


async def test_bad_input_gets_a_4xx_json_answer_never_a_500(http):
    owner = await http.post("/users/", json={"email": "o@example.com", "password": "12345678"})
    assert owner.json()["id"] == 1
    for method, path, kwargs in BAD_REQUESTS:
        response = await http.request(method, path, **kwargs)
        where = f"{method} {path} {kwargs}"
        assert 400 <= response.status_code < 500, f"{where}: {response.status_code}"
        assert "detail" in response.json(), where
    # Nothing half-written was left behind by the rejected requests.
    assert len((await http.get("/users/")).json()) == 1
    assert (await http.get("/items/")).json() == []


async def test_sql_looking_and_unicode_strings_are_plain_data(http):
    user = await http.post(
        "/users/", json={"email": "ünïcødé@exämple.com", "password": "pässwörd🔑"}
    )
    assert user.status_code == 201, user.text
    owner = user.json()["id"]
    texts = [
        "'; DROP TABLE item; --",
        'Robert"); DELETE FROM "user" WHERE 1=1; --',
        "%s %(name)s $1 ? :name",
        "日本語のタイトル 🐍 — ñ",
        "x" * 200,
    ]
    for text in texts:
        created = await http.post(
            f"/users/{owner}/items/", json={"title": text, "description": text}
        )
        assert created.status_code == 201, created.text
    items = (await http.get("/items/")).json()
    assert [i["title"] for i in items] == texts
    assert [i["description"] for i in items] == texts
    reread = (await http.get(f"/users/{owner}")).json()
    assert reread["email"] == user.json()["email"]
    assert len(reread["items"]) == len(texts)


class QueryCounter(logging.Handler):
    """Counts the statements peewee logs while it is installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def queries() -> Iterator[QueryCounter]:
    counter = QueryCounter()
    logger = logging.getLogger("peewee")
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(level)


async def add_users(first: int, count: int, items_each: int) -> None:
    db = app_models.database()
    users = [
        {"email": f"u{n}@example.com", "hashed_password": "x"} for n in range(first, first + count)
    ]
    async with db.atomic():
        await app_models.User.insert_many(users).aexecute()
        ids = [u.id for u in await db.list(app_models.User.select().order_by(app_models.User.id))]
        rows = [
            {"title": f"t{i}", "owner": uid} for uid in ids[-count:] for i in range(items_each)
        ]
        await app_models.Item.insert_many(rows).aexecute()


async def test_listing_users_with_items_takes_the_same_queries_for_10_and_100(http, queries):
    counts: list[int] = []
    for total in (10, 100):
        await add_users(len(counts) * 10, total - len(counts) * 10, items_each=3)
        queries.count = 0
        users = (await http.get("/users/", params={"limit": 100})).json()
        assert len(users) == total
        assert all(len(u["items"]) == 3 for u in users)
        counts.append(queries.count)
    assert counts[0] == counts[1] <= 3, counts


async def test_n_slow_requests_on_a_pool_of_n_all_succeed(
    flavour, backend, request, tmp_path, fast_slowusers
):
    size = 3
    app, db = await open_app(flavour, backend, request, tmp_path, pool_size=size,
                             acquire_timeout=0.2)  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        await http.post("/users/", json={"email": "s@example.com", "password": "12345678"})
        responses = await asyncio.gather(*(http.get("/slowusers/") for _ in range(size)))
        assert [r.status_code for r in responses] == [200] * size
        assert all(r.json()[0]["email"] == "s@example.com" for r in responses)
        # MySQL: plus the connection that took the schema lock, closed after it
        # (GET_LOCK changed its session).
        assert max(s.opened for s in db.pool_stats()) <= size + (backend == "mysql")
        # One more than the pool holds: each request keeps its one connection
        # through the slow step, so the last one waits past acquire_timeout.
        responses = await asyncio.gather(*(http.get("/slowusers/") for _ in range(size + 1)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * size + [503], codes
        await settle(db)
        assert all(s.in_use == 0 for s in db.pool_stats())
        await db.adrop_tables(app_models.MODELS)
    db.close_all()


# Lone surrogates reach a handler only through JSON: a "\ud800" escape, or the
# bytes ED A0 80, which json.loads decodes with "surrogatepass".
SURROGATES: list[tuple[str, bytes, list[Any]]] = [
    ("/users/", b'{"email": "\\ud800@example.com", "password": "12345678"}', ["body", "email"]),
    ("/users/", b'{"email": "s@example.com", "password": "1234567\\udfff"}',
     ["body", "password"]),
    ("/users/1/items/", b'{"title": "\\ud800"}', ["body", "title"]),
    ("/users/1/items/", b'{"title": "pen", "description": "a\\udc00b"}',
     ["body", "description"]),
    ("/users/1/items/", b'{"title": "\\ude00\\ud83d"}', ["body", "title"]),  # pair reversed
    ("/users/1/items/", b'{"title": "\xed\xa0\x80"}', ["body", "title"]),
]  # fmt: skip


async def test_lone_surrogates_are_a_422_from_the_schema_never_a_500(http):
    owner = await http.post("/users/", json={"email": "o@example.com", "password": "12345678"})
    assert owner.json()["id"] == 1
    for path, body, loc in SURROGATES:
        response = await http.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (body, response.status_code, response.text)
        errors = response.json()["detail"]
        assert [e["loc"] for e in errors] == [loc], body
    # A well-formed pair is one character, stored and read back as such.
    snake = await http.post(
        "/users/1/items/", content=b'{"title": "\\ud83d\\udc0d"}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert snake.status_code == 201, snake.text
    assert snake.json()["title"] == "\U0001f40d"
    # Nothing else was written.
    assert [u["email"] for u in (await http.get("/users/")).json()] == ["o@example.com"]
    assert [i["title"] for i in (await http.get("/items/")).json()] == ["\U0001f40d"]
