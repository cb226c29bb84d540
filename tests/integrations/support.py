"""Helpers shared by the framework tests: pool counters, clients (in process, or one
kept-alive socket), a real uvicorn server, the ``user`` table seen from outside."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import uvicorn

from ..harness import Outside
from ..servers import free_port


def in_use(db: Any) -> int:
    """Connections checked out of ``db``'s pools now."""
    return sum(s.in_use for s in db.pool_stats())


def opened(db: Any) -> int:
    """Connections ``db``'s pools have opened so far."""
    return sum(s.opened for s in db.pool_stats())


def client(app: Any) -> httpx.AsyncClient:
    """An httpx client calling ``app`` in this event loop (server errors become 500s)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def one_socket(base_url: str) -> httpx.AsyncClient:
    """A client whose requests all go over one kept-alive connection."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10)


def http_scope(path: str, method: str = "GET") -> dict[str, Any]:
    """A minimal ASGI HTTP scope."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip


async def cancel_mid_request(
    app: Any, path: str, started: asyncio.Event
) -> list[MutableMapping[str, Any]]:
    """Call ``app`` for ``path``, wait for ``started``, cancel the call; return what it sent."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)  # the client never says more (nor leaves)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    task = asyncio.create_task(app(http_scope(path), receive, send))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return sent


def user_table(outside: Outside) -> str:
    return "`user`" if outside.kind == "mysql" else '"user"'


async def usernames_outside(db: Any) -> set[str]:
    """The committed usernames, read through a connection of the test's own."""
    outside = Outside(db)
    try:
        await outside.wait_quiet()  # nobody idle in transaction or mid-statement
        rows = await asyncio.to_thread(
            outside.query, f"SELECT username FROM {user_table(outside)}"
        )
        return {str(row[0]) for row in rows}
    finally:
        outside.close()


@contextlib.asynccontextmanager
async def uvicorn_server(app: Any) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in this event loop; yield the port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def stream_then_hang_up(port: int, path: str, until: Callable[[], bool]) -> bytes:
    """GET ``path`` over a raw socket, read until ``until()``, then close the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    received = b""
    for _ in range(500):
        if until():
            break
        received += await asyncio.wait_for(reader.read(1024), 5)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return received


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes; return its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        ok = await result if not isinstance(result, bool) else result
        if ok or asyncio.get_running_loop().time() > deadline:
            return ok
        await asyncio.sleep(0.02)
