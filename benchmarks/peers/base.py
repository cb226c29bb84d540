"""What every peer implements: one method per workload, on its own connections."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """Where the peers connect: a SQLite file, or a throwaway PostgreSQL or MariaDB server."""

    backend: str  # "sqlite", "postgres" or "mysql"
    path: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    database: str = ""
    password: str = ""


POOL_SIZE = 10  # W6: at most this many connections per peer


class Peer:
    """One library's idiomatic way through each workload.

    Reads return the library's own row objects (models for ORMs, records for
    raw drivers); the harness checks their primary keys.
    """

    name = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def setup(self) -> None:
        """Open connections or pools."""

    async def teardown(self) -> None:
        """Close everything opened by :meth:`setup` and the workloads."""

    async def synchronous_commit(self) -> str:
        """``SHOW synchronous_commit`` on the peer's own PostgreSQL session."""
        raise NotImplementedError

    def pk(self, obj: Any) -> int:
        """Primary key of a row object this peer returned."""
        return int(obj.id)

    async def get(self, pk: int) -> Any:
        """W1: one row by primary key."""
        raise NotImplementedError

    async def page(self, offset: int) -> list[Any]:
        """W2: 100 rows ordered by id from ``offset``."""
        raise NotImplementedError

    async def insert(self, row: dict[str, Any]) -> None:
        """W3: insert one row, autocommit."""
        raise NotImplementedError

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        """W4: insert all ``rows`` into bench_bulk in one idiomatic call."""
        raise NotImplementedError

    async def transaction(self, pk: int, row: dict[str, Any]) -> None:
        """W5: in one transaction, read row ``pk``, add 1 to its quantity, insert ``row``."""
        raise NotImplementedError

    async def task_gets(self, pks: list[int]) -> list[Any]:
        """W6: what one of the concurrent tasks does: sequential gets through the pool."""
        raise NotImplementedError

    async def concurrent_gets(self, batches: list[list[int]]) -> list[Any]:
        """W6: one task per batch, all at once; returns every row object read."""
        results = await asyncio.gather(*(self.task_gets(b) for b in batches))
        return [obj for objs in results for obj in objs]
