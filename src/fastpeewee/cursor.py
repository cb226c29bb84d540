"""Cursors over rows already fetched, shaped like the DB-API cursors peewee reads."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

__all__ = ["Cursor", "StreamCursor"]

Row = Sequence[Any]


class Cursor:
    """The complete result of one statement: rows, rowcount, lastrowid, description."""

    __slots__ = ("_index", "_rows", "description", "lastrowid", "rowcount")

    def __init__(
        self,
        rows: Sequence[Row] = (),
        rowcount: int = -1,
        lastrowid: int | None = None,
        description: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        self._rows = rows
        self._index = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.description = description

    def fetchone(self) -> Row | None:
        """Return the next row, or None at the end."""
        index = self._index
        if index >= len(self._rows):
            return None
        self._index = index + 1
        return self._rows[index]

    def fetchmany(self, size: int = 100) -> list[Row]:
        """Return up to ``size`` further rows."""
        start = self._index
        self._index = min(start + size, len(self._rows))
        return list(self._rows[start : self._index])

    def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        return self.fetchmany(len(self._rows))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    def __getitem__(self, index: int) -> Row:
        return self._rows[index]

    def close(self) -> None:
        """Release the rows (nothing else to free: the connection is back in the pool)."""
        self._rows = ()


class StreamCursor(Cursor):
    """A cursor refilled in batches from the server by :meth:`fill`, for ``db.iterate``.

    ``fetchone`` never does I/O: the async iterator calls ``await fill()`` first.
    """

    __slots__ = ("_buffer", "_cleanup", "_exhausted", "_fetch", "_watcher", "batch_size")

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[Sequence[Row]]],
        cleanup: Callable[[], Awaitable[None]],
        description: Sequence[Sequence[Any]] | None,
        batch_size: int = 100,
    ) -> None:
        super().__init__(description=description)
        self._fetch = fetch
        self._cleanup: Callable[[], Awaitable[None]] | None = cleanup
        self._buffer: deque[Row] = deque()
        self._exhausted = False
        self._watcher: Callable[[BaseException], None] | None = None
        self.batch_size = batch_size

    def watch(self, watcher: Callable[[BaseException], None]) -> None:
        """Call ``watcher`` with whatever interrupts a fetch or the close, before it
        propagates (the connection records it: an interrupted fetch leaves it in
        doubt)."""
        self._watcher = watcher

    async def fill(self) -> bool:
        """Make sure a row is buffered; return False once the result is exhausted."""
        if not self._buffer and not self._exhausted:
            try:
                rows = await self._fetch(self.batch_size)
            except BaseException as exc:
                self._report(exc)
                raise
            self._buffer.extend(rows)
            self._exhausted = len(rows) < self.batch_size
        return bool(self._buffer)

    def _report(self, exc: BaseException) -> None:
        if self._watcher is not None:
            self._watcher(exc)

    def fetchone(self) -> Row | None:
        return self._buffer.popleft() if self._buffer else None

    def fetchall(self) -> list[Row]:
        rows, self._buffer = list(self._buffer), deque()
        return rows

    async def aclose(self) -> None:
        """Close the server-side cursor; safe to call twice."""
        cleanup, self._cleanup = self._cleanup, None
        self._buffer.clear()
        if cleanup is not None:
            try:
                await cleanup()
            except BaseException as exc:
                self._report(exc)
                raise
