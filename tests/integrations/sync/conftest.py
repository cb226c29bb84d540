"""Fixtures of the sync framework tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import sync_database


@pytest.fixture
def sdb(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The backend's database with fresh test tables, for sync tests; checked
    from outside for leaks at the end."""
    with sync_database(backend, request, tmp_path, pool_size=6) as db:
        yield db
