"""A TCP proxy on loopback that can cut, black-hole or half-close database links.

It runs on the test's event loop; threads using the database block only
themselves, so it serves the sync drivers too. Three faults:

- ``open.clear()`` / ``open.set()``: a partition. Nothing crosses, in either
  direction, on any link; new links wait. Resumed, everything flows again.
- :meth:`blackhole`: the links open now stop forwarding for good, without
  closing (no FIN, no RST), as when a NAT or load balancer forgets a
  connection; new links pass.
- :meth:`hold_eof` / :meth:`pass_eof`: a side that closes its end is not
  reported to the other side until released, while data still passes (the
  window between a server's last message and the close that follows it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastpeewee import AsyncDatabase, AsyncMySQLDatabase, AsyncPostgresqlDatabase


class _Link:
    __slots__ = ("dead",)

    def __init__(self) -> None:
        self.dead = False  # black-holed: everything sent on it is dropped


class Proxy:
    """Forwards TCP connections made to ``127.0.0.1:<start()>`` to ``127.0.0.1:port``.

    Example::

        proxy = Proxy(server.port)
        port = await proxy.start()
        ...
        proxy.blackhole()
        ...
        await proxy.close()
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.open = asyncio.Event()
        self.open.set()
        self.eof_passes = asyncio.Event()
        self.eof_passes.set()
        self.links: list[_Link] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def blackhole(self) -> int:
        """Silently drop everything on the links open now; return how many."""
        live = [link for link in self.links if not link.dead]
        for link in live:
            link.dead = True
        return len(live)

    def hold_eof(self) -> None:
        """From now on, keep each side's close from reaching the other side."""
        self.eof_passes.clear()

    def pass_eof(self) -> None:
        """Deliver the closes held back by :meth:`hold_eof`."""
        self.eof_passes.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await self.open.wait()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers.append(up_writer)
        link = _Link()
        self.links.append(link)
        pipes = [
            asyncio.create_task(self._pipe(src, dst, link))
            for src, dst in ((reader, up_writer), (up_reader, writer))
        ]
        self.tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self.tasks.difference_update(pipes)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                await self.open.wait()
                if link.dead:
                    continue  # dropped, as by a NAT that forgot the connection
                dst.write(data)
                await dst.drain()
        if link.dead:
            return  # a black hole passes no FIN either; close() ends it
        await self.eof_passes.wait()
        dst.close()

    async def close(self) -> None:
        """Stop listening and close every link."""
        self.eof_passes.set()
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def proxied_database(
    server: Any, backend: str, **options: Any
) -> AsyncIterator[tuple[AsyncDatabase, Proxy]]:
    """A database of ``backend`` ("postgres" or "mysql") reaching ``server``
    through a new :class:`Proxy`; both closed afterwards."""
    proxy = Proxy(server.port)
    params: dict[str, Any] = {**server.connect_params, "port": await proxy.start()}
    db: AsyncDatabase
    if backend == "postgres":
        db = AsyncPostgresqlDatabase(server.database, **params, **options)
    else:  # the test server has no TLS
        db = AsyncMySQLDatabase(server.database, ssl_disabled=True, **params, **options)
    try:
        yield db, proxy
    finally:
        await db.close_pool()
        db.close_all()
        await proxy.close()
