"""Plain ASGI middleware: answer 413 to request bodies over a size limit.

Neither Starlette nor FastAPI caps the size of a JSON body: ``request.body()``
buffers whatever the client sends, so one 10 MB request costs 10 MB of memory
before validation even starts. :class:`BodySizeLimitMiddleware` refuses a
body whose ``Content-Length`` is over the limit before the application sees
it, and counts the bytes of a body sent without one (chunked), stopping the
application as soon as the count passes the limit. Either way it answers 413.

The rest of a refused body is read and thrown away (up to ``drain_bytes``)
before the 413 goes out: a server that answered and closed while the client
was still sending would make most clients fail with a connection reset instead
of reading the 413. Nothing is kept, so memory stays flat. A body declared
larger than ``drain_bytes`` is answered at once and its connection closed.
"""

from __future__ import annotations

import contextlib
import json

from .asgi import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimitMiddleware"]


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop the application reading any further."""


class BodySizeLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes`` with 413 and a JSON ``detail``.

    With FastAPI or Starlette::

        app.add_middleware(BodySizeLimitMiddleware, max_bytes=64 * 1024)

    WebSocket and lifespan messages pass through untouched.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = 1024 * 1024, drain_bytes: int = 16 * 1024 * 1024
    ) -> None:
        if max_bytes < 0 or drain_bytes < 0:
            raise ValueError("max_bytes and drain_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if declared <= self.drain_bytes:
                await self._drain(receive, 0, more=True)
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not refused:
                    refused = True
                    await self._drain(receive, received, message.get("more_body", False))
                    await self._refuse(send)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        with contextlib.suppress(_BodyTooLarge):  # the 413 is sent; the app stopped reading
            await self.app(scope, counting_receive, guarded_send)

    async def _drain(self, receive: Receive, seen: int, more: bool) -> None:
        """Read and drop the rest of the body, up to ``drain_bytes`` in all."""
        while more and seen <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"Request body is larger than {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None
