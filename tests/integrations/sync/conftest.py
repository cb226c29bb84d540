"""Fixtures of the sync framework tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import sync_database

# WebOb (under WebTest and Pyramid) imports the stdlib's deprecated ``cgi``
# module and Pyramid imports ``pkg_resources``: import them once here, where
# those import-time deprecation warnings are not errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    import pyramid.config  # type: ignore[import-untyped]  # noqa: F401
    import webob  # type: ignore[import-untyped]  # noqa: F401


@pytest.fixture
def sdb(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The backend's database with fresh test tables, for sync tests; checked
    from outside for leaks at the end."""
    with sync_database(backend, request, tmp_path, pool_size=6) as db:
        yield db
