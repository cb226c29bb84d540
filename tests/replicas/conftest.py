"""Fixtures of the replica tests: one primary/standby pair for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import Pair, start_pair


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[Pair]:
    """A throwaway PostgreSQL primary and its streaming hot standby."""
    pair = start_pair()
    yield pair
    pair.stop()
