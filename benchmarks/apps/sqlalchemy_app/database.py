"""The engine and session factory, from ``DATABASE_URL``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_URL = "sqlite:///./sql_app_sqlalchemy.db"
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
}


def async_url(url: str) -> str:
    """A ``postgresql://``, ``mysql://`` or ``sqlite://`` URL with its asyncio driver."""
    scheme, rest = url.split("://", 1)
    return f"{_DRIVERS.get(scheme, scheme)}://{rest}"


pool_size = int(os.environ.get("POOL_SIZE", "10"))
engine = create_async_engine(
    async_url(os.environ.get("DATABASE_URL") or DEFAULT_URL), pool_size=pool_size, max_overflow=0
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_db() -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request, closed when the request ends."""
    async with SessionLocal() as session:
        yield session
