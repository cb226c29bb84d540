"""Fixtures of the peewee-async compatibility tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .support import open_compat_db


@pytest.fixture
async def compat_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Any]:
    """A compat database (fastpeewee.compat.peewee_async) with fresh compat tables."""
    async for database in open_compat_db(backend, request, tmp_path):
        yield database
