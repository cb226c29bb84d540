"""BodySizeLimitMiddleware: 413 for bodies over the limit, declared or chunked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from fastpeewee import BodySizeLimitMiddleware

LIMIT = 25_000


class Note(BaseModel):
    text: str


def make_app(calls: list[str]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=LIMIT)

    @app.post("/notes")
    async def create(note: Note) -> dict[str, int]:
        calls.append("endpoint")
        return {"length": len(note.text)}

    return app


async def post(app: Any, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post("/notes", **kwargs)


def body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    frame = b'{"text": ""}'
    return frame[:-2] + b"a" * (size - len(frame)) + b'"}'


@pytest.mark.parametrize("size", [100, LIMIT])
async def test_bodies_up_to_the_limit_pass(size):
    calls: list[str] = []
    response = await post(make_app(calls), content=body(size),
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {"length": size - len(b'{"text": ""}')}
    assert calls == ["endpoint"]


async def test_a_declared_length_over_the_limit_is_refused_unread():
    reads: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reads.append(await receive())  # never reached

    response = await post(BodySizeLimitMiddleware(app, max_bytes=LIMIT),
                          content=body(LIMIT + 1))  # fmt: skip
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body is larger than {LIMIT} bytes"}
    assert response.headers["connection"] == "close"
    assert reads == []


async def chunks(total: int, size: int = 10_000) -> AsyncIterator[bytes]:
    for _ in range(total // size):  # no Content-Length: sent chunked
        yield b"a" * size


async def test_a_chunked_body_is_cut_off_at_the_limit():
    seen = 0
    responded = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal seen, responded
        more = True
        while more:  # reads the way a framework buffers a body
            message = await receive()
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        responded = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    middleware = BodySizeLimitMiddleware(app, max_bytes=LIMIT)
    response = await post(middleware, content=chunks(1_000_000))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request body is larger")
    assert seen <= LIMIT + 10_000  # the app saw up to the first chunk past the limit
    assert not responded


async def test_a_chunked_body_into_fastapi():
    calls: list[str] = []
    response = await post(make_app(calls), content=chunks(1_000_000),
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert calls == []


async def test_a_body_declared_past_drain_bytes_is_answered_unread():
    reads: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reads.append("called")  # never reached

    async def receive() -> Any:
        reads.append("receive")
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = BodySizeLimitMiddleware(app, max_bytes=10, drain_bytes=100)
    scope = {"type": "http", "headers": [(b"content-length", b"1000")]}
    await middleware(scope, receive, send)
    assert reads == []
    assert sent[0]["status"] == 413


async def test_other_scopes_pass_through():
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = BodySizeLimitMiddleware(app, max_bytes=0)
    for kind in ("lifespan", "websocket"):
        await middleware({"type": kind}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        BodySizeLimitMiddleware(lambda *a: None, drain_bytes=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        BodySizeLimitMiddleware(lambda *a: None, max_bytes=-1)  # type: ignore[arg-type]
